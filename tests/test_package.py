"""The foundation's contracts: importable packages and exactly pinned dependencies."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
PIN = re.compile(r"^(?P<name>[A-Za-z0-9_.\[\]-]+)==(?P<version>[0-9][^ ;]*)$")


def _requirements(filename):
    lines = (ROOT / filename).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def test_every_requirement_is_pinned_exactly():
    for filename in ("requirements.txt", "requirements-dev.txt", "requirements-beam.txt"):
        for line in _requirements(filename):
            assert PIN.match(line), f"{filename}: {line!r} is not pinned with =="


def test_core_versions_and_excluded_packages():
    pins = {PIN.match(l)["name"].lower(): PIN.match(l)["version"] for l in _requirements("requirements.txt")}
    assert pins["tensorflow"].startswith("2.21.")
    assert pins["keras"].startswith("3.15.")
    assert pins["tensorflow-serving-api"].startswith("2.21.")
    for excluded in ("tensorflow-addons", "keras-cv"):
        assert excluded not in pins


def test_installed_versions_match_the_pins():
    from importlib import metadata

    for line in _requirements("requirements.txt") + _requirements("requirements-beam.txt"):
        match = PIN.match(line)
        assert metadata.version(match["name"]) == match["version"], line


def test_beam_extra_pins_what_the_beam_lock_pins():
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    lock = {PIN.match(l)["name"].lower(): l for l in _requirements("requirements-beam.txt")}
    assert extras["beam"] == [lock["apache-beam"]]


def test_packages_import():
    import keras_emlnet
    import serving
    import train

    assert keras_emlnet.__version__
    assert train.__name__ == "train" and serving.__name__ == "serving"


def test_public_model_api_is_the_library_s_own():
    import keras_emlnet
    from keras_emlnet.models import encoder, saving

    assert keras_emlnet.load_model is saving.load_model
    assert keras_emlnet.SaliencyEncoder is encoder.SaliencyEncoder
    assert keras_emlnet.build_encoder is encoder.build_encoder
    assert {"load_model", "SaliencyEncoder", "build_encoder"} <= set(keras_emlnet.__all__)
