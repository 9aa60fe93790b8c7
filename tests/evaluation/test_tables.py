"""keras_emlnet.evaluation.tables: means per row/category, and the text/Markdown/CSV/JSON writers."""

import csv
import io
import json

import numpy as np

from keras_emlnet.evaluation import tables
from keras_emlnet.evaluation.columns import METRIC_COLUMNS, METRIC_KEYS

HEADERS = ["AUC-Judd", "SIM", "EMD", "AUC-Borji", "sAUC", "CC", "NSS", "KLD", "IG"]


def _records():
    records = []
    for i, (category, row) in enumerate([("A", "m"), ("A", "m"), ("B", "m"), ("A", "cb"), ("B", "cb")]):
        scores = {key: float(i + k) for k, key in enumerate(METRIC_KEYS)}
        records.append({"name": f"im{i}", "category": category, "row": row, **scores})
    records[1]["auc_borji"] = float("nan")  # undefined for one image: left out, counted
    return records


def test_columns_are_the_mit_benchmark_order_with_ig_last():
    assert [h for _, h in METRIC_COLUMNS] == HEADERS


def test_summarize_means_per_row_and_per_category():
    records = _records()
    summary = tables.summarize(records, ["m", "cb"])
    assert [e["row"] for e in summary] == ["m", "cb"]
    assert summary[0]["images"] == 3
    assert summary[0]["auc_judd"] == np.mean([0.0, 1.0, 2.0])
    assert summary[0]["auc_borji"] == np.mean([3.0, 5.0])
    assert summary[0]["nan_counts"] == {"auc_borji": 1}
    by_category = tables.summarize(records, ["m", "cb"], group_key="category")
    assert [(e["group"], e["row"]) for e in by_category] == [("A", "m"), ("A", "cb"), ("B", "m"), ("B", "cb")]
    assert by_category[0]["sim"] == np.mean([1.0, 2.0])


def test_markdown_and_text_tables_in_column_order():
    summary = tables.summarize(_records(), ["m", "cb"])
    markdown = tables.format_markdown(summary).splitlines()
    assert markdown[0] == "| model | " + " | ".join(HEADERS) + " |"
    assert markdown[1] == "|---|" + "|".join(["---:"] * 9) + "|"
    assert markdown[2].startswith("| m | 1.0000 | 2.0000 |")
    text = tables.format_text(summary).splitlines()
    assert text[0].split() == ["model"] + HEADERS
    assert text[3].split()[:2] == ["cb", "3.5000"]


def test_csv_keeps_full_precision_and_json_has_null_for_nan(tmp_path):
    records = _records()
    records[0]["cc"] = 1 / 3
    summary = tables.summarize([r for r in records if r["row"] == "m"], ["m"])
    summary[0]["kld"] = float("nan")
    rows = list(csv.reader(io.StringIO(tables.format_csv(summary))))
    assert rows[0] == ["model"] + HEADERS + ["images"]
    assert float(rows[1][1 + METRIC_KEYS.index("cc")]) == summary[0]["cc"]
    paths = tables.write_results(str(tmp_path), summary, per_category=tables.summarize(
        records, ["m", "cb"], group_key="category"), info={"dataset": "cat2000"}, config={"seed": 0})
    with open(paths["json"]) as f:
        document = json.load(f)
    assert document["rows"][0]["kld"] is None
    assert [c["header"] for c in document["columns"]] == HEADERS
    assert document["dataset"] == "cat2000" and len(document["per_category"]) == 4
    with open(paths["markdown"]) as f:
        assert "### Per category" in f.read()
    with open(paths["config"]) as f:
        assert json.load(f) == {"seed": 0}
    assert set(paths) == {"markdown", "csv", "json", "category_csv", "config"}


def test_results_md_lists_the_samples_skip_bad_left_out(tmp_path):
    summary = tables.summarize([r for r in _records() if r["row"] == "m"], ["m"])
    paths = tables.write_results(str(tmp_path / "none"), summary, info={"skipped": {}})
    with open(paths["markdown"]) as f:
        assert "left out" not in f.read()
    skipped = {f"data/img{i:03d}.jpg": "unreadable image" for i in range(tables.MAX_SKIPPED_LISTED + 2)}
    paths = tables.write_results(str(tmp_path / "some"), summary, info={"skipped": skipped})
    with open(paths["markdown"]) as f:
        text = f.read()
    assert f"{len(skipped)} bad sample(s) were left out (`--skip_bad`)" in text
    assert "- `data/img000.jpg`: unreadable image" in text and "and 2 more" in text
    assert "data/img051.jpg" not in text  # only the first MAX_SKIPPED_LISTED are listed
