"""serving.server: TF Serving's gRPC and REST APIs over an exported tiny EMLNet, on 127.0.0.1."""

import base64
import concurrent.futures
import json
import os
import shutil
import threading
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest

from tests.serving import helpers

MODEL = helpers.MODEL_NAME
MAX_REQUEST_BYTES = 256 * 1024


@pytest.fixture(scope="module")
def exported(serving_export):
    """(Keras model, export_base) with version 1 of a tiny EMLNet (shared, read-only)."""
    return serving_export


@pytest.fixture(scope="module")
def server(exported, tmp_path_factory):
    from serving.server.server import ModelServer, ServerConfig

    params = tmp_path_factory.mktemp("batching") / "batching_parameters.txt"
    # A long timeout so concurrent requests surely meet in one batch.
    params.write_text("max_batch_size { value: 4 }\nbatch_timeout_micros { value: 300000 }\n"
                      "num_batch_threads { value: 1 }\n")
    config = ServerConfig(
        model_base_path=exported[1], model_name=MODEL, grpc_port=0, rest_port=0,
        enable_batching=True, batching_parameters_file=str(params),
        file_system_poll_wait_seconds=0, max_request_bytes=MAX_REQUEST_BYTES,
    )
    with ModelServer(config) as running:
        yield running


@pytest.fixture(scope="module")
def stubs(server):
    from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}",
                                    options=[("grpc.max_send_message_length", -1)])
    yield (prediction_service_pb2_grpc.PredictionServiceStub(channel),
           model_service_pb2_grpc.ModelServiceStub(channel))
    channel.close()


def predict_request(inputs, *, signature="serving_default", model=MODEL, version=None):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return request


def outputs_of(response):
    import tensorflow as tf

    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


def rest(port, path, body=None, *, raw=None):
    """(HTTP status, decoded JSON) of a GET (no body) or POST."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                     method="GET" if data is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def b64(image):
    return {"b64": base64.b64encode(helpers.png_bytes(image)).decode()}


def assert_maps_match(model, images, maps):
    assert len(maps) == len(images)
    for image, got in zip(images, maps):
        want = model.predict_map(image)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * want.max())


def test_grpc_predict_bytes_of_mixed_sizes(exported, stubs):
    images = helpers.distinct_images(3, seed=1)
    encoded = np.array([helpers.png_bytes(image) for image in images], dtype=object)
    response = stubs[0].Predict(predict_request({"image_bytes": encoded}), timeout=60)
    assert (response.model_spec.name, response.model_spec.version.value) == (MODEL, 1)
    assert response.model_spec.signature_name == "serving_default"
    out = outputs_of(response)
    assert out["saliency"].shape == (3, 40, 61)
    maps = [out["saliency"][i, :h, :w] for i, (h, w) in enumerate(zip(out["height"], out["width"]))]
    assert_maps_match(exported[0], images, maps)


def test_grpc_predict_images_and_output_filter(exported, stubs):
    images = helpers.distinct_images(2, seed=2, sizes=((30, 30),))
    request = predict_request({"images": np.stack(images)}, signature="predict_images")
    request.output_filter.append("saliency")
    out = outputs_of(stubs[0].Predict(request, timeout=60))
    assert set(out) == {"saliency"}
    assert_maps_match(exported[0], images, list(out["saliency"]))


def test_rest_row_named_and_columnar_forms_agree_with_keras(exported, server):
    images = helpers.distinct_images(2, seed=3)
    port = server.rest_port
    status, row = rest(port, f"/v1/models/{MODEL}:predict", {"instances": [b64(i) for i in images]})
    assert status == 200
    maps = [np.array(p["saliency"], np.float32)[: p["height"], : p["width"]] for p in row["predictions"]]
    assert_maps_match(exported[0], images, maps)
    status, named = rest(port, f"/v1/models/{MODEL}/versions/1:predict",
                         {"instances": [{"image_bytes": b64(i)} for i in images]})
    assert status == 200 and named == row
    status, columnar = rest(port, f"/v1/models/{MODEL}:predict",
                            {"signature_name": "serving_default", "inputs": {"image_bytes": [b64(i) for i in images]}})
    assert status == 200
    assert columnar["outputs"]["height"] == [p["height"] for p in row["predictions"]]
    assert columnar["outputs"]["saliency"] == [p["saliency"] for p in row["predictions"]]
    # uint8 images as nested lists of integers.
    status, by_array = rest(port, f"/v1/models/{MODEL}:predict",
                            {"signature_name": "predict_images", "instances": [images[0].tolist()]})
    assert status == 200
    assert_maps_match(exported[0], images[:1], [np.array(by_array["predictions"][0]["saliency"], np.float32)])


def test_metadata_over_grpc_and_rest(server, stubs):
    from tensorflow_serving.apis import get_model_metadata_pb2

    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = MODEL
    response = stubs[0].GetModelMetadata(request, timeout=30)
    assert response.model_spec.version.value == 1
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    serving_default = signature_map.signature_def["serving_default"]
    assert list(serving_default.inputs) == ["image_bytes"]
    assert set(serving_default.outputs) == {"saliency", "height", "width"}
    assert "predict_images" in signature_map.signature_def
    status, body = rest(server.rest_port, f"/v1/models/{MODEL}/metadata")
    assert status == 200 and body["model_spec"]["version"] == "1"
    signatures = body["metadata"]["signature_def"]["signature_def"]
    assert signatures["predict_images"]["inputs"]["images"]["dtype"] == "DT_UINT8"


def test_status_over_grpc_and_rest(server, stubs):
    from tensorflow_serving.apis import get_model_status_pb2

    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL
    (status,) = stubs[1].GetModelStatus(request, timeout=30).model_version_status
    assert status.version == 1 and status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert status.status.error_code == 0
    code, body = rest(server.rest_port, f"/v1/models/{MODEL}")
    assert code == 200
    assert body == {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}


def _good_image():
    return np.array([helpers.png_bytes(helpers.distinct_images(1, seed=4)[0])], dtype=object)


GRPC_BAD_REQUESTS = [
    ("bytes as float", lambda: predict_request({"image_bytes": np.zeros(2, np.float32)}),
     "INVALID_ARGUMENT", "must be string"),
    ("images as float", lambda: predict_request({"images": np.zeros((1, 8, 8, 3), np.float32)},
                                                signature="predict_images"), "INVALID_ARGUMENT", "must be uint8"),
    ("images rank 3", lambda: predict_request({"images": np.zeros((1, 8, 8), np.uint8)},
                                              signature="predict_images"), "INVALID_ARGUMENT", "must have shape"),
    ("images with 4 channels", lambda: predict_request({"images": np.zeros((1, 8, 8, 4), np.uint8)},
                                                       signature="predict_images"), "INVALID_ARGUMENT", "must have shape"),
    ("bytes of rank 2", lambda: predict_request({"image_bytes": np.array([[b"x"]], dtype=object)}),
     "INVALID_ARGUMENT", "must have shape"),
    ("not an image", lambda: predict_request({"image_bytes": np.array([b"plain text"], dtype=object)}),
     "INVALID_ARGUMENT", "image"),
    ("empty batch", lambda: predict_request({"image_bytes": np.array([], dtype=object)}),
     "INVALID_ARGUMENT", "empty batch"),
    ("wrong input name", lambda: predict_request({"pictures": _good_image()}), "INVALID_ARGUMENT", "missing"),
    ("unknown model", lambda: predict_request({"image_bytes": _good_image()}, model="other"),
     "NOT_FOUND", "other"),
    ("unknown version", lambda: predict_request({"image_bytes": _good_image()}, version=7), "NOT_FOUND", "7"),
    ("unknown signature", lambda: predict_request({"image_bytes": _good_image()}, signature="nope"),
     "FAILED_PRECONDITION", "nope"),
    ("over the size limit", lambda: predict_request({"image_bytes": np.array([b"\0" * (MAX_REQUEST_BYTES + 1)],
                                                                               dtype=object)}),
     "RESOURCE_EXHAUSTED", ""),
]


@pytest.mark.parametrize("name, make_request, code, fragment", GRPC_BAD_REQUESTS, ids=[r[0] for r in GRPC_BAD_REQUESTS])
def test_grpc_bad_requests_get_their_status_and_the_server_keeps_serving(stubs, name, make_request, code, fragment):
    with pytest.raises(grpc.RpcError) as raised:
        stubs[0].Predict(make_request(), timeout=60)
    assert raised.value.code().name == code
    assert fragment in raised.value.details()
    out = outputs_of(stubs[0].Predict(predict_request({"image_bytes": _good_image()}), timeout=60))
    assert out["saliency"].shape == (1, 32, 48)


def _bad_b64():
    return {"b64": base64.b64encode(b"plain text").decode()}


REST_BAD_REQUESTS = [
    ("numbers for bytes", f"/v1/models/{MODEL}:predict", {"instances": [1.5, 2.5]}, 400, "strings"),
    ("floats for uint8", f"/v1/models/{MODEL}:predict",
     {"signature_name": "predict_images", "instances": [[[[0.5, 1, 2]]]]}, 400, "integers"),
    ("uint8 out of range", f"/v1/models/{MODEL}:predict",
     {"signature_name": "predict_images", "instances": [[[[300, 1, 2]]]]}, 400, "range"),
    ("wrong shape", f"/v1/models/{MODEL}:predict",
     {"signature_name": "predict_images", "instances": [[[1, 2, 3, 4]]]}, 400, "must have shape"),
    ("not an image", f"/v1/models/{MODEL}:predict", {"instances": [_bad_b64()]}, 400, "image"),
    ("bad base64", f"/v1/models/{MODEL}:predict", {"instances": [{"b64": "%%%"}]}, 400, "base64"),
    ("empty batch", f"/v1/models/{MODEL}:predict", {"instances": []}, 400, "empty batch"),
    ("both forms", f"/v1/models/{MODEL}:predict", {"instances": [], "inputs": []}, 400, "exactly one"),
    ("unknown model", "/v1/models/other:predict", {"instances": [_bad_b64()]}, 404, "other"),
    ("unknown version", f"/v1/models/{MODEL}/versions/7:predict", {"instances": [_bad_b64()]}, 404, "7"),
    ("unknown path", f"/v1/models/{MODEL}:explain", {"instances": []}, 404, "malformed"),
    ("unknown model status", "/v1/models/other", None, 404, "other"),
]


@pytest.mark.parametrize("name, path, body, status, fragment", REST_BAD_REQUESTS, ids=[r[0] for r in REST_BAD_REQUESTS])
def test_rest_bad_requests_get_their_status_and_the_server_keeps_serving(server, name, path, body, status, fragment):
    code, answer = rest(server.rest_port, path, body)
    assert code == status
    assert fragment in answer["error"]
    code, answer = rest(server.rest_port, f"/v1/models/{MODEL}:predict",
                        {"instances": [b64(helpers.distinct_images(1)[0])]})
    assert code == 200 and len(answer["predictions"]) == 1


def test_rest_malformed_json_and_oversized_body(server):
    code, answer = rest(server.rest_port, f"/v1/models/{MODEL}:predict", raw=b"{not json")
    assert code == 400 and "JSON" in answer["error"]
    code, answer = rest(server.rest_port, f"/v1/models/{MODEL}:predict", raw=b" " * (MAX_REQUEST_BYTES + 1))
    assert code == 413 and "over the limit" in answer["error"]
    assert rest(server.rest_port, f"/v1/models/{MODEL}")[0] == 200


def test_concurrent_requests_are_batched_and_each_gets_its_own_map(exported, server, stubs, monkeypatch):
    from serving.server.servable import Servable

    calls = []
    real_run = Servable.run
    monkeypatch.setattr(Servable, "run", lambda self, sig, requests: calls.append(len(requests))
                        or real_run(self, sig, requests))
    images = helpers.distinct_images(8, seed=11)
    barrier = threading.Barrier(len(images))

    def ask(index):
        barrier.wait(30)
        if index % 2:
            code, body = rest(server.rest_port, f"/v1/models/{MODEL}:predict", {"instances": [b64(images[index])]})
            assert code == 200, body
            return np.array(body["predictions"][0]["saliency"], np.float32)
        encoded = np.array([helpers.png_bytes(images[index])], dtype=object)
        return outputs_of(stubs[0].Predict(predict_request({"image_bytes": encoded}), timeout=60))["saliency"][0]

    with concurrent.futures.ThreadPoolExecutor(len(images)) as pool:
        maps = list(pool.map(ask, range(len(images))))
    # Each answer is exactly its own image's size (not padded to a batch mate) and map.
    assert_maps_match(exported[0], images, maps)
    assert max(calls) > 1  # requests really shared model calls
    # Same-size images have clearly different maps, so a mix-up would have failed above.
    references = [exported[0].predict_map(image) for image in images]
    for i, first in enumerate(references):
        for second in references[i + 1:]:
            if first.shape == second.shape:
                assert np.abs(first - second).max() > 0.05


def test_a_bad_image_batched_with_good_ones_fails_alone(exported, server, stubs):
    images = helpers.distinct_images(3, seed=12)
    payloads = [helpers.png_bytes(images[0]), b"not an image", helpers.png_bytes(images[2])]
    barrier = threading.Barrier(3)

    def ask(data):
        barrier.wait(30)
        request = predict_request({"image_bytes": np.array([data], dtype=object)})
        try:
            return outputs_of(stubs[0].Predict(request, timeout=60))["saliency"][0]
        except grpc.RpcError as error:
            return error.code().name

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        first, bad, third = pool.map(ask, payloads)
    assert bad == "INVALID_ARGUMENT"
    assert_maps_match(exported[0], [images[0], images[2]], [first, third])


def test_new_version_is_picked_up_and_a_broken_one_is_reported(exported, tmp_path):
    from serving.server.server import ModelServer, ServerConfig

    base = tmp_path / "emlnet"
    shutil.copytree(exported[1], base)
    config = ServerConfig(model_base_path=str(base), model_name=MODEL, grpc_port=0, rest_port=0,
                          file_system_poll_wait_seconds=0.2)
    with ModelServer(config) as running:
        port = running.rest_port
        # Publish version 2 the way the export does: write elsewhere, rename in.
        shutil.copytree(base / "1", base / ".tmp-2")
        os.rename(base / ".tmp-2", base / "2")
        helpers.wait_for(lambda: running.registry.serving_version == 2, timeout=60)
        code, body = rest(port, f"/v1/models/{MODEL}")
        assert [(s["version"], s["state"]) for s in body["model_version_status"]] == [("2", "AVAILABLE"), ("1", "END")]
        image = helpers.distinct_images(1)[0]
        channel = grpc.insecure_channel(f"127.0.0.1:{running.grpc_port}")
        try:
            from tensorflow_serving.apis import prediction_service_pb2_grpc

            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            request = predict_request({"image_bytes": np.array([helpers.png_bytes(image)], dtype=object)})
            assert stub.Predict(request, timeout=60).model_spec.version.value == 2
        finally:
            channel.close()
        assert rest(port, f"/v1/models/{MODEL}/versions/1:predict", {"instances": [b64(image)]})[0] == 404
        # A version that cannot load is reported; version 2 stays served.
        (base / "3").mkdir()
        (base / "3" / "saved_model.pb").write_bytes(b"garbage")
        helpers.wait_for(lambda: 3 in {s.version for s in running.registry.statuses(MODEL)
                                      if s.error_message}, timeout=30)
        code, body = rest(port, f"/v1/models/{MODEL}/versions/3")
        (status,) = body["model_version_status"]
        assert status["state"] == "END" and status["status"]["error_code"] != "OK"
        assert running.registry.serving_version == 2
        assert rest(port, f"/v1/models/{MODEL}:predict", {"instances": [b64(image)]})[0] == 200


def test_startup_errors_are_clear(exported, tmp_path):
    from serving.server.server import ModelServer, ServerConfig

    with pytest.raises(FileNotFoundError, match="model_base_path"):
        ModelServer(ServerConfig(str(tmp_path / "missing"), MODEL, grpc_port=0, rest_port=0)).start()
    with pytest.raises(FileNotFoundError):
        ModelServer(ServerConfig(exported[1], MODEL, grpc_port=0, rest_port=0, enable_batching=True,
                                 batching_parameters_file=str(tmp_path / "none.txt"))).start()


def test_cli_serves_until_sigterm(exported):
    batching_file = os.path.join(helpers.REPO_ROOT, "serving", "batching_parameters.txt")
    process = helpers.ServerProcess([
        "--model_base_path", exported[1], "--model_name", MODEL, "--grpc_port", "0", "--rest_port", "0",
        "--enable_batching", "--batching_parameters_file", batching_file,
    ])
    try:
        assert any("ready: gRPC 127.0.0.1:" in line for line in process.lines)
        assert any("max_batch_size=8" in line for line in process.lines)
        code, body = rest(process.rest_port, f"/v1/models/{MODEL}")
        assert code == 200 and body["model_version_status"][0]["state"] == "AVAILABLE"
        image = helpers.distinct_images(1, seed=21)[0]
        code, body = rest(process.rest_port, f"/v1/models/{MODEL}:predict", {"instances": [b64(image)]})
        assert_maps_match(exported[0], [image], [np.array(body["predictions"][0]["saliency"], np.float32)])
    finally:
        returncode = process.stop()
    assert returncode == 0, "".join(process.lines[-20:])
