"""keras_emlnet.metrics as a package: the flat module's names, one family per module, no TensorFlow."""

import importlib
import inspect
import pkgutil
import subprocess
import sys

import pytest

from keras_emlnet import metrics
from keras_emlnet.metrics import auc, density, earth_mover, fixation, suite
from tests.paths import REPO_ROOT

# Every public name of the flat keras_emlnet/metrics.py this package replaced (its functions,
# constants and the names it re-exported), with the module of the package that now defines it.
FLAT_MODULE_NAMES = {
    "auc_judd": auc, "auc_borji": auc, "auc_shuffled": auc, "DEFAULT_N_SPLITS": auc, "DEFAULT_SEED": auc,
    "DEFAULT_STEP_SIZE": auc, "JUDD_JITTER_DIVISOR": auc,
    "cc": density, "kld": density, "sim": density, "EPS": density, "pair_metrics_of": density,
    "emd": earth_mover, "EMD_DOWNSIZE": earth_mover,
    "nss": fixation, "nss_of": fixation, "info_gain": fixation, "info_gain_of": fixation,
    "score_all": suite, "METRIC_NAMES": suite,
}
# Modules shared by every family: the package's private helpers and MATLAB's imresize.
SHARED = {"keras_emlnet.metrics._checks", "keras_emlnet.metrics._reductions", "keras_emlnet.metrics.imresize"}


@pytest.mark.parametrize("name", sorted(FLAT_MODULE_NAMES))
def test_the_flat_module_names_are_the_family_modules_objects(name):
    assert getattr(metrics, name) is getattr(FLAT_MODULE_NAMES[name], name)


def test_all_is_the_nine_benchmark_metrics_and_score_all():
    assert metrics.__all__ == [*suite.METRIC_NAMES[:3], "nss", "cc", "kld", "sim", "emd", "info_gain", "score_all"]
    assert set(metrics.__all__) == set(suite.METRIC_NAMES) | {"score_all"}


def _metric_modules():
    names = [info.name for info in pkgutil.iter_modules(metrics.__path__) if info.name != "keras"]
    return [importlib.import_module(f"keras_emlnet.metrics.{name}") for name in names]


@pytest.mark.parametrize("module", _metric_modules(), ids=lambda module: module.__name__.rsplit(".", 1)[1])
def test_no_module_exposes_another_familys_functions(module):
    owners = {  # public functions and classes -> the module defining them (constants have none)
        name: getattr(value, "__module__", None) for name, value in vars(module).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    foreign = [
        name for name, owner in owners.items()
        if owner and owner.startswith("keras_emlnet.metrics.") and owner not in (module.__name__, *SHARED)
    ]
    assert foreign == []
    assert not hasattr(module, "__all__")  # only the package declares a public list


def test_importing_the_package_loads_neither_tensorflow_nor_keras():
    code = (
        "import sys\n"
        "import keras_emlnet.metrics\n"
        "assert keras_emlnet.metrics.auc_judd is not None\n"
        "print(sorted(m for m in ('tensorflow', 'keras', 'keras_emlnet.metrics.keras') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
