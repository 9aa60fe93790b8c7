"""What the gRPC and REST front ends share: predict, metadata and status.

Both front ends decode their wire format into NumPy arrays and call one
`RequestDispatcher`, so validation, version lookup, batching and errors are
the same whichever protocol a client uses.
"""

import math

import numpy as np

from serving.server import errors
from serving.server.request_batching import BatchScheduler

DEFAULT_SIGNATURE = "serving_default"


class RequestDispatcher:
    """Answers requests for the model a ModelRegistry serves.

    Args:
        registry: ModelRegistry.
        batching: BatchingOptions, or None to run each request on its own.
        max_request_bytes: the largest request accepted; also bounds how large
            an input may decode to (a TensorProto can declare a shape far
            larger than the values it carries).
    """

    def __init__(self, registry, *, batching=None, max_request_bytes):
        self.registry = registry
        self.max_request_bytes = int(max_request_bytes)
        self._scheduler = None if batching is None else BatchScheduler(_run_batch, batching)

    @property
    def batching(self):
        return None if self._scheduler is None else self._scheduler.options

    def stop(self):
        if self._scheduler is not None:
            self._scheduler.stop()

    def check_decoded_size(self, name, shape, itemsize):
        """Raises ResourceExhausted if an input of `shape` would exceed the limit."""
        if any(dim < 0 for dim in shape):
            raise errors.InvalidArgument(f"input '{name}' has a negative dimension in shape {list(shape)}")
        size = math.prod(shape) * max(int(itemsize), 1)
        if size > self.max_request_bytes:
            raise errors.ResourceExhausted(
                f"input '{name}' of shape {list(shape)} would take {size} bytes; "
                f"the limit is {self.max_request_bytes} bytes"
            )

    def predict(self, model_name, version, signature_name, inputs):
        """Runs one request.

        Args:
            model_name: requested model name.
            version: int, or None for the served version.
            signature_name: "" or None for serving_default.
            inputs: {input name: NumPy array}, batch axis first.

        Returns:
            (version served, signature name, {output name: NumPy array}).

        Raises:
            ServingError subclasses (see serving/server/errors.py).
        """
        servable = self.registry.get(model_name, version)
        signature_name = signature_name or DEFAULT_SIGNATURE
        size = servable.validate(signature_name, inputs)
        if self._scheduler is None:
            (result,) = servable.run(signature_name, [inputs])
        else:
            key = servable.batch_key(signature_name, inputs)
            future = self._scheduler.submit(key, (servable, signature_name, inputs), size)
            result = future.result()
        if isinstance(result, errors.ServingError):
            raise result
        return servable.version, signature_name, result

    def metadata(self, model_name, version):
        """(version, {signature name: SignatureDef}) for GetModelMetadata."""
        servable = self.registry.get(model_name, version)
        return servable.version, servable.signature_defs

    def statuses(self, model_name, version):
        """VersionStatus list for GetModelStatus."""
        return self.registry.statuses(model_name, version)


def _run_batch(key, payloads):
    # All payloads of a key share the servable (the key holds its version).
    servable, signature_name, _ = payloads[0]
    return servable.run(signature_name, [inputs for _, _, inputs in payloads])


def parse_version(text):
    """A version from a URL or label: a positive integer, else InvalidArgument."""
    if not str(text).isdigit():
        raise errors.InvalidArgument(f"version must be a non-negative integer, got {text!r}")
    return int(text)


def output_subset(outputs, names):
    """Only the outputs in `names` (all when empty); unknown names are invalid."""
    if not names:
        return outputs
    unknown = sorted(set(names) - set(outputs))
    if unknown:
        raise errors.InvalidArgument(f"output_filter names unknown outputs {unknown}; outputs: {sorted(outputs)}")
    return {name: outputs[name] for name in names}


def as_numpy(values, dtype, *, name):
    """JSON-decoded values → array of `dtype`; InvalidArgument if they do not fit."""
    try:
        raw = np.asarray(values)
    except ValueError as error:  # ragged lists
        raise errors.InvalidArgument(f"input '{name}' is not a rectangular array: {error}") from None
    if raw.dtype == object:
        raise errors.InvalidArgument(f"input '{name}' is not a rectangular array of numbers")
    if raw.dtype.kind not in "biuf":
        raise errors.InvalidArgument(f"input '{name}' must hold numbers, got {raw.dtype.kind!r} values")
    target = np.dtype(dtype)
    if target.kind in "iub" and raw.dtype.kind == "f":
        raise errors.InvalidArgument(f"input '{name}' must hold integers ({target.name}), got floats")
    try:
        array = raw.astype(target, casting="unsafe")
    except (OverflowError, ValueError) as error:
        raise errors.InvalidArgument(f"input '{name}': {error}") from None
    if target.kind in "iu" and raw.size and not np.array_equal(array, raw):
        raise errors.InvalidArgument(f"input '{name}' has values outside the range of {target.name}")
    return array
