"""serving.client: gRPC and REST round trips against serving.server; PNG maps and overlays."""

import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from keras_emlnet.inference import visualize
from serving.client import client
from tests.serving import helpers

MODEL = helpers.MODEL_NAME


@pytest.fixture(scope="module")
def served(serving_export):
    """(Keras model, running ModelServer) over the shared tiny EMLNet export."""
    from serving.server.server import ModelServer, ServerConfig

    model, base = serving_export
    config = ServerConfig(model_base_path=base, model_name=MODEL, grpc_port=0, rest_port=0,
                          file_system_poll_wait_seconds=0)
    with ModelServer(config) as server:
        yield model, server


@pytest.fixture
def image_files(tmp_path):
    """{name: (path, RGB array)}: a PNG, a TIFF (re-encoded by the client) and a corrupt JPEG."""
    images = helpers.distinct_images(2, seed=31)
    files = {}
    for name, image, image_format in (("first.png", images[0], "PNG"), ("second.tiff", images[1], "TIFF")):
        path = tmp_path / name
        Image.fromarray(image).save(path, format=image_format)
        files[name] = (str(path), image)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    files["broken.jpg"] = (str(broken), None)
    return files


def test_load_image_reads_and_reencodes_what_the_server_cannot_decode(image_files):
    path, image = image_files["second.tiff"]
    rgb, data = client.load_image(path)
    np.testing.assert_array_equal(rgb, image)
    assert data[:4] == b"\x89PNG"  # TIFF is not among TF's decode_image formats
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), image)
    path, _ = image_files["first.png"]
    with open(path, "rb") as f:
        assert client.load_image(path)[1] == f.read()  # PNG goes as is
    with pytest.raises(ValueError, match="broken.jpg"):
        client.load_image(image_files["broken.jpg"][0])


@pytest.mark.parametrize("use_rest", [False, True], ids=["grpc", "rest"])
def test_round_trip_maps_match_keras_at_original_size(served, use_rest):
    model, server = served
    images = helpers.distinct_images(3, seed=32)  # three sizes in one request
    predict, port = (client.predict_rest, server.rest_port) if use_rest else (client.predict_grpc, server.grpc_port)
    maps = predict(f"127.0.0.1:{port}", MODEL, [helpers.png_bytes(image) for image in images])
    for image, got in zip(images, maps):
        want = model.predict_map(image)
        assert got.shape == image.shape[:2]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
        assert got.min() == 0.0 and got.max() == pytest.approx(1.0)  # minmax at the original size


@pytest.mark.parametrize("use_rest", [False, True], ids=["grpc", "rest"])
def test_server_errors_become_prediction_errors(served, use_rest):
    _, server = served
    predict, port = (client.predict_rest, server.rest_port) if use_rest else (client.predict_grpc, server.grpc_port)
    with pytest.raises(client.PredictionError) as raised:
        predict(f"127.0.0.1:{port}", "unknown", [b"x"])
    assert raised.value.code == (404 if use_rest else "NOT_FOUND")


def test_run_client_writes_maps_and_overlays_and_skips_bad_files(served, image_files, tmp_path):
    model, server = served
    out = tmp_path / "out"
    paths = [image_files[name][0] for name in ("first.png", "broken.jpg", "second.tiff")]
    config = client.ClientConfig(server=f"127.0.0.1:{server.rest_port}", model_name=MODEL,
                                 images=tuple(paths), out=str(out), rest=True, batch_size=2)
    written, failed = client.run_client(config)
    assert set(written) == {paths[0], paths[2]} and list(failed) == [paths[1]]
    for name in ("first.png", "second.tiff"):
        path, image = image_files[name]
        stem = os.path.splitext(name)[0]
        want = model.predict_map(image)
        grey = np.asarray(Image.open(out / f"{stem}_saliency.png"))
        assert grey.dtype == np.uint8 and grey.shape == image.shape[:2]
        assert np.abs(grey.astype(int) - visualize.map_to_uint8(want)).max() <= 1
        assert grey.min() == 0 and grey.max() == 255
        blended = np.asarray(Image.open(out / f"{stem}_overlay.png"))
        assert np.abs(blended.astype(int) - visualize.overlay(image, want)).max() <= 2
    with open(out / "config.json") as f:
        record = json.load(f)
    assert record["rest"] is True and "broken.jpg" in next(iter(record["failed"]))
    assert not [name for name in os.listdir(out) if name.startswith(".tmp")]


def test_only_the_image_the_server_rejects_is_skipped(tmp_path):
    calls = []

    def fake_predict(server, model_name, encoded, **kwargs):
        calls.append(len(encoded))
        if b"bad" in encoded:
            raise client.PredictionError("INVALID_ARGUMENT", "not an image")
        return [np.full((2, 2), len(data), np.float32) for data in encoded]

    config = client.ClientConfig(server="unused", model_name=MODEL, images=(), out=str(tmp_path))
    batch = [("a", None, b"good"), ("b", None, b"bad"), ("c", None, b"fine!")]
    failed = {}
    pairs = client._predict_isolating_bad(fake_predict, config, batch, failed)
    assert [(item[0], float(m[0, 0])) for item, m in pairs] == [("a", 4.0), ("c", 5.0)]
    assert list(failed) == ["b"] and "not an image" in failed["b"]
    assert calls == [3, 1, 1, 1]


def test_colliding_output_names_are_refused_before_any_request(tmp_path):
    config = client.ClientConfig(server="127.0.0.1:1", model_name=MODEL,
                                 images=("a/photo.jpg", "b/photo.png"), out=str(tmp_path))
    with pytest.raises(ValueError, match="photo"):
        client.run_client(config)


def test_cli_over_grpc(served, image_files, tmp_path):
    model, server = served
    out = tmp_path / "cli_out"
    result = helpers.run_module([
        "serving.client", "--server", f"127.0.0.1:{server.grpc_port}", "--model_name", MODEL,
        "--out", str(out), image_files["first.png"][0], image_files["broken.jpg"][0],
    ])
    assert result.returncode == 1, result.stderr[-2000:]  # one image skipped
    assert "skipped" in result.stderr and "broken.jpg" in result.stderr
    assert sorted(os.listdir(out)) == ["config.json", "first_overlay.png", "first_saliency.png"]
    grey = np.asarray(Image.open(out / "first_saliency.png"))
    want = visualize.map_to_uint8(model.predict_map(image_files["first.png"][1]))
    assert np.abs(grey.astype(int) - want).max() <= 1


def test_bombs_are_skipped_from_their_header_and_exif_photos_sent_upright(served, tmp_path):
    from keras_emlnet import image_files as images_module

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(helpers.png_bomb(20000, 20000))
    with pytest.raises(images_module.ImageTooLargeError, match="bomb.png"):
        client.load_image(str(bomb))
    stored = helpers.distinct_images(1, seed=8, sizes=((30, 50),))[0]
    rotated = tmp_path / "rotated.jpg"
    rotated.write_bytes(helpers.jpeg_with_orientation(stored, 6))
    rgb, data = client.load_image(str(rotated))
    assert rgb.shape == (50, 30, 3) and data[:4] == b"\x89PNG"  # upright pixels, re-encoded
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), rgb)
    # A lower --max_image_pixels skips an ordinary image; the run goes on and reports it.
    config = client.ClientConfig(server=f"127.0.0.1:{served[1].grpc_port}", model_name=MODEL,
                                 images=(str(bomb), str(rotated)), out=str(tmp_path / "out"))
    written, failed = client.run_client(config)
    assert list(written) == [str(rotated)] and "over the limit of 50,000,000" in failed[str(bomb)]
    assert Image.open(written[str(rotated)][0]).size == (30, 50)
    small = dict(config.__dict__, max_image_pixels=1000, out=str(tmp_path / "small"))
    written, failed = client.run_client(client.ClientConfig(**small))
    assert not written and "1,500 pixels" in failed[str(rotated)]
