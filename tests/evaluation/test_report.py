"""keras_emlnet.evaluation.report: gallery choice, the page's table and pictures, and a real browser rendering it."""

import base64
import io
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from keras_emlnet.evaluation import paper_results
from keras_emlnet.evaluation.report import REPORT_FILE, select_gallery


def _record(name, nss, row="model", category=None):
    return {"name": name, "category": category, "row": row, "nss": nss, "kld": nss}


def test_gallery_is_best_then_worst_without_repeats_or_nan():
    per_image = [_record(n, v) for n, v in [("a", 1.0), ("b", 3.0), ("c", float("nan")), ("d", 2.0), ("e", 0.5)]]
    per_image += [_record("a", 9.0, row="center bias")]  # other rows never count
    sections = select_gallery(per_image, "model", count=2)
    assert [title for title, _ in sections] == ["Best 2 by NSS", "Worst 2 by NSS"]
    assert [r["name"] for _, r in sections[0][1]] == ["b", "d"]
    assert [r["name"] for _, r in sections[1][1]] == ["e", "a"]
    # A small split: each image once, the best first.
    small = select_gallery(per_image, "model", count=3)
    names = [r["name"] for _, shown in small for _, r in shown]
    assert names == ["b", "d", "a", "e"]
    # A lower-is-better metric turns the order round.
    assert [r["name"] for _, r in select_gallery(per_image, "model", metric="kld", count=1)[0][1]] == ["e"]


def test_gallery_per_category_holds_its_best_and_worst():
    per_image = [_record(n, v, category=c) for n, v, c in
                 [("a", 1.0, "Art"), ("b", 2.0, "Art"), ("c", 0.1, "Art"), ("d", 5.0, "Sketch")]]
    sections = select_gallery(per_image, "model", by_category=True)
    assert [title for title, _ in sections] == ["Art: best and worst by NSS", "Sketch: best and worst by NSS"]
    assert [(label, r["name"]) for label, r in sections[0][1]] == [("best NSS", "b"), ("worst NSS", "c")]
    assert [r["name"] for _, r in sections[1][1]] == ["d"]  # one image: shown once


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A report over generated SALICON val (4 images) for a tiny model, the center bias as the baseline."""
    from keras_emlnet.data import generate_dataset
    from keras_emlnet.evaluation.evaluate import EvalConfig, evaluate
    from keras_emlnet.evaluation.report import write_report
    from keras_emlnet.inference.predictor import predictor_from_keras_model
    from keras_emlnet.testing import tiny_emlnet

    root = tmp_path_factory.mktemp("report")
    data_dir = str(root / "salicon")
    generate_dataset("salicon", data_dir, 16, seed=1, image_size=(90, 120), num_observers=3)
    model = tiny_emlnet((24, 32), output_mode="probability", seed=3)
    config = EvalConfig("salicon", data_dir, split="val", model_name="tiny")
    predictor = predictor_from_keras_model(model)
    results = evaluate(predictor, config)
    out = root / "eval"
    out.mkdir()
    path = write_report(str(out), predictor, config, results, gallery_size=2)
    with open(path, encoding="utf-8") as f:
        page = f.read()
    return {"path": path, "page": page, "results": results, "model": model, "data_dir": data_dir, "out": str(out)}


def _pictures(page):
    from PIL import Image

    uris = re.findall(r'<img src="data:image/jpeg;base64,([^"]+)"', page)
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(uri))).convert("RGB")) for uri in uris]


def test_report_table_sets_our_rows_beside_the_papers(report):
    page, results = report["page"], report["results"]
    assert os.listdir(report["out"]) == [REPORT_FILE]  # written atomically: no temporary file left
    rows = re.findall(r"<tr class=\"(\w+)\"><td>([^<]+)</td>((?:<td>[^<]*</td>)+)</tr>", page)
    assert [(css, label) for css, label, _ in rows] == [
        ("ours", "tiny"), ("baseline", "center bias"),
        ("paper", "paper: DenseNet"), ("paper", "paper: NasNet"), ("paper", "paper: NasNet+DenseNet")]
    cells = {label: re.findall(r"<td>([^<]*)</td>", rest) for _, label, rest in rows}
    # columns: AUC-Judd SIM EMD AUC-Borji sAUC CC NSS KLD IG images
    ours = results.summary[0]
    assert cells["tiny"][6] == f"{ours['nss']:.3f}" and cells["tiny"][5] == f"{ours['cc']:.3f}"
    assert cells["tiny"][9] == str(ours["images"]) == "4"
    fused = paper_results.SALICON_VAL["NasNet+DenseNet"]
    assert cells["paper: NasNet+DenseNet"] == [
        "0.802", "0.785", "–", "–", "0.778", "0.890", "2.024", "0.204", "–", ""]
    assert fused["nss"] == 2.024 and fused["kld"] == 0.204


def test_gallery_shows_ground_truth_model_and_baseline_over_the_photo(report):
    from keras_emlnet.data import records
    from keras_emlnet.evaluation.baselines import center_bias_map
    from keras_emlnet.inference import visualize

    page, results = report["page"], report["results"]
    pictures = _pictures(page)
    assert len(pictures) == 4 * 4  # best 2 + worst 2, four panels each
    assert all(p.shape == (90, 120, 3) for p in pictures)
    names = re.findall(r'<p class="name">([^ ]+) \((best|worst) NSS\)</p>', page)
    scored = sorted((r for r in results.per_image if r["row"] == "tiny"), key=lambda r: -r["nss"])
    assert [n for n, _ in names] == [r["name"] for r in scored[:2]] + [r["name"] for r in scored[::-1][:2]]
    # The panels of the best image against maps computed here: its photo, the model's
    # predict_map and the center bias, each overlaid by visualize.overlay (JPEG-close).
    name = names[0][0]
    photo = records.load_rgb(os.path.join(report["data_dir"], "images", "val", f"{name}.jpg"))
    model_map = report["model"].predict_map(photo.astype(np.float32))
    want = [photo, None, visualize.overlay(photo, np.asarray(model_map)),
            visualize.overlay(photo, center_bias_map(photo.shape[:2]))]
    for got, expected in zip(pictures[:4], want):
        if expected is not None:
            assert np.abs(got.astype(float) - expected).mean() < 3.0
    # Ground truth and model panels are different pictures.
    assert np.abs(pictures[1].astype(float) - pictures[2]).mean() > 3.0


_PROBE = """<script>
window.addEventListener("load", function () {
  var images = Array.prototype.map.call(document.images, function (img) {
    return {id: img.id, complete: img.complete, width: img.naturalWidth, height: img.naturalHeight};
  });
  var pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify({images: images, text: document.body.innerText.length});
  document.body.appendChild(pre);
});
</script>
<img id="control" src="data:image/jpeg;base64,AAAA" alt="a broken image: the probe must see it fail">
"""


def _chromium():
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail("chromium is not installed: .ci/run installs Debian's chromium package")
        pytest.skip("chromium is not installed (apt-get install chromium); CI installs it and runs this test")
    return binary


def test_report_renders_in_headless_chromium(report, tmp_path):
    from PIL import Image

    chromium = _chromium()
    flags = ["--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars", "--virtual-time-budget=10000"]
    # The page as the user opens it, plus a probe reporting each <img>'s decoded size on load,
    # plus one broken control image (so a probe that sees nothing cannot pass).
    probed = tmp_path / "probed.html"
    probed.write_text(report["page"].replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    dom = subprocess.run([chromium, *flags, "--dump-dom", probed.as_uri()],
                         capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert found, dom.stderr[-2000:]
    probe = json.loads(found.group(1).replace("&quot;", '"'))
    images = [image for image in probe["images"] if image["id"] != "control"]
    control = [image for image in probe["images"] if image["id"] == "control"]
    assert control and control[0]["width"] == 0  # a broken image is seen as broken
    assert len(images) == 16
    assert all(image["complete"] and (image["width"], image["height"]) == (120, 90) for image in images)
    assert probe["text"] > 500  # the table and captions are there
    # The page itself, not blank: a screenshot with the table's text and the gallery's colours.
    shot = tmp_path / "shot.png"
    run = subprocess.run([chromium, *flags, "--window-size=1200,1600", f"--screenshot={shot}",
                          f"file://{report['path']}"], capture_output=True, text=True, timeout=120)
    assert shot.exists(), run.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    not_white = (pixels < 240).any(axis=-1)
    assert not_white.mean() > 0.02
    colours = len(np.unique(pixels.reshape(-1, 3) // 8, axis=0))
    assert colours > 200, colours  # photos and overlays, not just black text
