"""Every CLI module imports into one process without a flag defined twice, and keeps its documented flags.

absl flags are process-wide: two modules defining the same name at import
raise DuplicateFlagError as soon as both are imported (a notebook, the demo,
a test session). So no CLI defines a flag at import: each defines its flags
in `define_flags(flag_values)`, called only when it runs (the training CLIs
through `train.flags_common`'s shared definitions). The imports happen in a
fresh subprocess so that this pytest process's own imports cannot hide or
cause a clash.
"""

import json
import subprocess
import sys

import pytest

from tests.paths import REPO_ROOT

REPO = REPO_ROOT

# CLI module -> flags its issue (4-9) or usage line documents.
DOCUMENTED = {
    "keras_emlnet.convert_places365": set(),  # positional: CHECKPOINT.pth.tar OUT.weights.h5
    "keras_emlnet.convert_released": {"imagenet", "places", "decoder", "out", "encoders_dir"},  # issue 14
    "keras_emlnet.data.generate": {"dataset", "out", "num_images"},
    "keras_emlnet.data.to_tfrecord": {"dataset", "data_dir", "split", "out", "num_shards"},
    "train.encoder": {"backbone", "data_dir", "dataset", "weights", "workdir", "learning_rate", "mixed_precision",
                      "strategy", "distribution", "input_size", "max_steps", "verbose"},
    "train.decoder": {"encoders", "data_dir", "dataset", "workdir", "verbose"},
    "train.finetune": {"dataset", "from", "data_dir", "workdir", "verbose"},
    "train.paper": {"data_dir", "workdir", "experiments", "smoke"},  # issue 15
    "train.evaluate": {"model", "data_dir", "dataset", "split", "baseline_maps", "out", "batch_size", "seed",
                       "skip_bad", "verbose", "report"},
    "serving.export": {"model", "export_base", "version", "verbose"},
    "serving.server": {"model_base_path", "model_name", "grpc_port", "rest_port", "enable_batching",
                       "batching_parameters_file", "host", "file_system_poll_wait_seconds",
                       # tensorflow_model_server's names (issue 18)
                       "port", "rest_api_port", "model_config_file"},
    "serving.client": {"server", "model_name", "out", "rest"},
    "serving.batch_score": {"model", "images", "out", "format", "overlays", "precision", "shard_index",
                            "num_shards", "batch_size", "verbose"},
    "serving.beam_score": {"model", "images", "out", "format", "overlays", "precision", "batch_size"},
    "train.demo": {"out", "input_size", "encoder_steps", "decoder_steps", "verbose"},  # its usage lines
}
# The training CLIs: their shared flags are train.flags_common's.
TRAINING = ("train.encoder", "train.decoder", "train.finetune")

_PROBE = r"""
import importlib, json, os, sys
from absl import flags

report = {}
for name in json.loads(sys.argv[1]):
    entry = report[name] = {}
    if name == "train.demo" and not os.path.exists(os.path.join("train", "demo.py")):
        entry["absent"] = True
        continue
    try:
        module = importlib.import_module(name)
        if hasattr(module, "__path__"):  # a package: `python -m` runs its __main__
            module = importlib.import_module(name + ".__main__")
    except flags.DuplicateFlagError as error:
        entry["error"] = str(error)
        continue
    entry["has_define_flags"] = hasattr(module, "define_flags")
    if entry["has_define_flags"]:
        fresh = flags.FlagValues()
        module.define_flags(fresh)
        entry["flags"] = {n: {"default": fresh[n].default, "help": fresh[n].help} for n in fresh}
        entry["key_flags"] = sorted(f.name for f in fresh.get_key_flags_for_module(module))
        try:  # only the required flags missing: which does absl name?
            fresh(["prog"])
        except flags.IllegalFlagValueError as error:
            entry["required_error"] = str(error)
by_module = flags.FLAGS.flags_by_module_dict()
report["__defined_at_import__"] = {m: sorted(f.name for f in fs) for m, fs in by_module.items()}
print("REPORT" + json.dumps(report, default=str))
"""


@pytest.fixture(scope="module")
def report():
    # train.demo last: should it clash, the clash is its own, not blamed on a later import.
    names = [n for n in DOCUMENTED if n != "train.demo"] + ["train.demo"]
    result = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(names)], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    line = [line for line in result.stdout.splitlines() if line.startswith("REPORT")][-1]
    return json.loads(line[len("REPORT"):])


def _demo_marks():
    # train/demo.py defines its flags in define_flags() like the other non-training CLIs.
    return []


@pytest.mark.parametrize(
    "name", [n if n != "train.demo" else pytest.param(n, marks=_demo_marks()) for n in DOCUMENTED]
)
def test_cli_imports_beside_every_other_cli_and_keeps_its_flags(report, name):
    entry = report[name]
    if entry.get("absent"):
        pytest.skip("train/demo.py is not present")
    assert "error" not in entry, entry.get("error")
    defined_at_import = report["__defined_at_import__"]
    # Nothing at import, so it can never clash; its flags come from define_flags().
    assert name not in defined_at_import, defined_at_import.get(name)
    assert entry["has_define_flags"], f"{name} has no define_flags()"
    available = set(entry.get("flags", {}))
    # Nor may it take a name that absl or TensorFlow define at import (present in every run).
    libraries = {flag for module, names in defined_at_import.items()
                 if not module.startswith(("train.", "serving.", "keras_emlnet.")) for flag in names}
    assert not available & libraries, sorted(available & libraries)
    assert DOCUMENTED[name] <= available, sorted(DOCUMENTED[name] - available)


def test_no_cli_nor_shared_flag_module_defines_flags_at_import(report):
    ours = [module for module in report["__defined_at_import__"]
            if module.startswith(("train.", "serving.", "keras_emlnet."))]
    assert not ours, {module: report["__defined_at_import__"][module] for module in ours}


@pytest.mark.parametrize("name", TRAINING)
def test_training_clis_share_the_training_flags_and_mark_theirs_required(report, name):
    entry = report[name]
    shared = {"data_dir", "dataset", "skip_bad", "batch_size", "seed", "workdir", "input_size", "epochs",
              "learning_rate", "lr_decay_epochs", "mixed_precision", "strategy", "distribution", "max_steps"}
    assert shared <= set(entry["flags"])
    defaults = {flag: values["default"] for flag, values in entry["flags"].items()}
    assert defaults["batch_size"] is None  # None: the recipe's value
    if name == "train.finetune":  # required: its help must not show a default it rejects (salicon)
        assert defaults["dataset"] is None and "--dataset must have a value" in entry["required_error"]
        assert "salicon" not in entry["flags"]["dataset"]["help"]
    else:
        assert defaults["dataset"] == "salicon"
    # Listed by `python -m <cli> --help` as the CLI's own, though defined in train.flags_common.
    assert shared <= set(entry["key_flags"])
    for flag in ("data_dir", "workdir"):
        assert f"--{flag} must have a value" in entry["required_error"], (name, flag)


def test_evaluate_keeps_its_defaults_and_lists_the_shared_dataset_flags_as_its_own(report):
    evaluate = report["train.evaluate"]
    defaults = {name: flag["default"] for name, flag in evaluate["flags"].items()}
    assert defaults["batch_size"] == 8 and defaults["seed"] == 0 and defaults["split"] == "val"
    assert defaults["skip_bad"] is False and defaults["precision"] == "float32"
    assert defaults["dataset"] is None  # required here; the training CLIs default to salicon
    assert "dataset" in evaluate["required_error"] and "model" in evaluate["required_error"]
    # Defined through train.flags_common, yet listed by `python -m train.evaluate --help`.
    assert {"data_dir", "dataset", "skip_bad", "model"} <= set(evaluate["key_flags"])
    # The very same definitions as the training CLIs' (train.flags_common).
    assert evaluate["flags"]["data_dir"]["help"].startswith("Dataset root folder")
    assert evaluate["flags"]["data_dir"]["help"] == report["train.encoder"]["flags"]["data_dir"]["help"]


def test_batch_score_and_the_serving_clis_keep_their_defaults(report):
    defaults = {name: {n: f["default"] for n, f in report[name]["flags"].items()}
                for name in ("serving.batch_score", "serving.client", "serving.export", "serving.server")}
    assert defaults["serving.batch_score"]["batch_size"] == 8
    assert defaults["serving.batch_score"]["format"] == "png"
    assert defaults["serving.client"]["batch_size"] == 4
    assert defaults["serving.export"]["seed"] == 0
    assert (defaults["serving.server"]["host"], defaults["serving.server"]["grpc_port"]) == ("127.0.0.1", 8500)
    required = {"serving.batch_score": ("model", "images", "out"), "serving.export": ("model", "export_base"),
                "serving.client": ("out",),
                "keras_emlnet.data.generate": ("dataset", "out", "num_images")}
    for name, names in required.items():
        for flag in names:
            assert f"--{flag} must have a value" in report[name]["required_error"], (name, flag)
