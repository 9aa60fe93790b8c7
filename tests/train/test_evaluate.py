"""`python -m train.evaluate` end to end on generated CAT2000: tables, files, per-category rows, config."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from tests.paths import REPO_ROOT

REPO = REPO_ROOT
HEADERS = ["AUC-Judd", "SIM", "EMD", "AUC-Borji", "sAUC", "CC", "NSS", "KLD", "IG"]


@pytest.fixture(scope="module")
def cat2000(tmp_path_factory):
    from keras_emlnet.data import generate_dataset

    root = str(tmp_path_factory.mktemp("cat2000"))
    generate_dataset("cat2000", root, 6, seed=2, image_size=(36, 64), num_observers=3, num_categories=2)
    return root


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    from keras_emlnet.testing import tiny_emlnet

    path = str(tmp_path_factory.mktemp("run") / "emlnet.keras")
    tiny_emlnet((24, 32), output_mode="minmax", seed=4).save(path)
    return path


@pytest.fixture(scope="module")
def published_maps(cat2000, tmp_path_factory):
    """Another model's maps as a user downloads them: <category>/<name>.png (8-bit)."""
    from PIL import Image

    from keras_emlnet.data import iter_eval_samples

    root = tmp_path_factory.mktemp("published")
    for k, sample in enumerate(iter_eval_samples("cat2000", cat2000, "all", input_size=(24, 32))):
        os.makedirs(str(root / sample.category), exist_ok=True)
        noisy = sample.density_original + np.random.default_rng(k).random(sample.density_original.shape) * 1e-4
        Image.fromarray(np.uint8(255 * noisy / noisy.max())).save(str(root / sample.category / f"{sample.name}.png"))
    return str(root)


@pytest.fixture(scope="module")
def cli_run(cat2000, model_path, published_maps, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("eval"))
    command = [sys.executable, "-m", "train.evaluate", f"--model={model_path}", f"--data_dir={cat2000}",
               "--dataset=cat2000", "--split=all", f"--baseline_maps={published_maps}",
               "--baseline_name=published", f"--out={out}", "--seed=7", "--progress=0", "--report"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result.stdout


def test_cli_prints_and_writes_the_table_in_paper_column_order(cli_run):
    out, stdout = cli_run
    header = next(line for line in stdout.splitlines() if line.startswith("model"))
    assert header.split() == ["model"] + HEADERS
    assert {"results.md", "results.csv", "results.json", "results_per_category.csv", "config.json"} <= set(os.listdir(out))
    with open(os.path.join(out, "results.csv")) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["model"] + HEADERS + ["images"]
    assert [r[0] for r in rows[1:]] == ["emlnet", "center bias", "published"]
    with open(os.path.join(out, "results.md")) as f:
        assert f.readline().strip() == "| model | " + " | ".join(HEADERS) + " |"


def test_cli_report_sits_beside_results_md_with_a_gallery_per_category(cli_run):
    import re

    out, _ = cli_run
    with open(os.path.join(out, "report.html"), encoding="utf-8") as f:
        page = f.read()
    # generated CAT2000 with 2 categories: each its own section, the folder baseline as the third panel
    sections = re.findall(r"<h3>([^<]+)</h3>", page)
    assert len(sections) == 2 and all(s.endswith(": best and worst by NSS") for s in sections)
    assert "<h2>Per category</h2>" in page
    captions = re.findall(r"<figcaption>([^<·]+)", page)
    assert captions[:4] == ["photo", "ground truth", "emlnet ", "published "]
    assert page.count("<img src=\"data:image/jpeg;base64,") == len(captions)


def test_cli_numbers_equal_the_library_run(cli_run, cat2000, model_path, published_maps):
    from keras_emlnet.evaluation.evaluate import EvalConfig, evaluate
    from keras_emlnet.inference.predictor import load_predictor

    out, _ = cli_run
    with open(os.path.join(out, "results.json")) as f:
        document = json.load(f)
    config = EvalConfig("cat2000", cat2000, split="all", model_name="emlnet", baseline_maps=published_maps,
                        baseline_name="published", seed=7)
    results = evaluate(load_predictor(model_path), config)
    for written, computed in zip(document["rows"], results.summary):
        assert written["row"] == computed["row"]
        for key in ("auc_judd", "sim", "emd", "auc_borji", "auc_shuffled", "cc", "nss", "kld", "info_gain"):
            assert written[key] == pytest.approx(computed[key], rel=1e-9, nan_ok=True)
    # the published maps are the ground truth (plus noise): they must beat the center bias
    by_row = {r["row"]: r for r in document["rows"]}
    assert by_row["published"]["cc"] > 0.9 > by_row["center bias"]["cc"]
    assert len(document["per_image"]) == 3 * document["images"]


def test_cat2000_is_reported_per_category(cli_run, cat2000):
    out, stdout = cli_run
    with open(os.path.join(out, "results.json")) as f:
        document = json.load(f)
    from keras_emlnet.data.cat2000 import dataset_root

    stimuli = os.path.join(dataset_root(cat2000), "Stimuli")
    categories = sorted(d for d in os.listdir(stimuli) if os.path.isdir(os.path.join(stimuli, d)))
    groups = sorted({entry["group"] for entry in document["per_category"]})
    assert groups == categories and len(document["per_category"]) == 3 * len(categories)
    assert sum(e["images"] for e in document["per_category"] if e["row"] == "emlnet") == document["images"]
    assert any(line.startswith("category") for line in stdout.splitlines())


def test_config_records_what_was_run(cli_run, model_path, cat2000):
    out, _ = cli_run
    with open(os.path.join(out, "config.json")) as f:
        config = json.load(f)
    assert config["model"] == model_path and config["data_dir"] == cat2000
    assert config["seed"] == 7 and config["shuffled_others"] == 10
    assert config["rows"] == ["emlnet", "center bias", "published"]
    assert config["input_size"] == [24, 32] and config["output_mode"] == "minmax"


def test_bad_sample_without_skip_bad_is_one_line_naming_the_file_and_the_fix(cat2000, model_path, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(cat2000, data)
    bad = next(str(p) for p in sorted(data.rglob("*.jpg")))
    with open(bad, "wb") as f:
        f.write(b"not an image")
    command = [sys.executable, "-m", "train.evaluate", f"--model={model_path}", f"--data_dir={data}",
               "--dataset=cat2000", "--split=all", f"--out={tmp_path / 'eval'}", "--progress=0"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("train.evaluate:")]
    assert bad in line and "--skip_bad" in line
    result = subprocess.run(command + ["--skip_bad"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "eval" / "results.md") as f:
        text = f.read()
    assert "1 bad sample(s) were left out" in text and bad in text


def test_tables_say_which_post_processing_produced_each_row(cli_run):
    out, stdout = cli_run
    expected = {"emlnet": "no blur, minmax", "center bias": "none (a centred Gaussian, not a model)",
                "published": "maps as read from the folder"}
    with open(os.path.join(out, "results.json")) as f:
        assert json.load(f)["postprocessing"] == expected
    with open(os.path.join(out, "results.md")) as f:
        markdown = f.read()
    for row, description in expected.items():
        assert f"- {row}: {description}\n" in markdown and f"- {row}: {description}" in stdout
