"""serving.batch_score under attack (issue 19): bombs, FIFOs, /dev/zero, links and loops are reported, not followed.

The attack folder is built here: a 20000 x 20000 PNG bomb (~390 KB on disk,
1.2 GB decoded), a FIFO and a link to /dev/zero named like images, a second
link to a good image, a directory symlink loop, and an EXIF-rotated JPEG. The
CLI runs in a child process, bounded in time, and its peak memory (its
ru_maxrss, read by a small parent process) must stay under a ceiling far below what decoding the bomb takes.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from serving.batch import files as batch_files
from tests.serving import helpers

BOMB_SIZE = (20000, 20000)
# Peak RSS of the whole CLI (TensorFlow, the tiny SavedModel, 3 images scored):
# measured 718 MB here; decoding the bomb alone would add 1.2 GB (RGB), its
# float32 map at the original size 1.6 GB more.
PEAK_RSS_CEILING_BYTES = 1_200_000_000


def _png(path, image):
    Image.fromarray(image).save(path)


@pytest.fixture(scope="module")
def attack_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("attack") / "images"
    (root / "sub").mkdir(parents=True)
    good = helpers.distinct_images(2, seed=5)
    _png(root / "good1.png", good[0])
    _png(root / "sub" / "good2.png", good[1])
    (root / "bomb.png").write_bytes(helpers.png_bomb(*BOMB_SIZE))
    os.mkfifo(root / "fifo.jpg")
    os.symlink("/dev/zero", root / "zero.jpg")
    os.symlink(root / "good1.png", root / "again.png")
    os.symlink(root, root / "sub" / "loop")  # sub/loop/sub/loop/... never ends when followed
    stored = helpers.distinct_images(1, seed=6, sizes=((30, 50),))[0]
    (root / "rotated.jpg").write_bytes(helpers.jpeg_with_orientation(stored, 6))
    return root


# Runs the CLI as its child and prints the child's peak RSS (kB). The CLI must be
# forked from this small process, not from pytest: a fork's child starts with
# its parent's resident pages, and ru_maxrss keeps that peak across exec, so a
# CLI forked from a multi-GB pytest process would report pytest's size.
_PEAK_RSS_WRAPPER = (
    "import resource, subprocess, sys\n"
    "code = subprocess.call(sys.argv[1:])\n"
    "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, flush=True)\n"
    "sys.exit(code)\n"
)


def test_cli_skips_bombs_and_special_files_with_bounded_memory(attack_folder, serving_export, tmp_path):
    out = tmp_path / "maps"
    command = [sys.executable, "-m", "serving.batch_score", "--model", os.path.join(serving_export[1], "1"),
               "--images", str(attack_folder), "--out", str(out), "--overlays", "--format", "both",
               "--progress", "0"]
    log_path = tmp_path / "log.txt"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-c", _PEAK_RSS_WRAPPER, *command], cwd=helpers.REPO_ROOT,
                                   env=helpers.python_env(), stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    # No hang on the FIFO, no endless read of /dev/zero: bounded in time.
    try:
        process.wait(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == 0, log_path.read_text(errors="replace")[-3000:]
    summary = json.loads((out / "batch_score_summary.json").read_text())
    failed = {os.path.basename(f["source"]): f["error"] for f in summary["failed"]}
    assert summary["scored"] == 3 and not summary["interrupted"], summary
    assert set(failed) == {"bomb.png", "fifo.jpg", "zero.jpg", "again.png"}, failed
    assert "over the limit of 50,000,000 pixels" in failed["bomb.png"]
    assert "FIFO" in failed["fifo.jpg"] and "character device" in failed["zero.jpg"]
    assert "same file" in failed["again.png"]
    # The EXIF-rotated photo is scored upright: its map has the turned size, and so does its overlay.
    assert np.load(out / "rotated.npy").shape == (50, 30)
    assert Image.open(out / "rotated_overlay.jpg").size == (30, 50)
    assert sorted(os.listdir(out / "sub")) == ["good2.npy", "good2.png", "good2_overlay.jpg"]
    peak_kb = int(re.findall(r"PEAK_RSS_KB (\d+)", log_path.read_text(errors="replace"))[-1])
    print(f"batch_score peak RSS: {peak_kb / 1024:.0f} MB")
    assert peak_kb * 1024 < PEAK_RSS_CEILING_BYTES, peak_kb


def test_glob_discovery_ends_on_directory_loops_and_lists_each_file_once(tmp_path):
    root = tmp_path / "imgs"
    (root / "a" / "b").mkdir(parents=True)
    for name in ("x.jpg", "a/y.jpg", "a/b/z.jpg"):
        (root / name).write_bytes(b"x")
    os.symlink(root, root / "a" / "b" / "up")  # loop 1
    os.symlink(root / "a", root / "a" / "b" / "again")  # loop 2 (glob.glob never ended with two)
    start = time.monotonic()
    found_root, paths = batch_files.discover_images(str(root / "**" / "*.jpg"))
    assert time.monotonic() - start < 5
    relative = sorted(os.path.relpath(p, found_root) for p in paths)
    assert relative == ["a/b/z.jpg", "a/y.jpg", "x.jpg"]


def test_special_files_are_rejected_without_being_opened(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    os.symlink("/dev/zero", tmp_path / "zero.png")
    os.symlink(tmp_path / "missing.png", tmp_path / "dangling.png")
    (tmp_path / "ok.png").write_bytes(b"x")
    os.link(tmp_path / "ok.png", tmp_path / "hard.png")
    root, paths = batch_files.discover_images(str(tmp_path))
    entries = {os.path.basename(e.source): e for e in batch_files.plan_entries(root, paths)}
    assert isinstance(entries["hard.png"], batch_files.ImageJob)  # first in sorted order
    rejected = {name: e.reason for name, e in entries.items() if isinstance(e, batch_files.Rejected)}
    assert set(rejected) == {"pipe.png", "zero.png", "dangling.png", "ok.png"}
    assert "FIFO" in rejected["pipe.png"] and "character device" in rejected["zero.png"]
    assert "cannot read" in rejected["dangling.png"] and "same file as" in rejected["ok.png"]


def test_overlay_of_an_image_over_the_limit_is_reported_not_raised(tmp_path):
    from serving.batch.scoring import ScoreConfig, _write_outputs

    source = tmp_path / "big.png"
    _png(source, np.zeros((40, 40, 3), np.uint8))
    config = ScoreConfig(model="m", images=str(tmp_path), out=str(tmp_path / "out"), overlays=True,
                         max_image_pixels=1000)
    job = batch_files.ImageJob(str(source), "big")
    failure = _write_outputs(job, np.zeros((40, 40), np.float32), config, "minmax")
    assert failure is not None and "1,600 pixels" in failure["error"] and "1,000" in failure["error"]
    # A file PIL cannot read is reported too (it used to escape as UnidentifiedImageError or worse).
    (tmp_path / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    failure = _write_outputs(batch_files.ImageJob(str(tmp_path / "junk.png"), "junk"),
                             np.zeros((4, 4), np.float32), config, "minmax")
    assert failure is not None and "junk.png" in failure["source"]
