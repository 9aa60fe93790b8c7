"""Evaluation tables: per-row means, and the same table as text, Markdown, CSV and JSON.

Column order and metric keys come from `keras_emlnet.evaluation.columns` (the MIT benchmark's
order, IG appended). NaN means "undefined for every image" and is written as "nan" in
text/Markdown/CSV and null in JSON. `keras_emlnet.evaluation.evaluate.evaluate_and_write`
scores a run and writes its tables with these.
"""

import csv
import io
import math
import os

import numpy as np

from keras_emlnet import atomic_files
from keras_emlnet.evaluation.columns import LOWER_IS_BETTER, METRIC_COLUMNS, METRIC_KEYS

DECIMALS = 4


def summarize(per_image, row_names, *, group_key=None):
    """Mean scores per row (and per group, e.g. category).

    Args:
        per_image: dicts with "row", metric keys and, if grouping, `group_key`.
        row_names: rows in table order.
        group_key: None, or a key of `per_image` to group by (sorted groups).

    Returns:
        List of {"group" (if grouping), "row", "images", "nan_counts", metrics}.
    """
    groups = [None]
    if group_key is not None:
        groups = sorted({record[group_key] for record in per_image}, key=str)
    summary = []
    for group in groups:
        for row in row_names:
            records = [
                r for r in per_image
                if r["row"] == row and (group is None or r[group_key] == group)
            ]
            if not records:
                continue
            entry = {"row": row, "images": len(records), "nan_counts": {}}
            if group is not None:
                entry = {"group": group, **entry}
            for key in METRIC_KEYS:
                values = np.array([r[key] for r in records], dtype=np.float64)
                finite = values[~np.isnan(values)]
                entry[key] = float(finite.mean()) if finite.size else float("nan")
                if finite.size < values.size:
                    entry["nan_counts"][key] = int(values.size - finite.size)
            summary.append(entry)
    return summary


def _cell(value):
    return "nan" if value is None or math.isnan(value) else f"{value:.{DECIMALS}f}"


def _header(group_label):
    return ([group_label] if group_label else []) + ["model"] + [h for _, h in METRIC_COLUMNS]


def _cells(entry, group_label):
    group = [str(entry["group"])] if group_label else []
    return group + [entry["row"]] + [_cell(entry[key]) for key in METRIC_KEYS]


def format_text(summary, *, group_label=None):
    """Aligned plain-text table (for the terminal)."""
    lines = [_header(group_label)] + [_cells(e, group_label) for e in summary]
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    text = [
        "  ".join(c.ljust(w) if i < len(lines[0]) - len(METRIC_KEYS) else c.rjust(w)
                  for i, (c, w) in enumerate(zip(line, widths)))
        for line in lines
    ]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text) + "\n"


def format_markdown(summary, *, group_label=None):
    """GitHub Markdown table; metric columns right-aligned."""
    header = _header(group_label)
    labels = len(header) - len(METRIC_KEYS)
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] * labels + ["---:"] * len(METRIC_KEYS)) + "|",
    ]
    lines += ["| " + " | ".join(_cells(e, group_label)) + " |" for e in summary]
    return "\n".join(lines) + "\n"


def format_csv(summary, *, group_label=None):
    """CSV with a header row; full precision (not rounded)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_header(group_label) + ["images"])
    for entry in summary:
        group = [entry["group"]] if group_label else []
        writer.writerow(group + [entry["row"]] + [repr(entry[k]) for k in METRIC_KEYS] + [entry["images"]])
    return buffer.getvalue()


def results_document(summary, *, per_category=None, per_image=None, info=None):
    """The JSON document of a run: columns, rows, optional per-category rows and per-image scores."""
    document = {
        "columns": [{"key": k, "header": h, "lower_is_better": k in LOWER_IS_BETTER}
                    for k, h in METRIC_COLUMNS],
        "rows": summary,
    }
    if per_category is not None:
        document["per_category"] = per_category
    if per_image is not None:
        document["per_image"] = per_image
    document.update(info or {})
    return _nan_to_none(document)


def _nan_to_none(value):
    # JSON has no NaN; null reads back unambiguously in every language.
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(v) for v in value]
    return value


# results.md lists at most this many left-out samples (results.json has them all).
MAX_SKIPPED_LISTED = 50


def skipped_note(skipped):
    """results.md's section on the bad samples `--skip_bad` left out ("" when none)."""
    if not skipped:
        return ""
    lines = [
        "",
        "### Samples left out",
        "",
        f"{len(skipped)} bad sample(s) were left out (`--skip_bad`); the means above are over the "
        "other images.",
        "",
    ]
    items = sorted(skipped.items())
    lines += [f"- `{path}`: {problem}" for path, problem in items[:MAX_SKIPPED_LISTED]]
    if len(items) > MAX_SKIPPED_LISTED:
        lines.append(f"- ... and {len(items) - MAX_SKIPPED_LISTED} more (results.json lists them all)")
    return "\n".join(lines) + "\n"


def format_postprocessing(postprocessing):
    """Markdown lines saying which post-processing produced each row ({row: description})."""
    return "".join(f"- {row}: {description}\n" for row, description in postprocessing.items())


def write_results(out_dir, summary, *, per_category=None, per_image=None, info=None, config=None,
                  postprocessing=None):
    """Writes results.md, results.csv, results.json (and the per-category files, config.json).

    `postprocessing` ({row: description}), when given, is listed under the
    Markdown table (and is in results.json through `info`). Every file is
    written atomically. Returns {kind: path}.
    """
    note = (
        "\nEMD and KLD: lower is better; the other columns: higher is better. "
        "Means over images at the original resolution.\n"
    )
    paths = {
        "markdown": os.path.join(out_dir, "results.md"),
        "csv": os.path.join(out_dir, "results.csv"),
        "json": os.path.join(out_dir, "results.json"),
    }
    markdown = format_markdown(summary)
    if postprocessing:
        markdown += "\nPost-processing of each row:\n\n" + format_postprocessing(postprocessing)
    if per_category:
        markdown += "\n### Per category\n\n" + format_markdown(per_category, group_label="category")
        paths["category_csv"] = os.path.join(out_dir, "results_per_category.csv")
        atomic_files.write_text_atomic(
            paths["category_csv"], format_csv(per_category, group_label="category")
        )
    atomic_files.write_text_atomic(paths["markdown"], markdown + note + skipped_note((info or {}).get("skipped")))
    atomic_files.write_text_atomic(paths["csv"], format_csv(summary))
    atomic_files.write_json_atomic(
        paths["json"],
        results_document(summary, per_category=per_category, per_image=per_image, info=info),
    )
    if config is not None:
        paths["config"] = os.path.join(out_dir, "config.json")
        atomic_files.write_json_atomic(paths["config"], config)
    return paths
