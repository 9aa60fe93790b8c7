"""Shared pytest setup: quiet TensorFlow, deterministic seeds, small sizes."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np
import pytest


@pytest.fixture
def rng():
    """A seeded NumPy generator: every random test input is reproducible."""
    return np.random.default_rng(1234)


# --- keras_emlnet.data: tiny generated datasets (session-scoped, ~0.3 s to write) ---
GENERATED_DATASETS = {
    # name: (num_images, image_size): small sizes keep every data test fast
    "salicon": (8, (48, 64)),  # 4 train, 2 val, 2 test
    "mit1003": (10, (48, 64)),  # longest side 64, the other 26-64 px; 9 train, 1 val
    "cat2000": (12, (36, 64)),  # 4 categories x 3 images; 8 train, 4 val
}


@pytest.fixture(scope="session")
def generated_datasets(tmp_path_factory):
    """{"salicon"|"mit1003"|"cat2000": root folder} of tiny synthetic datasets.

    Written once per session by keras_emlnet.data.generate in the real on-disk
    layouts. Read-only: copy a tree (shutil.copytree) before damaging it.
    """
    from keras_emlnet.data import generate_dataset

    base = tmp_path_factory.mktemp("generated_datasets")
    roots = {}
    for name, (num_images, image_size) in GENERATED_DATASETS.items():
        roots[name] = str(base / name)
        generate_dataset(name, roots[name], num_images, seed=0, image_size=image_size)
    return roots


# --- serving: one exported tiny EMLNet shared by the serving tests (~10 s to export) ---
@pytest.fixture(scope="session")
def serving_export(tmp_path_factory):
    """(Keras EMLNet, export_base) with version 1 of a tiny EMLNet exported by serving.export.

    Read-only: copy the tree (shutil.copytree) before adding versions.
    """
    from tests.serving.helpers import export_tiny

    base = tmp_path_factory.mktemp("serving_export") / "emlnet"
    model, _ = export_tiny(base, 1)
    return model, str(base)


# --- the released EML-NET (keras_emlnet.convert_released): seeded checkpoints in the official format ---
RELEASED_TEST_SIZE = (72, 100)  # odd strides: readouts 36x50, 18x25, 9x13, 5x7, 3x4


@pytest.fixture(scope="session")
def released_checkpoints(tmp_path_factory):
    """(torch models (imagenet, places, decoder), {role: path}) in the released checkpoints' forms.

    Seeded PyTorch models of the official architecture with calibrated
    BatchNorm statistics (tests/models/released_reference.py, ~15 s), saved
    as the official scripts do: imagenet `{'state_dict': ...}` (zip), places
    with DataParallel's `module.` prefix in torch's legacy format, the decoder
    `{'state_dict': ...}`. Read-only.
    """
    torch = pytest.importorskip("torch")
    from tests.models import released_reference

    imagenet, places, decoder = released_reference.released_models()
    base = tmp_path_factory.mktemp("released_checkpoints")
    paths = {role: str(base / f"res_{role}.pth") for role in ("imagenet", "places", "decoder")}
    torch.save({"state_dict": imagenet.state_dict()}, paths["imagenet"])
    torch.save({"state_dict": {f"module.{k}": v for k, v in places.state_dict().items()}}, paths["places"],
               _use_new_zipfile_serialization=False)
    torch.save({"state_dict": decoder.state_dict()}, paths["decoder"])
    return (imagenet, places, decoder), paths


@pytest.fixture(scope="session")
def released_small(released_checkpoints, tmp_path_factory):
    """(emlnet.keras path, {prefix: encoder .keras path}) converted at RELEASED_TEST_SIZE (~25 s). Read-only."""
    from keras_emlnet.models.released_weights import convert_released

    _, paths = released_checkpoints
    base = tmp_path_factory.mktemp("released_small")
    out = str(base / "emlnet_resnet50.keras")
    convert_released(paths["imagenet"], paths["places"], paths["decoder"], out, encoders_dir=str(base / "encoders"),
                     input_size=RELEASED_TEST_SIZE)
    encoders = {prefix: str(base / "encoders" / f"{prefix}_encoder.keras") for prefix in ("imagenet", "places")}
    return out, encoders
