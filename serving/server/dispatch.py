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
# Per-request caps (ServerConfig fields of the same names). A request of 1,024
# tiny PNGs took 60 s and 6 GB unbatched (issue 19); 64 images of the model
# size is a few seconds of CPU.
DEFAULT_MAX_IMAGES_PER_REQUEST = 64
# Decoded pixels of one request: images padded to the largest, B x Hmax x Wmax,
# which is also the size of the `saliency` output. = image_files.DEFAULT_MAX_PIXELS,
# so one image of the project-wide limit fits.
DEFAULT_MAX_REQUEST_PIXELS = 50_000_000
# The reply the server may build: 4 bytes per map value over gRPC, up to
# REST_BYTES_PER_VALUE in JSON (a float32 as a Python float's repr + ", ").
DEFAULT_MAX_RESPONSE_BYTES = 512 * 1024 * 1024
GRPC_BYTES_PER_VALUE = 4
REST_BYTES_PER_VALUE = 24


class RequestDispatcher:
    """Answers requests for the model a ModelRegistry serves.

    Args:
        registry: ModelRegistry.
        batching: BatchingOptions, or None to run each request on its own.
        max_request_bytes: the largest request accepted; also bounds how large
            an input may decode to (a TensorProto can declare a shape far
            larger than the values it carries).
        max_images_per_request: most examples (images) in one request.
        max_request_pixels: most decoded pixels in one request, counted as
            the model output is built: batch x largest height x largest width
            (encoded images are measured from their headers, before decoding).
        max_response_bytes: largest reply the server builds (estimated from
            the output size before the model runs).
        max_image_pixels: per-image limit on encoded images' headers; None =
            `keras_emlnet.image_files.max_image_pixels()` (50 M, env override).
        All four are checked before the model runs, with batching on or off,
        and end in RequestTooLarge (RESOURCE_EXHAUSTED / HTTP 413).
    """

    def __init__(self, registry, *, batching=None, max_request_bytes,
                 max_images_per_request=DEFAULT_MAX_IMAGES_PER_REQUEST,
                 max_request_pixels=DEFAULT_MAX_REQUEST_PIXELS,
                 max_response_bytes=DEFAULT_MAX_RESPONSE_BYTES,
                 max_image_pixels=None):
        self.registry = registry
        self.max_request_bytes = int(max_request_bytes)
        self.max_images_per_request = int(max_images_per_request)
        self.max_request_pixels = int(max_request_pixels)
        self.max_response_bytes = int(max_response_bytes)
        self.max_image_pixels = max_image_pixels
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

    def check_request_limits(self, inputs, batch_size, *, bytes_per_value=GRPC_BYTES_PER_VALUE):
        """Raises RequestTooLarge for a request over a per-request cap.

        Encoded images (string inputs named `*_bytes`, TF Serving's binary
        convention) are measured from their headers, never decoded here; an
        image over the per-image pixel limit is refused by name; bytes that
        are not an image are InvalidArgument. uint8 image batches
        (B, H, W, C) are measured from their shape.
        """
        if batch_size > self.max_images_per_request:
            raise errors.RequestTooLarge(
                f"request holds {batch_size} images; the limit is {self.max_images_per_request} "
                f"per request (split it, or raise --max_images_per_request)"
            )
        sizes = []
        for name, array in inputs.items():
            if name.endswith("_bytes") and (array.dtype == object or array.dtype.kind == "S"):
                sizes.extend(self._header_sizes(name, array))
            elif array.dtype == np.uint8 and array.ndim == 4:
                sizes.append(array.shape[1:3])
        if not sizes:
            return
        height, width = max(s[0] for s in sizes), max(s[1] for s in sizes)
        pixels = batch_size * height * width
        if pixels > self.max_request_pixels:
            raise errors.RequestTooLarge(
                f"request decodes to {batch_size} x {height} x {width} = {pixels} pixels "
                f"(images padded to the largest); the limit is {self.max_request_pixels} "
                f"per request (send fewer or smaller images, or raise --max_request_pixels)"
            )
        reply = pixels * bytes_per_value
        if reply > self.max_response_bytes:
            raise errors.RequestTooLarge(
                f"the reply would take about {reply} bytes ({pixels} map values); the limit is "
                f"{self.max_response_bytes} bytes (send fewer or smaller images, use gRPC, "
                f"or raise --max_response_bytes)"
            )

    def _header_sizes(self, name, array):
        from keras_emlnet import image_files

        sizes = []
        for index, data in enumerate(array.ravel()):
            source = f"image {index} of input '{name}'"
            try:
                header = image_files.read_header(bytes(data), name=source, limit=self.max_image_pixels)
            except image_files.ImageTooLargeError as error:
                raise errors.RequestTooLarge(str(error)) from None
            except Exception as error:  # PIL: OSError, ValueError, SyntaxError, ...
                raise errors.InvalidArgument(f"{source} is not a readable image: {error}") from None
            sizes.append(header.oriented_size)
        return sizes

    def predict(self, model_name, version, signature_name, inputs, *,
                bytes_per_value=GRPC_BYTES_PER_VALUE):
        """Runs one request.

        Args:
            model_name: requested model name.
            version: int, or None for the served version.
            signature_name: "" or None for serving_default.
            inputs: {input name: NumPy array}, batch axis first.
            bytes_per_value: reply bytes per output value (REST_BYTES_PER_VALUE
                for JSON), for the reply-size cap.

        Returns:
            (version served, signature name, {output name: NumPy array}).

        Raises:
            ServingError subclasses (see serving/server/errors.py).
        """
        servable = self.registry.get(model_name, version)
        signature_name = signature_name or DEFAULT_SIGNATURE
        size = servable.validate(signature_name, inputs)
        self.check_request_limits(inputs, size, bytes_per_value=bytes_per_value)
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
