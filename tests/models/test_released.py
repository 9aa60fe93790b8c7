"""The released EML-NET in Keras equals the official PyTorch code: readouts, each encoder's own
`combined` map, the decoder's raw map and `predict_map` (eval_combined.py's post-processing)."""

import keras
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from keras_emlnet import load_model  # noqa: E402
from keras_emlnet.models import geometry, released, resnet50_torch  # noqa: E402
from keras_emlnet.models.emlnet import EMLNet  # noqa: E402
from keras_emlnet.models.encoder import SaliencyEncoder  # noqa: E402
from keras_emlnet.models.taps import find_tap_layers, tap_layer_name  # noqa: E402
from tests.conftest import RELEASED_TEST_SIZE  # noqa: E402
from tests.models import released_reference as reference  # noqa: E402

# float32 on both sides, different summation orders; the maps are O(1).
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def converted(released_small):
    path, encoder_paths = released_small
    return load_model(path), {prefix: load_model(p) for prefix, p in encoder_paths.items()}


def _image(size, seed):
    """A natural-ish test image: smooth blobs + noise, uint8 (never seen by the BN calibration)."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0 : size[0], 0 : size[1]]
    image = np.full((*size, 3), 90.0) + rng.normal(0, 20, (*size, 3))
    for _ in range(4):
        cy, cx, r = rng.uniform(0, size[0]), rng.uniform(0, size[1]), rng.uniform(0.1, 0.3) * max(size)
        image += np.exp(-((rows - cy) ** 2 + (cols - cx) ** 2) / (2 * r * r))[..., None] * rng.uniform(-80, 160, 3)
    return np.clip(image, 0, 255).astype(np.uint8)


def test_readouts_encoder_maps_and_decoder_equal_the_official_forward(converted, released_checkpoints):
    model, encoders = converted
    (imagenet, places, decoder), _ = released_checkpoints
    image = _image(RELEASED_TEST_SIZE, seed=5)
    pred, img_feat, pla_feat = reference.released_forward(imagenet, places, decoder, image)

    features = model.extractor(image[None].astype(np.float32))
    for prefix, torch_features in (("imagenet", img_feat), ("places", pla_feat)):
        for readout, want in zip(released.READOUTS, torch_features):
            got = features[tap_layer_name(prefix, readout)].numpy()[0, ..., 0]
            want = want[0, 0].numpy()
            assert got.shape == want.shape
            assert np.ptp(want) > 0.1  # a live readout, not a dead ReLU
            np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE, err_msg=f"{prefix} {readout}")
    # each encoder alone: resnet.py forward(decode=False), the `combined` head
    for prefix, torch_encoder in (("imagenet", imagenet), ("places", places)):
        with torch.no_grad():
            want = torch_encoder(reference.to_input(image))[0, 0].numpy()
        got = encoders[prefix](image[None].astype(np.float32)).numpy()[0, ..., 0]
        np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE, err_msg=prefix)
    # the decoder's sigmoid map, and eval_combined.py's post-processing
    raw = model.training_model()(image[None].astype(np.float32)).numpy()[0, ..., 0]
    np.testing.assert_allclose(raw, pred, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(model.predict_map(image), reference.post_process(pred), rtol=0, atol=TOLERANCE)


def test_other_image_sizes_go_through_the_geometry(converted, released_checkpoints):
    """Resized to the model size, released forward + post-processing, map resized back and min-max'd."""
    model, _ = converted
    (imagenet, places, decoder), _ = released_checkpoints
    image = _image((50, 83), seed=6)
    frame = geometry.make_geometry(image.shape[:2], RELEASED_TEST_SIZE, "resize")
    pred, _, _ = reference.released_forward(imagenet, places, decoder, frame.image_to_model(image))
    want = frame.map_to_original(reference.post_process(pred))
    want = (want - want.min()) / (want.max() - want.min())
    got = model.predict_map(image)
    assert got.shape == image.shape[:2] and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-3)


def test_architecture_is_the_released_one(converted, released_checkpoints):
    model, encoders = converted
    (imagenet, _, decoder), _ = released_checkpoints
    assert isinstance(model, EMLNet)
    assert (model.input_size, model.resize_mode, model.output_mode, model.blur_sigma) == (
        RELEASED_TEST_SIZE, "resize", "minmax", 5.0)
    encoder = encoders["imagenet"]
    assert isinstance(encoder, SaliencyEncoder) and encoder.backbone == released.BACKBONE
    # an encoder file stays trainable (the EMLNet's extractor freezes shared layers: saved before it)
    assert len(encoder.trainable_weights) == 53 + 53 * 2 + 5 * 4 + 4  # convs, BN γ/β, readouts, combined
    assert not model.extractor.trainable_weights
    # every torch parameter and BN statistic has one Keras weight, nothing more
    torch_size = sum(v.numel() for k, v in imagenet.state_dict().items() if not k.endswith("num_batches_tracked"))
    assert sum(int(np.prod(w.shape)) for w in encoder.weights) == torch_size
    torch_size = sum(v.numel() for k, v in decoder.state_dict().items() if not k.endswith("num_batches_tracked"))
    assert sum(int(np.prod(w.shape)) for w in model.decoder.weights) == torch_size == 10 * (9 + 1 + 4) + (90 + 1) + 4
    # taps: the five readouts, one channel each, at the stem's and layer1..4's strides (ceil at odd sizes)
    taps = find_tap_layers(encoder)
    assert list(taps) == [tap_layer_name("imagenet", r) for r in released.READOUTS]
    shapes = [tuple(layer.output.shape[1:]) for layer in taps.values()]
    assert shapes == [(36, 50, 1), (18, 25, 1), (9, 13, 1), (5, 7, 1), (3, 4, 1)]
    batch_norms = [layer for layer in model.extractor.get_layer("imagenet_features").layers
                   if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(batch_norms) == 53 + 5 and {layer.epsilon for layer in batch_norms} == {resnet50_torch.BN_EPSILON}
    # the stride of a downsampling bottleneck is on its 3x3 conv
    conv = {layer.name: layer for layer in encoder.layers}
    assert conv["imagenet_layer2_0_conv1"].strides == (1, 1) and conv["imagenet_layer2_0_conv2"].strides == (2, 2)


def test_blur_is_skimage_gaussian_semantics():
    """postprocess.gaussian_blur = scipy.ndimage.gaussian_filter(mode="nearest", truncate=4), skimage's call."""
    import scipy.ndimage

    from keras_emlnet.models import postprocess

    maps = np.random.default_rng(3).random((2, 37, 53, 1)).astype(np.float32)
    maps[0, :4] += 5.0  # a bright edge: "nearest" edges matter
    got = postprocess.gaussian_blur(maps, released.BLUR_SIGMA).numpy()
    for k in range(2):
        want = scipy.ndimage.gaussian_filter(maps[k, ..., 0].astype(np.float64), 5.0, mode="nearest", truncate=4.0)
        np.testing.assert_allclose(got[k, ..., 0], want, rtol=0, atol=1e-5)
    # a radius-20 kernel (int(4 * 5 + 0.5)) on a 37-row map: the edge rule, not zero padding
    zero_padded = scipy.ndimage.gaussian_filter(maps[0, ..., 0], 5.0, mode="constant", truncate=4.0)
    assert np.abs(got[0, ..., 0] - zero_padded).max() > 0.1
