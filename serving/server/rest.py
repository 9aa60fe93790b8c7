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
limit, or over a per-request cap: images, decoded pixels, reply size), 408
(the request was not sent in time), 429 (batching queue full), 500 (a server
bug: every request gets a status) or 503 (nothing loaded yet).

Bounded: at most `num_threads` connections are served at once (further ones
wait in the listen backlog); a connection gets `timeout_s` to send each whole
request (request line, headers and body; a watchdog closes its read side
after that, so a client that declares a body and never sends it holds a
thread for `timeout_s`, not forever).
"""

import base64
import binascii
import http.server
import json
import re
import socket
import threading
import time

from google.protobuf import json_format

from serving.server import dispatch
from serving.server import errors

_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?(?P<suffix>:predict|/metadata)?$"
)


# TF Serving's defaults: rest_api_num_threads = 4 x cores (we take 16 at least),
# rest_api_timeout_in_ms = 30000.
DEFAULT_NUM_THREADS = 16
DEFAULT_TIMEOUT_S = 30.0

# A REST body over the size limit (gRPC's RESOURCE_EXHAUSTED, HTTP 413).
PayloadTooLarge = errors.RequestTooLarge


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
        except RecursionError:
            raise errors.InvalidArgument("JSON parse error: nested too deeply") from None
        dispatcher = self.server.dispatcher
        signature_name = body.get("signature_name") if isinstance(body, dict) else None
        if signature_name is not None and not isinstance(signature_name, str):
            raise errors.InvalidArgument('"signature_name" must be a string')
        servable = dispatcher.registry.get(name, version)
        signature = servable.signature(signature_name or dispatch.DEFAULT_SIGNATURE)
        try:
            form, inputs = parse_predict_body(body, signature.inputs)
        except RecursionError:
            raise errors.InvalidArgument("request body is nested too deeply") from None
        _, _, outputs = dispatcher.predict(name, servable.version, signature.name, inputs,
                                           bytes_per_value=dispatch.REST_BYTES_PER_VALUE)
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
        try:
            body = self.rfile.read(int(length))
        except (TimeoutError, OSError):
            body = b""
        if len(body) < int(length):  # timed out (the watchdog shut the read side) or hung up
            self.close_connection = True
            raise errors.DeadlineExceeded(
                f"the request body ({length} bytes declared, {len(body)} received) was not sent "
                f"within {self.server.request_timeout_s:g} s"
            )
        self.server.watchdog.reading_done(self.connection)
        return body

    def handle_one_request(self):
        # The time to send one whole request starts now (keep-alive: per request).
        self.server.watchdog.reading(self.connection)
        super().handle_one_request()

    def parse_request(self):
        if self.server.watchdog.timed_out(self.connection):
            # The watchdog cut the request line or headers short: answer 408 as HTTP/1.1
            # (what parse_request would have set is not there yet).
            self.command, self.request_version, self.requestline = None, "HTTP/1.1", ""
            self.close_connection = True
            self._send(408, {"error": f"the request was not sent within {self.server.request_timeout_s:g} s"})
            return False
        return super().parse_request()

    def _answer(self, handler):
        try:
            status, payload = 200, handler()
        except errors.ServingError as error:
            status, payload = error.http_status, {"error": error.message}
        except Exception as error:  # a bug must still answer, not drop the connection
            status, payload = 500, {"error": f"internal error: {type(error).__name__}: {error}"}
        self._send(status, payload)

    def _send(self, status, payload):
        self.server.watchdog.reading_done(self.connection)
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)


class ReadWatchdog:
    """Closes the read side of connections that take too long to send a request.

    One thread for all connections: `reading(sock)` starts a connection's
    clock, `reading_done(sock)` stops it (the request is in; running the model
    and writing the reply are not timed). A socket past its deadline gets
    shutdown(SHUT_RD), so the blocked read returns and the handler can answer
    408 and close. Socket timeouts alone would not do: a client sending one
    byte every few seconds never trips a per-read timeout.
    """

    def __init__(self, timeout_s, interval_s=0.25):
        self.timeout_s = float(timeout_s)
        self._interval_s = min(float(interval_s), self.timeout_s / 4)
        self._deadlines = {}
        self._expired = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rest-watchdog", daemon=True)
        self._thread.start()

    def reading(self, sock):
        with self._lock:
            self._deadlines[sock] = time.monotonic() + self.timeout_s
            self._expired.discard(sock)

    def reading_done(self, sock):
        with self._lock:
            self._deadlines.pop(sock, None)

    def timed_out(self, sock):
        """True once the watchdog has cut this connection's current request short."""
        with self._lock:
            return sock in self._expired

    def forget(self, sock):
        with self._lock:
            self._deadlines.pop(sock, None)
            self._expired.discard(sock)

    def stop(self):
        self._stop.set()
        self._thread.join()

    def _run(self):
        while not self._stop.wait(self._interval_s):
            now = time.monotonic()
            with self._lock:
                expired = [sock for sock, deadline in self._deadlines.items() if deadline <= now]
                for sock in expired:
                    del self._deadlines[sock]
                    self._expired.add(sock)
            for sock in expired:
                try:
                    sock.shutdown(socket.SHUT_RD)
                except OSError:  # already closed
                    pass


class _BoundedHTTPServer(http.server.ThreadingHTTPServer):
    """ThreadingHTTPServer with at most `num_threads` connections served at once.

    Past that, accepting pauses and new connections wait in the listen
    backlog (`request_queue_size`), instead of each taking a thread.
    """

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address, handler, *, num_threads, timeout_s):
        self._slots = threading.BoundedSemaphore(num_threads)
        self._stopping = False
        self.request_timeout_s = float(timeout_s)
        super().__init__(address, handler)
        self.watchdog = ReadWatchdog(timeout_s)

    def _handle_request_noblock(self):
        # Called by serve_forever when a connection is waiting: take a slot
        # first (checking for shutdown meanwhile), then accept it.
        while not self._slots.acquire(timeout=0.25):
            if self._stopping:
                return
        try:
            request, client_address = self.get_request()
        except OSError:
            self._slots.release()
            return
        if self.verify_request(request, client_address):
            try:
                self.process_request(request, client_address)
            except Exception:
                self.handle_error(request, client_address)
                self.shutdown_request(request)
                self._slots.release()
        else:
            self.shutdown_request(request)
            self._slots.release()

    def process_request_thread(self, request, client_address):
        request.settimeout(self.request_timeout_s)  # also bounds each send of the reply
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.watchdog.forget(request)
            self._slots.release()

    def shutdown(self):
        self._stopping = True
        super().shutdown()

    def server_close(self):
        super().server_close()
        self.watchdog.stop()


class _BoundedHTTPServerV6(_BoundedHTTPServer):
    address_family = socket.AF_INET6


class RestServer:
    """The REST API on host:port (0 = any free port), served from a thread.

    Args:
        num_threads: connections served at once (TF Serving's
            --rest_api_num_threads).
        timeout_s: time a client has to send each request (TF Serving's
            --rest_api_timeout_in_ms / 1000).
    """

    def __init__(self, dispatcher, *, host, port, num_threads=DEFAULT_NUM_THREADS, timeout_s=DEFAULT_TIMEOUT_S):
        if num_threads < 1 or timeout_s <= 0:
            raise ValueError(f"REST needs num_threads >= 1 and timeout_s > 0, got {num_threads}, {timeout_s}")
        server_class = _BoundedHTTPServerV6 if ":" in host else _BoundedHTTPServer
        self._server = server_class((host, port), _Handler, num_threads=num_threads, timeout_s=timeout_s)
        self._server.dispatcher = dispatcher
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="rest", daemon=True)
        self._thread.start()

    def stop(self):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
