"""Packaging: pyproject's ranges accept the lock, `pip install .` gives working console scripts.

requirements.txt is the exact lock `make test` installs; pyproject.toml
declares compatible ranges so the package installs into an existing
environment. The install test builds and installs the package, with pip's
resolver checking the ranges against what is installed, into a fresh venv that
sees this environment's packages (all but keras-emlnet itself) through a .pth
file: no index, no download.
"""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = pathlib.Path(__file__).resolve().parents[1]
PIN = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==(?P<version>[0-9][^ ;]*)$")


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _ranges():
    """{canonical name: Requirement} over the dependencies and every extra."""
    project = _pyproject()
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements.extend(extra)
    parsed = [Requirement(text) for text in requirements]
    return {canonicalize_name(requirement.name): requirement for requirement in parsed}


def _locked(filename):
    """{canonical name: version} of one lock file."""
    pins = {}
    for line in (ROOT / filename).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            match = PIN.match(line)
            assert match, f"{filename}: {line!r} is not an exact pin"
            pins[canonicalize_name(match["name"])] = match["version"]
    return pins


def _lock_files():
    """requirements.txt and the extras' locks (requirements-<extra>.txt); not the test-only -dev."""
    return ["requirements.txt"] + sorted(path.name for path in ROOT.glob("requirements-*.txt")
                                         if path.name != "requirements-dev.txt")


def test_every_locked_pin_satisfies_its_range():
    ranges = _ranges()
    runtime = _locked("requirements.txt")
    # Every runtime pin is declared, and everything declared is locked somewhere.
    assert not set(runtime) - set(ranges), f"locked without a range: {sorted(set(runtime) - set(ranges))}"
    locked = {}
    for filename in _lock_files():
        for name, version in _locked(filename).items():
            locked[name] = (filename, version)
    assert not set(ranges) - set(locked), f"ranged without a lock: {sorted(set(ranges) - set(locked))}"
    # An extra's lock may also pin packages it pulls in (no range of ours): only ranged ones are checked.
    for name, (filename, version) in locked.items():
        if name in ranges:
            assert ranges[name].specifier.contains(version, prereleases=True), \
                f"{name}=={version} ({filename}) is outside {ranges[name]} (pyproject.toml)"


def test_ranges_are_ranges_and_hold_tensorflow_to_the_tested_minor():
    project = _pyproject()
    for text in project["dependencies"] + project["optional-dependencies"]["serving"]:
        requirement = Requirement(text)
        assert all(spec.operator != "==" for spec in requirement.specifier), f"{requirement} is a pin"
    tensorflow = _ranges()["tensorflow"].specifier
    assert tensorflow.contains("2.21.0") and tensorflow.contains("2.21.9")
    assert not tensorflow.contains("2.20.1") and not tensorflow.contains("2.22.0")
    # The serving-only packages are an extra, not a requirement of the library.
    dependencies = {canonicalize_name(Requirement(text).name) for text in project["dependencies"]}
    assert "tensorflow-serving-api" not in dependencies
    serving = {canonicalize_name(Requirement(text).name) for text in project["optional-dependencies"]["serving"]}
    assert {"tensorflow-serving-api", "grpcio"} <= serving


def test_console_scripts_are_the_cli_modules():
    from train import console_scripts

    scripts = _pyproject()["scripts"]
    assert set(scripts) == set(console_scripts.SCRIPTS)
    for script, target in scripts.items():
        module, function = target.split(":")
        assert module == "train.console_scripts"
        assert callable(getattr(console_scripts, function)), target
        # each function runs the module its script name says
        source = (ROOT / "train" / "console_scripts.py").read_text()
        assert re.search(rf'def {function}\(\):\n    _run\("{script}"\)', source), target
        cli_path = ROOT / (console_scripts.SCRIPTS[script].replace(".", "/") + ".py")
        cli_source = cli_path.read_text()
        assert "def define_flags(" in cli_source and "def main(argv)" in cli_source, cli_path


def test_library_and_training_run_without_the_serving_extra():
    # tensorflow_serving (the `serving` extra) made unimportable: the library, the
    # training/evaluation CLIs and batch scoring still import, and nothing pulled it in.
    code = """
import sys
sys.modules["tensorflow_serving"] = None   # import raises ImportError
import keras_emlnet
keras_emlnet.EMLNet, keras_emlnet.build_encoder, keras_emlnet.load_model
import keras_emlnet.training.encoder_stage, keras_emlnet.training.decoder_stage, keras_emlnet.training.finetune
import keras_emlnet.evaluation.evaluate, keras_emlnet.inference.predictor
import train.encoder, train.decoder, train.finetune, train.evaluate, serving.batch_score
loaded = sorted(name for name in sys.modules if name.startswith("tensorflow_serving") and sys.modules[name])
print("LOADED", loaded)
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "LOADED []" in result.stdout


def _environment_view(path):
    """A folder of links to this environment's site-packages, keras-emlnet itself left out."""
    site = pathlib.Path(sysconfig.get_paths()["purelib"])
    path.mkdir()
    for entry in site.iterdir():
        lowered = entry.name.lower()
        if "keras_emlnet" in lowered or "keras-emlnet" in lowered or entry.suffix == ".pth":
            continue
        (path / entry.name).symlink_to(entry)
    return path


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv where `pip install .` put keras-emlnet; returns (venv, work dir)."""
    tmp = tmp_path_factory.mktemp("install")
    source = tmp / "source"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("keras_emlnet", "train", "serving"):
        shutil.copytree(ROOT / folder, source / folder, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    (venv_site,) = venv.glob("lib/python*/site-packages")
    (venv_site / "environment.pth").write_text(str(_environment_view(tmp / "view")) + "\n")
    # No pip configuration (a machine's find-links or extra index could supply what the ranges exclude).
    env = {name: value for name, value in os.environ.items() if not name.startswith("PIP_") and name != "PYTHONPATH"}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_NO_CACHE_DIR="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1", TF_CPP_MIN_LOG_LEVEL="3")
    # No --no-deps: pip resolves every range against the installed packages and fails without an index
    # if one excluded them.
    result = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-build-isolation",
                             "--no-index", str(source)], cwd=tmp, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Successfully installed keras-emlnet-" in result.stdout
    return venv, tmp, env


def test_pip_install_puts_working_console_scripts_on_path(installed):
    venv, tmp, env = installed
    python = str(venv / "bin" / "python")
    for script in _pyproject()["scripts"]:
        assert (venv / "bin" / script).is_file(), script
    # Each entry point resolves to a function of the installed copy (not this checkout), and every
    # CLI module it runs is installed; py.typed and the licence are installed.
    code = """
import importlib.metadata as md, importlib.util, pathlib
dist = md.distribution("keras-emlnet")
points = [p for p in dist.entry_points if p.group == "console_scripts"]
from train.console_scripts import SCRIPTS
for point in points:
    assert callable(point.load()), point
    assert importlib.util.find_spec(SCRIPTS[point.name]) is not None, point
import keras_emlnet
package = pathlib.Path(keras_emlnet.__file__).parent
assert (package / "py.typed").is_file()
assert any(str(f).endswith("LICENSE") for f in dist.files)
print(len(points), package, sorted(dist.metadata.get_all("Provides-Extra")))
"""
    result = subprocess.run([python, "-c", code], cwd=tmp, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    count, package, extras = result.stdout.split(maxsplit=2)
    assert int(count) == len(_pyproject()["scripts"])
    assert package.startswith(str(venv)), package
    assert "'serving'" in extras
    # A script runs its command with its flags: a tiny dataset written by the installed CLI.
    out = tmp / "generated"
    result = subprocess.run([str(venv / "bin" / "emlnet-generate-data"), "--dataset=mit1003", f"--out={out}",
                             "--num_images=2", "--image_size=30x40", "--seed=3"], cwd=tmp, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((out / "config.json").read_text())["image_size"] == [30, 40]
    assert len(list((out / "ALLSTIMULI").iterdir())) == 2
    # The scripts run: --help lists each CLI's own flags (absl exits 1 after help).
    for script, expected in (("emlnet-train-encoder", ["--backbone", "--lr_decay_factor", "--weight_decay"]),
                             ("emlnet-serve", ["--model_config_file", "--rest_api_port", "development"])):
        result = subprocess.run([str(venv / "bin" / script), "--help"], cwd=tmp, env=env, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode in (0, 1), result.stderr[-3000:]
        for text in expected:
            assert text in result.stdout, (script, text, result.stdout[-2000:])


def _public_functions():
    import keras_emlnet
    from keras_emlnet import metrics

    functions = {name: getattr(keras_emlnet, name) for name in
                 ("build_encoder", "build_feature_extractor", "build_decoder", "load_model", "get_backbone")}
    functions["EMLNet.__init__"] = keras_emlnet.EMLNet.__init__
    functions["EMLLoss.__init__"] = keras_emlnet.EMLLoss.__init__
    for name in metrics.METRIC_NAMES + ("score_all",):
        functions[f"metrics.{name}"] = getattr(metrics, name)
    return functions


def test_the_public_api_is_typed():
    import inspect
    import typing

    assert (ROOT / "keras_emlnet" / "py.typed").is_file()
    for name, function in _public_functions().items():
        signature = inspect.signature(function)
        missing = [parameter.name for parameter in signature.parameters.values()
                   if parameter.name != "self" and parameter.kind is not parameter.VAR_KEYWORD
                   and parameter.annotation is parameter.empty]
        assert not missing, f"{name}: parameters without a type: {missing}"
        assert signature.return_annotation is not signature.empty, f"{name}: no return type"
        typing.get_type_hints(function)  # every annotation resolves
    # Type checkers see the lazily imported names: the TYPE_CHECKING block imports each of them.
    import ast

    import keras_emlnet

    tree = ast.parse((ROOT / "keras_emlnet" / "__init__.py").read_text())
    (block,) = [node for node in tree.body
                if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING"]
    declared = {alias.asname or alias.name for node in block.body for alias in node.names}
    assert declared == set(keras_emlnet._LAZY)
    assert set(keras_emlnet.__all__) == set(keras_emlnet._LAZY) | {"__version__"}
