"""serving.server under attack (issue 19): every resource a request can claim is bounded.

Each attack is built here, on 127.0.0.1, bounded in count and time: requests
over the image / pixel / reply caps (batching on and off), clients that
declare a body and never send it or drip their headers, JSON nested 2,000
deep, DT_VARIANT tensors, and version folders caught mid-copy.
"""

import json
import os
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest

from tests.serving import helpers

MODEL = helpers.MODEL_NAME


@pytest.fixture(scope="module")
def exported(serving_export):
    return serving_export


def _config(exported, **overrides):
    from serving.server.server import ServerConfig

    settings = dict(model_base_path=exported[1], model_name=MODEL, grpc_port=0, rest_port=0,
                    file_system_poll_wait_seconds=0, max_images_per_request=4,
                    max_request_pixels=4 * 64 * 64, rest_api_num_threads=4, rest_api_timeout_in_ms=1000)
    settings.update(overrides)
    return ServerConfig(**settings)


@pytest.fixture(scope="module", params=[False, True], ids=["unbatched", "batched"])
def server(request, exported, tmp_path_factory):
    from serving.server.server import ModelServer

    params = None
    if request.param:
        params = tmp_path_factory.mktemp("batching") / "batching_parameters.txt"
        params.write_text("max_batch_size { value: 8 }\nbatch_timeout_micros { value: 1000 }\n")
    with ModelServer(_config(exported, enable_batching=request.param,
                             batching_parameters_file=None if params is None else str(params))) as running:
        yield running


def _grpc_predict(port, inputs, signature="serving_default"):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = signature
    for name, value in inputs.items():
        if isinstance(value, np.ndarray):
            request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
        else:
            request.inputs[name].CopyFrom(value)
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", -1),
                                                             ("grpc.max_receive_message_length", -1)]) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            stub.Predict(request, timeout=60)
            return "OK", ""
        except grpc.RpcError as error:
            return error.code().name, error.details()


def _rest(port, path, body=None, *, raw=None, timeout=60):
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                     method="GET" if data is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_images_per_request_are_capped(server):
    images = np.zeros((5, 8, 8, 3), np.uint8)  # 5 > max_images_per_request = 4
    code, message = _grpc_predict(server.grpc_port, {"images": images}, "predict_images")
    assert code == "RESOURCE_EXHAUSTED" and "5 images" in message and "limit is 4" in message
    status, body = _rest(server.rest_port, f"/v1/models/{MODEL}:predict",
                         {"signature_name": "predict_images", "inputs": images.tolist()})
    assert status == 413 and "5 images" in body["error"]
    # At the cap: answered.
    assert _grpc_predict(server.grpc_port, {"images": images[:4]}, "predict_images")[0] == "OK"


def test_decoded_pixels_per_request_are_capped(server):
    # 2 x 64 x 65 > 4 x 64 x 64? no: 8,320 <= 16,384; 4 x 64 x 65 = 16,640 > 16,384.
    assert _grpc_predict(server.grpc_port, {"images": np.zeros((2, 64, 65, 3), np.uint8)}, "predict_images")[0] == "OK"
    code, message = _grpc_predict(server.grpc_port, {"images": np.zeros((4, 64, 65, 3), np.uint8)}, "predict_images")
    assert code == "RESOURCE_EXHAUSTED" and "16640 pixels" in message


def test_reply_size_is_capped_per_protocol(exported):
    from serving.server.server import ModelServer

    # 64 x 64 = 4,096 map values: 16 KiB over gRPC, ~96 KiB as JSON; the cap (32 KiB) sits between.
    with ModelServer(_config(exported, max_response_bytes=32 * 1024)) as running:
        image = np.zeros((1, 64, 64, 3), np.uint8)
        assert _grpc_predict(running.grpc_port, {"images": image}, "predict_images")[0] == "OK"
        status, body = _rest(running.rest_port, f"/v1/models/{MODEL}:predict",
                             {"signature_name": "predict_images", "inputs": image.tolist()})
        assert status == 413 and "reply" in body["error"] and "32768" in body["error"]


def test_deep_json_and_variant_tensors_get_invalid_argument(server):
    from tensorflow.core.framework import tensor_pb2, types_pb2

    deep = ("[" * 2000) + ("]" * 2000)
    for raw in (deep, '{"instances": ' + deep + "}", '{"inputs": {"images": ' + deep + "}}"):
        status, body = _rest(server.rest_port, f"/v1/models/{MODEL}:predict", raw=raw.encode())
        assert status == 400 and "nested too deep" in body["error"], (raw[:20], status, body)
    variant = tensor_pb2.TensorProto(dtype=types_pb2.DT_VARIANT)
    variant.tensor_shape.dim.add(size=1)
    code, message = _grpc_predict(server.grpc_port, {"image_bytes": variant})
    assert code == "INVALID_ARGUMENT" and "variant" in message
    # The server still answers.
    assert _grpc_predict(server.grpc_port, {"images": np.zeros((1, 8, 8, 3), np.uint8)}, "predict_images")[0] == "OK"


def _open_stalled(port, count):
    """`count` connections that declare a 100-byte body and never send it."""
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(f"POST /v1/models/{MODEL}:predict HTTP/1.1\r\nHost: x\r\n"
                     "Content-Length: 100\r\n\r\n".encode())
        sockets.append(sock)
    return sockets


def _read_reply(sock):
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode("latin-1")


def test_stalled_and_dripping_clients_are_cut_off_and_threads_stay_bounded(server):
    # rest_api_num_threads = 4, rest_api_timeout_in_ms = 1000.
    before = threading.active_count()
    start = time.monotonic()
    stalled = _open_stalled(server.rest_port, 20)
    time.sleep(0.3)
    # At most 4 handler threads at once, whatever the number of connections.
    assert threading.active_count() - before <= 4
    replies = [_read_reply(sock) for sock in stalled]
    elapsed = time.monotonic() - start
    for sock in stalled:
        sock.close()
    # 20 stalled clients through 4 threads, 1 s each: 5 rounds, then all answered 408.
    assert all(reply.startswith("HTTP/1.1 408") for reply in replies), replies[:2]
    assert elapsed < 15
    # A client dripping its request line one byte at a time (each byte well within any
    # per-read timeout) is cut off after ~1 s too: answered 408, or reset if bytes were
    # still arriving when the server closed.
    drip = socket.create_connection(("127.0.0.1", server.rest_port), timeout=10)
    start = time.monotonic()
    try:
        for byte in b"GET /v1/models/emlnet HTTP/1.1\r\n"[:15]:
            drip.send(bytes([byte]))
            time.sleep(0.1)
    except OSError:  # broken pipe: the server has closed the connection
        pass
    reply = _read_reply(drip)
    drip.close()
    assert reply == "" or reply.startswith("HTTP/1.1 408"), reply
    assert time.monotonic() - start < 4
    # Still serving.
    assert _rest(server.rest_port, f"/v1/models/{MODEL}")[0] == 200


def test_a_version_caught_mid_copy_is_retried_and_loaded_once_complete(exported, tmp_path):
    from serving.server.model_registry import ModelRegistry, is_complete

    base = tmp_path / "emlnet"
    shutil.copytree(exported[1], base)
    source = base / "1"
    registry = ModelRegistry(str(base), MODEL, poll_wait_seconds=0)
    registry.start()
    assert registry.serving_version == 1
    # A copy that has written saved_model.pb and an incomplete variables/ is not loaded at all.
    partial = base / "2"
    (partial / "variables").mkdir(parents=True)
    shutil.copy(source / "saved_model.pb", partial / "saved_model.pb")
    shutil.copy(source / "variables" / "variables.index", partial / "variables" / "variables.index")
    assert not is_complete(str(partial))
    assert registry.poll() == 1 and 2 not in {s.version for s in registry.statuses(MODEL)}
    # saved_model.pb before variables/ exists: loaded, fails, reported.
    shutil.rmtree(partial / "variables")
    assert registry.poll() == 1
    (failed,) = [s for s in registry.statuses(MODEL) if s.version == 2]
    assert failed.state == "END" and failed.error_message
    # Unchanged: not reloaded on every poll.
    calls = []
    original = registry._load_servable
    registry._load_servable = lambda *args: calls.append(args) or original(*args)
    registry.poll()
    assert calls == []
    # The copy completes: retried and served, without a restart.
    shutil.copytree(source / "variables", partial / "variables")
    for extra in ("assets", "assets.extra", "fingerprint.pb"):
        if os.path.isdir(source / extra):
            shutil.copytree(source / extra, partial / extra)
        elif os.path.exists(source / extra):
            shutil.copy(source / extra, partial / extra)
    assert registry.poll() == 2 and len(calls) == 1
    assert [(s.version, s.state, s.error_message) for s in registry.statuses(MODEL)] == [
        (2, "AVAILABLE", ""), (1, "END", "")]
    registry.stop()


BOMB = (20000, 20000)  # 400 M pixels in a ~390 KB PNG; 1.2 GB decoded as RGB


def _b64(data):
    import base64

    return {"b64": base64.b64encode(data).decode("ascii")}


def test_bombs_and_big_images_are_refused_from_their_headers(server):
    bomb = helpers.png_bomb(*BOMB)
    code, message = _grpc_predict(server.grpc_port, {"image_bytes": np.array([bomb], dtype=object)})
    assert code == "RESOURCE_EXHAUSTED" and "image 0 of input 'image_bytes'" in message
    assert "over the limit of 50,000,000" in message
    status, body = _rest(server.rest_port, f"/v1/models/{MODEL}:predict", {"instances": [_b64(bomb)]})
    assert status == 413 and "over the limit of 50,000,000" in body["error"]
    # Under the per-image limit, over this server's per-request pixels (4 x 64 x 64): measured from the header.
    small = helpers.png_bytes(np.zeros((200, 100, 3), np.uint8))
    code, message = _grpc_predict(server.grpc_port, {"image_bytes": np.array([small], dtype=object)})
    assert code == "RESOURCE_EXHAUSTED" and "20000 pixels" in message
    # Bytes that are no image: INVALID_ARGUMENT, and the server still answers.
    assert _grpc_predict(server.grpc_port, {"image_bytes": np.array([b"junk"], dtype=object)})[0] == "INVALID_ARGUMENT"
    ok = helpers.png_bytes(helpers.distinct_images(1)[0])
    assert _grpc_predict(server.grpc_port, {"image_bytes": np.array([ok], dtype=object)})[0] == "OK"


def _peak_rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


# The server process (TensorFlow + the tiny model) peaks at ~0.75 GB here; the
# bomb decoded would add 1.2 GB (RGB) and its map 1.6 GB more; the 6000 x 6000
# REST reply was 723 MB of JSON before the reply cap.
SERVER_PEAK_RSS_CEILING_BYTES = 1_200_000_000


def test_server_memory_stays_bounded_under_bombs(exported):
    process = helpers.ServerProcess(["--model_base_path", exported[1], "--model_name", MODEL,
                                     "--grpc_port", "0", "--rest_port", "0"])
    try:
        bomb = helpers.png_bomb(*BOMB)
        big = helpers.png_bomb(6000, 6000)  # 36 M pixels: under the image limit, its JSON reply over the cap
        for _ in range(3):
            assert _grpc_predict(process.grpc_port, {"image_bytes": np.array([bomb], dtype=object)})[0] == \
                "RESOURCE_EXHAUSTED"
            status, body = _rest(process.rest_port, f"/v1/models/{MODEL}:predict", {"instances": [_b64(bomb)]})
            assert status == 413
        status, body = _rest(process.rest_port, f"/v1/models/{MODEL}:predict", {"instances": [_b64(big)]})
        assert status == 413 and "reply" in body["error"], body
        peak = _peak_rss_bytes(process.process.pid)
        print(f"server peak RSS: {peak / 2**20:.0f} MB")
        assert peak < SERVER_PEAK_RSS_CEILING_BYTES
    finally:
        assert process.stop() == 0


def test_saved_model_refuses_bombs_before_decoding_and_turns_exif_photos(exported):
    """The graph itself is bounded, so the official TF Serving is too."""
    import tensorflow as tf

    from keras_emlnet import image_files

    serve = tf.saved_model.load(os.path.join(exported[1], "1")).signatures["serving_default"]
    with open("/proc/self/clear_refs", "w") as f:  # resets VmHWM to the current RSS
        f.write("5")
    start = time.monotonic()
    with pytest.raises(tf.errors.InvalidArgumentError, match="limit of 50000000"):
        serve(image_bytes=tf.constant([helpers.png_bomb(*BOMB)]))
    assert time.monotonic() - start < 10
    with open("/proc/self/status") as f:
        current = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
    assert _peak_rss_bytes("self") - current < 300e6  # decoding would take 1.2 GB
    # A GIF animation: its header declares one 2000 x 2000 frame (4 M pixels, under the limit),
    # but the decoder would decode all 200 (2.4 GB RGB, measured 500 MB / 6 s before the cut).
    animation = helpers.gif_animation_bomb(2000, 2000, 200)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    with open("/proc/self/status") as f:
        current = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
    start = time.monotonic()
    result = serve(image_bytes=tf.constant([animation]))
    assert (int(result["height"][0]), int(result["width"][0])) == (2000, 2000)
    assert time.monotonic() - start < 5 and _peak_rss_bytes("self") - current < 200e6
    # An EXIF-rotated JPEG: its map is the map of the upright pixels.
    stored = helpers.distinct_images(1, seed=2, sizes=((30, 50),))[0]
    jpeg = helpers.jpeg_with_orientation(stored, 6)
    decoded = tf.io.decode_jpeg(jpeg, channels=3).numpy()
    upright = image_files.apply_orientation(decoded, 6)
    turned = serve(image_bytes=tf.constant([jpeg]))
    reference = serve(image_bytes=tf.constant([helpers.png_bytes(np.ascontiguousarray(upright))]))
    assert (int(turned["height"][0]), int(turned["width"][0])) == (50, 30)
    np.testing.assert_allclose(turned["saliency"].numpy(), reference["saliency"].numpy(), atol=1e-6)
