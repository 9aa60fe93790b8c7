"""TF Serving's REST API on the standard library's ThreadingHTTPServer.

    POST /v1/models/<name>[/versions/<N>]:predict   {"instances": [...]} or {"inputs": ...}
    GET  /v1/models/<name>[/versions/<N>]           version status
    GET  /v1/models/<name>[/versions/<N>]/metadata  signature defs

Request and response bodies follow TF Serving's JSON: the row ("instances")
form answers {"predictions": [...]}, one entry per example (an object of
outputs when there are several); the columnar ("inputs") form answers
{"outputs": ...}. Binary values of string inputs are sent as
{"b64": "<base64>"}. Errors answer {"error": "<message>"} with 400 (bad
request), 404 (unknown model, version or path), 413 (body over the size
limit), 429 (batching queue full) or 503 (nothing loaded yet).
"""

import base64
import binascii
import http.server
import json
import re
import socket
import threading

from google.protobuf import json_format

from serving.server import dispatch
from serving.server import errors

_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?(?P<suffix>:predict|/metadata)?$"
)


class PayloadTooLarge(errors.ServingError, grpc_code=errors.ResourceExhausted.grpc_code, http_status=413):
    """A REST body over the size limit (gRPC's RESOURCE_EXHAUSTED)."""


def _string_tensor(values, name):
    """Nested lists of {"b64": ...} or text → (array of bytes objects)."""
    import numpy as np

    def convert(value):
        if isinstance(value, list):
            return [convert(item) for item in value]
        if isinstance(value, dict):
            if set(value) != {"b64"} or not isinstance(value["b64"], str):
                raise errors.InvalidArgument(f"input '{name}': binary values must be {{\"b64\": \"...\"}}")
            try:
                return base64.b64decode(value["b64"], validate=True)
            except (binascii.Error, ValueError) as error:
                raise errors.InvalidArgument(f"input '{name}': invalid base64: {error}") from None
        if isinstance(value, str):
            return value.encode("utf-8")
        raise errors.InvalidArgument(f"input '{name}' must hold strings or {{\"b64\": ...}}, got {type(value).__name__}")

    converted = convert(values)
    shape = []
    probe = converted
    while isinstance(probe, list):
        shape.append(len(probe))
        probe = probe[0] if probe else None
    array = np.empty(shape, dtype=object)
    try:
        array[...] = converted
    except ValueError:
        raise errors.InvalidArgument(f"input '{name}' is not a rectangular array") from None
    if any(not isinstance(item, bytes) for item in array.ravel()):
        raise errors.InvalidArgument(f"input '{name}' is not a rectangular array")
    return array


def _tensor(values, spec, name):
    import tensorflow as tf

    if spec.dtype == tf.string:
        return _string_tensor(values, name)
    return dispatch.as_numpy(values, spec.dtype.as_numpy_dtype, name=name)


def _is_b64(value):
    return isinstance(value, dict) and set(value) == {"b64"}


def parse_predict_body(body, input_specs):
    """JSON body → ("row"|"columnar", {input name: array}); InvalidArgument if malformed."""
    if not isinstance(body, dict):
        raise errors.InvalidArgument("request body must be a JSON object")
    forms = [key for key in ("instances", "inputs") if key in body]
    if len(forms) != 1:
        raise errors.InvalidArgument('request must have exactly one of "instances" (row) or "inputs" (columnar)')
    names = sorted(input_specs)
    if forms[0] == "instances":
        instances = body["instances"]
        if not isinstance(instances, list):
            raise errors.InvalidArgument('"instances" must be a list')
        if not instances:
            raise errors.InvalidArgument("empty batch: \"instances\" is empty")
        named = all(isinstance(item, dict) and not _is_b64(item) for item in instances)
        if len(names) == 1 and not named:
            return "row", {names[0]: _tensor(instances, input_specs[names[0]], names[0])}
        if not named:
            raise errors.InvalidArgument(f"each instance must be an object with inputs {names}")
        columns = {}
        for name in set().union(*(item.keys() for item in instances)):
            if name not in input_specs:
                raise errors.InvalidArgument(f"unknown input '{name}'; inputs: {names}")
            if any(name not in item for item in instances):
                raise errors.InvalidArgument(f"input '{name}' is missing from some instances")
            columns[name] = _tensor([item[name] for item in instances], input_specs[name], name)
        return "row", columns
    inputs = body["inputs"]
    if isinstance(inputs, dict) and not _is_b64(inputs):
        unknown = sorted(set(inputs) - set(input_specs))
        if unknown:
            raise errors.InvalidArgument(f"unknown inputs {unknown}; inputs: {names}")
        return "columnar", {name: _tensor(value, input_specs[name], name) for name, value in inputs.items()}
    if len(names) != 1:
        raise errors.InvalidArgument(f'"inputs" must be an object naming inputs {names}')
    return "columnar", {names[0]: _tensor(inputs, input_specs[names[0]], names[0])}


def _json_value(array, name):
    if array.dtype == object:
        if name.endswith("_bytes"):
            return [{"b64": base64.b64encode(v).decode("ascii")} for v in array.ravel()]
        return [v.decode("utf-8", "replace") for v in array.ravel()]
    return array.tolist()


def predict_response(form, outputs):
    """TF Serving's JSON response for the request's form."""
    if form == "columnar":
        if len(outputs) == 1:
            ((name, value),) = outputs.items()
            return {"outputs": _json_value(value, name)}
        return {"outputs": {name: _json_value(value, name) for name, value in outputs.items()}}
    batch = len(next(iter(outputs.values())))
    if len(outputs) == 1:
        ((name, value),) = outputs.items()
        return {"predictions": [_json_value(value[i : i + 1], name)[0] for i in range(batch)]}
    return {
        "predictions": [
            {name: _json_value(value[i : i + 1], name)[0] for name, value in outputs.items()}
            for i in range(batch)
        ]
    }


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a load client reuses connections
    # Headers and body go out as separate writes; with Nagle's algorithm the
    # body would wait for the client's delayed ACK (~40 ms per response).
    disable_nagle_algorithm = True
    server_version = "keras-emlnet-serving"

    def log_message(self, format, *args):  # noqa: A002 - quiet; main logs what matters
        pass

    def do_GET(self):
        self._answer(self._get)

    def do_POST(self):
        self._answer(self._post)

    def _route(self):
        match = _PATH.match(self.path.split("?", 1)[0])
        if match is None:
            raise errors.NotFound(f"malformed request: {self.command} {self.path}")
        version = match["version"]
        return match["name"], None if version is None else dispatch.parse_version(version), match["suffix"]

    def _get(self):
        name, version, suffix = self._route()
        dispatcher = self.server.dispatcher
        if suffix == ":predict":
            raise errors.NotFound(f"{self.path} takes POST")
        if suffix == "/metadata":
            served, signature_defs = dispatcher.metadata(name, version)
            signature_map = {key: json_format.MessageToDict(value) for key, value in signature_defs.items()}
            return {
                "model_spec": {"name": name, "signature_name": "", "version": str(served)},
                "metadata": {"signature_def": {"signature_def": signature_map}},
            }
        statuses = dispatcher.statuses(name, version)
        return {
            "model_version_status": [
                {
                    "version": str(s.version),
                    "state": s.state,
                    "status": {"error_code": "UNKNOWN" if s.error_message else "OK",
                               "error_message": s.error_message},
                }
                for s in statuses
            ]
        }

    def _post(self):
        name, version, suffix = self._route()
        if suffix != ":predict":
            raise errors.NotFound(f"POST {self.path}: only :predict is served")
        body = self._read_body()
        try:
            body = json.loads(body)
        except (UnicodeDecodeError, ValueError) as error:
            raise errors.InvalidArgument(f"JSON parse error: {error}") from None
        dispatcher = self.server.dispatcher
        signature_name = body.get("signature_name") if isinstance(body, dict) else None
        if signature_name is not None and not isinstance(signature_name, str):
            raise errors.InvalidArgument('"signature_name" must be a string')
        servable = dispatcher.registry.get(name, version)
        signature = servable.signature(signature_name or dispatch.DEFAULT_SIGNATURE)
        form, inputs = parse_predict_body(body, signature.inputs)
        _, _, outputs = dispatcher.predict(name, servable.version, signature.name, inputs)
        return predict_response(form, outputs)

    def _read_body(self):
        limit = self.server.dispatcher.max_request_bytes
        length = self.headers.get("Content-Length")
        if length is None or not length.strip().isdigit():
            self.close_connection = True
            raise errors.InvalidArgument("a POST needs a Content-Length header")
        if int(length) > limit:
            self.close_connection = True  # the unread body must not be parsed as a request
            raise PayloadTooLarge(f"request of {length} bytes is over the limit of {limit} bytes")
        return self.rfile.read(int(length))

    def _answer(self, handler):
        try:
            status, payload = 200, handler()
        except errors.ServingError as error:
            status, payload = error.http_status, {"error": error.message}
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)


class _ThreadingHTTPServerV6(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


class RestServer:
    """The REST API on host:port (0 = any free port), served from a thread."""

    def __init__(self, dispatcher, *, host, port):
        server_class = _ThreadingHTTPServerV6 if ":" in host else http.server.ThreadingHTTPServer
        self._server = server_class((host, port), _Handler)
        self._server.daemon_threads = True
        self._server.dispatcher = dispatcher
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="rest", daemon=True)
        self._thread.start()

    def stop(self):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
