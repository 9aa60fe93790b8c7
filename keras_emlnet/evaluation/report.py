"""The evaluation report: one self-contained HTML page (report.html) beside results.md.

    write_report(out_dir, predictor, config, results)   # what `train.evaluate --report` calls

The page holds
- the metric table: every row scored (the model, the center bias, the folder
  baseline), per CAT2000 category too, beside the paper's own numbers
  (`keras_emlnet.evaluation.paper_results`, SALICON val);
- a gallery: for the best and the worst images by the model's NSS (per
  category for CAT2000), the photo with the ground-truth density, the model's
  map and the baseline's map (the folder baseline, else the center bias) laid
  over it side by side (`keras_emlnet.inference.visualize.overlay`: viridis,
  opacity rising with saliency).
Images are JPEG `data:` URIs, so the file can be mailed or archived alone. The
gallery's maps are predicted again for the few images shown (the evaluation
loop keeps scores, not maps), exactly as the loop does: the dataset's geometry
back to the original size, exp() of log-density maps.
"""

import base64
import html
import io
import math
import os

import numpy as np

from keras_emlnet import atomic_files
from keras_emlnet.evaluation import paper_results
from keras_emlnet.evaluation.baselines import FolderMaps, center_bias_map
from keras_emlnet.evaluation.columns import LOWER_IS_BETTER, METRIC_COLUMNS

REPORT_FILE = "report.html"
GALLERY_SIZE = 4  # best and worst images each (per category: 1 each)
GALLERY_METRIC = "nss"
THUMBNAIL_WIDTH = 320
JPEG_QUALITY = 85
DECIMALS = 3  # the paper's precision


def select_gallery(per_image, row, *, metric=GALLERY_METRIC, count=GALLERY_SIZE, by_category=False):
    """The images to show: [(section title, [(label, per-image record)])].

    The best `count` and then the worst `count` images of `row` by `metric`
    (higher is better unless the metric is in LOWER_IS_BETTER; images whose
    score is NaN are left out); an image is shown once even when the split
    is small. With `by_category`, one section per category holding its best
    and worst image.
    """
    records = [r for r in per_image if r["row"] == row and not math.isnan(r[metric])]
    sign = 1.0 if metric in LOWER_IS_BETTER else -1.0
    name = _metric_header(metric)
    if by_category:
        sections = []
        for category in sorted({r["category"] for r in records}, key=str):
            chosen = _best_and_worst([r for r in records if r["category"] == category], metric, sign, 1)
            sections.append((f"{category}: best and worst by {name}",
                             [(f"{label} {name}", record) for label, record in chosen]))
        return sections
    chosen = _best_and_worst(records, metric, sign, count)
    best = [(f"best {name}", r) for label, r in chosen if label == "best"]
    worst = [(f"worst {name}", r) for label, r in chosen if label == "worst"]
    return [(f"Best {len(best)} by {name}", best), (f"Worst {len(worst)} by {name}", worst)]


def _best_and_worst(records, metric, sign, count):
    # Sorted best first; ties broken by name so the page is reproducible.
    ordered = sorted(records, key=lambda r: (sign * r[metric], str(r["category"]), r["name"]))
    best = ordered[:count]
    worst = [r for r in reversed(ordered) if r not in best][:count]
    return [("best", r) for r in best] + [("worst", r) for r in worst]


def _metric_header(key):
    return dict(METRIC_COLUMNS)[key]


def gallery_maps(predictor, config, keys):
    """{(category, name): (uint8 image, density, model map)} at the original size, for `keys`.

    The model's map as the evaluation loop scores it: the dataset's
    geometry undone, exp() of a log-density map.
    """
    from keras_emlnet.data import pipeline, records
    from keras_emlnet.inference.predictor import make_to_original
    from keras_emlnet.models import geometry

    reader = pipeline.get_reader(config.dataset)
    wanted = set(keys)
    report = records.BadDataReport()
    chosen = [r for r in reader.list_samples(config.data_dir, config.split, skip_bad=True, report=report)
              if (r.category, r.name) in wanted]
    to_original = {}
    maps = {}
    for record in chosen:
        image, density, _, _ = pipeline.load_sample(reader, record)
        geom = geometry.make_geometry(image.shape[:2], predictor.input_size, reader.MODE)
        model_map = np.asarray(predictor.predict(geom.image_to_model(image)[None].astype(np.float32)))[0]
        if geom.mode not in to_original:
            to_original[geom.mode] = make_to_original(geom.mode, predictor.output_mode)
        model_map = to_original[geom.mode](model_map, np.asarray(image.shape[:2], np.int32)).numpy()[..., 0]
        if predictor.output_mode == "log_density":
            model_map = np.exp(model_map)
        maps[(record.category, record.name)] = (image, density, model_map)
    return maps


def write_report(out_dir, predictor, config, results, *, gallery_size=GALLERY_SIZE):
    """Writes `out_dir`/report.html (atomically) for one evaluation run; returns its path.

    Args:
        out_dir: the run's output folder (where results.md is).
        predictor: the SaliencyPredictor that was evaluated.
        config: its EvalConfig.
        results: the EvalResults of `evaluate`.
        gallery_size: best and worst images shown (per category: 1 each).
    """
    model_row = results.rows[0]
    baseline_row = results.rows[2] if len(results.rows) > 2 else results.rows[1]
    by_category = results.per_category is not None
    sections = select_gallery(results.per_image, model_row, count=gallery_size, by_category=by_category)
    keys = {(r["category"], r["name"]) for _, shown in sections for _, r in shown}
    maps = gallery_maps(predictor, config, keys)
    folder = FolderMaps(config.baseline_maps) if config.baseline_maps else None
    scores = {(r["category"], r["name"], r["row"]): r for r in results.per_image}

    def panels(record):
        image, density, model_map = maps[(record["category"], record["name"])]
        if folder is not None:
            baseline_map = folder(record["name"], record["category"])
        else:
            baseline_map = center_bias_map(image.shape[:2], sigma_fraction=config.center_bias_sigma)
        thumbnail = _thumbnail(image)
        key = (record["category"], record["name"])
        return [
            ("photo", thumbnail, None),
            ("ground truth", _overlay(thumbnail, density), None),
            (model_row, _overlay(thumbnail, model_map), scores[(*key, model_row)]),
            (baseline_row, _overlay(thumbnail, baseline_map), scores[(*key, baseline_row)]),
        ]

    page = _page(config, results, sections, panels)
    path = os.path.join(out_dir, REPORT_FILE)
    atomic_files.write_text_atomic(path, page)
    return path


def _thumbnail(image):
    from PIL import Image

    height, width = image.shape[:2]
    if width <= THUMBNAIL_WIDTH:
        return np.asarray(image, dtype=np.uint8)
    size = (THUMBNAIL_WIDTH, max(1, round(height * THUMBNAIL_WIDTH / width)))
    return np.asarray(Image.fromarray(np.asarray(image, dtype=np.uint8)).resize(size, Image.BILINEAR))


def _overlay(thumbnail, saliency_map):
    from keras_emlnet.inference import visualize

    return visualize.overlay(thumbnail, saliency_map)


def _data_uri(image):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _number(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{DECIMALS}f}"


def _metric_table(entries, *, group_label=None):
    """An HTML table: one row per (label, values, css class, group)."""
    e = html.escape
    head = "".join(
        f"<th title=\"{'lower' if key in LOWER_IS_BETTER else 'higher'} is better\">{e(header)} "
        f"{'↓' if key in LOWER_IS_BETTER else '↑'}</th>"
        for key, header in METRIC_COLUMNS
    )
    group_head = f"<th>{e(group_label)}</th>" if group_label else ""
    lines = [f"<table><thead><tr>{group_head}<th>model</th>{head}<th>images</th></tr></thead><tbody>"]
    for label, values, css, group in entries:
        group_cell = f"<td>{e(str(group))}</td>" if group_label else ""
        cells = "".join(f"<td>{_number(values.get(key))}</td>" for key, _ in METRIC_COLUMNS)
        images = values.get("images")
        lines.append(f"<tr class=\"{css}\">{group_cell}<td>{e(label)}</td>{cells}"
                     f"<td>{'' if images is None else images}</td></tr>")
    lines.append("</tbody></table>")
    return "\n".join(lines)


def _page(config, results, sections, panels):
    e = html.escape
    model_row = results.rows[0]
    title = f"{model_row} on {config.dataset} {config.split}"
    images = results.summary[0]["images"]
    ours = [(entry["row"], entry, "ours" if entry["row"] == model_row else "baseline", None)
            for entry in results.summary]
    paper = [(f"paper: {label}", values, "paper", None) for label, values in paper_results.SALICON_VAL.items()]
    note = ("" if config.dataset == "salicon" else
            f"<p class=\"note\">The paper's rows are on SALICON val, not {e(config.dataset)}: "
            "evaluate on SALICON val to compare.</p>")
    body = [
        f"<h1>EML-NET evaluation: {e(title)}</h1>",
        f"<p>{images} images of {e(config.dataset)} split {e(config.split)}, scored at their original "
        f"resolution (results.md, results.json hold the same numbers at more decimals).</p>",
        "<h2>Metrics</h2>",
        _metric_table(ours + paper),
        f"<p class=\"note\">Paper rows: {e(paper_results.SALICON_VAL_SOURCE)}; its “AUC” is shown under "
        "AUC-Judd; “–”: not reported.</p>",
        note,
    ]
    if results.per_category:
        rows = [(entry["row"], entry, "ours" if entry["row"] == model_row else "baseline", entry["group"])
                for entry in results.per_category]
        body += ["<h2>Per category</h2>", _metric_table(rows, group_label="category")]
    body.append("<h2>Gallery</h2>")
    body.append("<p class=\"note\">Each map is drawn over the photo in viridis (yellow = most salient), more "
                "opaque where it is more salient, so the photo shows through where nothing is.</p>")
    for section, shown in sections:
        body.append(f"<h3>{e(section)}</h3>")
        for label, record in shown:
            name = record["name"] if record["category"] is None else f"{record['category']}/{record['name']}"
            figures = []
            for caption, picture, scores in panels(record):
                score = "" if scores is None else f" · NSS {_number(scores['nss'])} · CC {_number(scores['cc'])}"
                figures.append(
                    f"<figure><img src=\"{_data_uri(picture)}\" width=\"{picture.shape[1]}\" "
                    f"height=\"{picture.shape[0]}\" alt=\"{e(name)}: {e(caption)}\">"
                    f"<figcaption>{e(caption)}{e(score)}</figcaption></figure>"
                )
            body.append(f"<div class=\"item\"><p class=\"name\">{e(name)} ({e(label)})</p>"
                        f"<div class=\"panels\">{''.join(figures)}</div></div>")
    return _TEMPLATE.format(title=e(title), body="\n".join(body))


_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>EML-NET evaluation: {title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; background: #fff; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
tr.ours {{ font-weight: bold; background: #eef6ee; }}
tr.paper {{ color: #555; background: #f6f6f6; }}
.note {{ color: #555; font-size: 0.9em; }}
.panels {{ display: flex; flex-wrap: wrap; gap: 0.5em; }}
figure {{ margin: 0; }}
figcaption {{ font-size: 0.85em; color: #444; }}
.item {{ margin-bottom: 1.5em; }}
.name {{ margin: 0.2em 0; font-family: monospace; }}
</style>
</head>
<body>
{body}
</body>
</html>
"""
