"""keras_emlnet.evaluation.columns: the table columns are the metric suite's names, and the
evaluation modules depend one way (evaluate -> tables -> columns)."""

import subprocess
import sys

from keras_emlnet.evaluation.columns import LOWER_IS_BETTER, METRIC_COLUMNS, METRIC_KEYS
from keras_emlnet.metrics.suite import METRIC_NAMES
from tests.paths import REPO_ROOT


def test_columns_cover_every_metric_once():
    assert METRIC_KEYS == tuple(key for key, _ in METRIC_COLUMNS)
    assert sorted(METRIC_KEYS) == sorted(METRIC_NAMES)
    assert LOWER_IS_BETTER < set(METRIC_KEYS)


def _loaded_after_import(module):
    code = (
        "import sys\n"
        f"import {module}\n"
        "print(sorted(m for m in sys.modules if m.startswith('keras_emlnet.evaluation.')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return result.stdout.strip()


def test_tables_and_columns_do_not_import_evaluate():
    assert _loaded_after_import("keras_emlnet.evaluation.columns") == "['keras_emlnet.evaluation.columns']"
    assert _loaded_after_import("keras_emlnet.evaluation.tables") == (
        "['keras_emlnet.evaluation.columns', 'keras_emlnet.evaluation.tables']"
    )
