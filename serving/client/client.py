"""Client of the saliency model on TF Serving (official or serving.server), over gRPC or REST.

`run_client` (what `python -m serving.client` runs) writes, for each image,
``<out>/<stem>_saliency.png`` (the map at the image's size, min-max scaled
to 8 bits) and ``<out>/<stem>_overlay.png`` (a viridis heatmap blended over the
image), atomically, plus ``<out>/config.json``. An image that cannot be
read, or that the server rejects, is reported and skipped; the others are
still written. `predict_grpc` and `predict_rest` send one request each.
"""

import base64
import dataclasses
import io
import json
import os
import urllib.error
import urllib.request

import numpy as np

from keras_emlnet.atomic_files import remove_stale_temp_files
from keras_emlnet.atomic_files import write_bytes_atomic
from keras_emlnet.atomic_files import write_json_atomic
from keras_emlnet.inference import visualize

# Formats TF's decode_image reads; others are re-encoded as PNG before sending.
_SERVER_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP")
_INVALID_ARGUMENT = ("INVALID_ARGUMENT", 400)


class PredictionError(Exception):
    """The server refused a request; `code` is the gRPC status name or HTTP status."""

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclasses.dataclass(frozen=True)
class ClientConfig:
    """One client run (the CLI's flags and IMAGE arguments)."""

    server: str
    model_name: str
    images: tuple
    out: str
    rest: bool = False
    signature_name: str = "serving_default"
    version: int = None
    batch_size: int = 4
    timeout_s: float = 60.0
    overlay_alpha: float = visualize.DEFAULT_OVERLAY_ALPHA
    max_image_pixels: int = None


def load_image(path, *, max_image_pixels=None):
    """(upright RGB uint8 (h, w, 3), bytes to send) for one file; ValueError if unreadable.

    The pixel count is checked from the header before decoding
    (`image_files`: `max_image_pixels`, else $EMLNET_MAX_IMAGE_PIXELS, else
    50 M; an image over it raises `image_files.ImageTooLargeError`, a
    ValueError). The EXIF orientation is applied; an image stored rotated, or
    in a format TF does not decode, is sent re-encoded as PNG, so any export
    (also one from before EXIF support) sees it upright.
    """
    from PIL import Image

    from keras_emlnet import image_files

    try:
        with open(path, "rb") as f:
            data = f.read()
        header = image_files.read_header(data, name=path, limit=max_image_pixels)
        rgb = image_files.decode_rgb(data, name=path, limit=max_image_pixels)
    except image_files.ImageTooLargeError:
        raise
    except (OSError, SyntaxError, ValueError) as error:  # PIL raises these for bad files
        raise ValueError(f"{path}: not a readable image ({error})") from error
    if header.format not in _SERVER_FORMATS or header.orientation != image_files.UPRIGHT:
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, format="PNG")
        data = buffer.getvalue()
    return rgb, data


def _crop(saliency, heights, widths):
    return [np.asarray(saliency[i, : heights[i], : widths[i]], np.float32) for i in range(len(heights))]


def predict_grpc(server, model_name, encoded, *, version=None, signature_name="serving_default",
                 timeout_s=60.0):
    """Sends encoded images in one PredictRequest; returns their 2-D maps."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = version
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto(np.array(encoded, dtype=object)))
    options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    with grpc.insecure_channel(server, options=options) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            response = stub.Predict(request, timeout=timeout_s)
        except grpc.RpcError as error:
            raise PredictionError(error.code().name, error.details()) from None
    outputs = {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
    return _crop(outputs["saliency"], outputs["height"], outputs["width"])


def predict_rest(server, model_name, encoded, *, version=None, signature_name="serving_default",
                 timeout_s=60.0):
    """Sends encoded images as one REST :predict call (row form); returns 2-D maps."""
    path = f"/v1/models/{model_name}" + (f"/versions/{version}" if version is not None else "") + ":predict"
    body = {
        "signature_name": signature_name,
        "instances": [{"b64": base64.b64encode(data).decode("ascii")} for data in encoded],
    }
    request = urllib.request.Request(
        f"http://{server}{path}", data=json.dumps(body).encode("utf-8"),
        headers={"Content-Type": "application/json"}, method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            payload = json.load(response)
    except urllib.error.HTTPError as error:
        try:
            message = json.load(error).get("error", "")
        except ValueError:
            message = error.reason
        raise PredictionError(error.code, message) from None
    predictions = payload["predictions"]
    saliency = [np.asarray(p["saliency"], np.float32) for p in predictions]
    return [s[: p["height"], : p["width"]] for s, p in zip(saliency, predictions)]


def write_outputs(out_dir, stem, image, saliency_map, *, alpha):
    """Writes <stem>_saliency.png and <stem>_overlay.png atomically; returns both paths."""
    from PIL import Image

    if saliency_map.shape != image.shape[:2]:
        raise ValueError(f"{stem}: map is {saliency_map.shape}, image is {image.shape[:2]}")
    paths = []
    for suffix, picture in (
        ("saliency", visualize.map_to_uint8(saliency_map)),
        ("overlay", visualize.overlay(image, saliency_map, alpha=alpha)),
    ):
        buffer = io.BytesIO()
        Image.fromarray(picture).save(buffer, format="PNG")
        path = os.path.join(out_dir, f"{stem}_{suffix}.png")
        write_bytes_atomic(path, buffer.getvalue())
        paths.append(path)
    return paths


def run_client(config):
    """Predicts every image of `config` and writes its pictures.

    Returns:
        (written: {image path: [map png, overlay png]}, failed: {image path: reason}).

    Raises:
        ValueError: two images would write the same output names.
        PredictionError: the server failed for a reason that is not one
            image's fault (unknown model, server unreachable, ...).
    """
    stems = {}
    for path in config.images:
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem in stems:
            raise ValueError(f"{path} and {stems[stem]} would both write {stem}_*.png; rename one")
        stems[stem] = path
    predict = predict_rest if config.rest else predict_grpc
    written, failed, loaded = {}, {}, []
    for path in config.images:
        try:
            loaded.append((path,) + load_image(path, max_image_pixels=config.max_image_pixels))
        except ValueError as error:
            failed[path] = str(error)
    os.makedirs(config.out, exist_ok=True)
    remove_stale_temp_files(config.out)  # left by a run killed mid-write
    for start in range(0, len(loaded), config.batch_size):
        batch = loaded[start : start + config.batch_size]
        for (path, image, _), saliency_map in _predict_isolating_bad(predict, config, batch, failed):
            stem = os.path.splitext(os.path.basename(path))[0]
            written[path] = write_outputs(config.out, stem, image, saliency_map, alpha=config.overlay_alpha)
    write_json_atomic(os.path.join(config.out, "config.json"),
                      {**dataclasses.asdict(config), "written": written, "failed": failed})
    return written, failed


def _predict_isolating_bad(predict, config, batch, failed):
    """(item, map) pairs; on INVALID_ARGUMENT retries one by one to find the bad image."""
    def call(items):
        return predict(config.server, config.model_name, [data for _, _, data in items],
                       version=config.version, signature_name=config.signature_name,
                       timeout_s=config.timeout_s)

    try:
        return list(zip(batch, call(batch)))
    except PredictionError as error:
        if error.code not in _INVALID_ARGUMENT:
            raise
        if len(batch) == 1:
            failed[batch[0][0]] = f"server rejected it: {error.message}"
            return []
    pairs = []
    for item in batch:
        pairs.extend(_predict_isolating_bad(predict, config, [item], failed))
    return pairs
