"""serving.beam.files: the collection Beam scores is the one serving.batch_score scores, named alike."""

import os

import pytest

pytest.importorskip("apache_beam")  # the `beam` extra (make test installs it; test_package checks)

from serving.batch import files as batch_files
from serving.beam import files as beam_files


@pytest.fixture
def tree(tmp_path):
    """Images at several depths, hidden files and folders, non-images, an output folder inside."""
    names = ["a.jpg", "a.png", "b.JPG", "c.txt", ".hidden.jpg", "sub/d.png", "sub/deeper/e.jpeg",
             ".hid/f.jpg", "sub/.g.png", "out/old.png", "x[1].png"]
    for name in names:
        path = tmp_path / "root" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    return str(tmp_path / "root")


@pytest.mark.parametrize(
    "pattern",
    ["", "*", "*.jpg", "**/*.jpg", "**", "sub/*", "sub/**/*.jp*g", "*/*.png", "a.png", "sub/d.png"],
)
def test_discovery_and_names_equal_batch_score_s(tree, pattern):
    images = os.path.join(tree, pattern) if pattern else tree
    out = os.path.join(tree, "out")
    try:
        expected_root, expected_paths = batch_files.discover_images(images, exclude_dir=out)
    except FileNotFoundError:
        with pytest.raises(FileNotFoundError):
            beam_files.discover_images(images, exclude_dir=out)
        return
    root, paths, _ = beam_files.discover_images(images, exclude_dir=out)
    assert (os.path.normpath(root), paths) == (os.path.normpath(expected_root), expected_paths)
    expected = batch_files.plan_entries(expected_root, expected_paths)
    assert beam_files.plan_entries(images, exclude_dir=out) == expected


def test_hidden_files_follow_glob_and_os_walk(tree):
    # a folder is walked whole (os.walk lists hidden files); '*' never matches a leading '.'
    _, every, _ = beam_files.discover_images(tree)
    assert os.path.join(tree, ".hid", "f.jpg") in every and os.path.join(tree, "out", "old.png") in every
    _, globbed, _ = beam_files.discover_images(os.path.join(tree, "**", "*"))
    assert not [p for p in globbed if "/." in p]
    _, named, _ = beam_files.discover_images(os.path.join(tree, ".*.jpg"))
    assert named == [os.path.join(tree, ".hidden.jpg")]


def test_remote_paths_are_named_below_their_glob_root():
    assert beam_files._split_glob("gs://bucket/photos/**/*.jpg") == ("gs://bucket/photos", ["**", "*.jpg"])
    assert beam_files._relative_parts("gs://bucket/photos/x/y.jpg", "gs://bucket/photos") == ("x", "y.jpg")
    assert beam_files._relative_parts("gs://bucket/photosx/y.jpg", "gs://bucket/photos") is None
    assert beam_files.output_path("s3://b/out/", "x/y", ".png") == "s3://b/out/x/y.png"
    with pytest.raises(batch_files.UnsafeNameError):
        beam_files.output_path("s3://b/out", "x/../../y", ".png")


def test_local_outputs_never_leave_out_and_are_atomic(tmp_path):
    out = tmp_path / "out"
    (out / "link").parent.mkdir()
    os.symlink(tmp_path, out / "link")
    with pytest.raises(batch_files.UnsafeNameError):
        beam_files.output_path(str(out), "link/escaped", ".png")
    path = beam_files.output_path(str(out), "sub/map", ".npy")
    beam_files.write_bytes(path, b"payload")
    assert beam_files.read_bytes(path) == b"payload"
    assert sorted(os.listdir(out / "sub")) == ["map.npy"]  # no temporary left behind
    assert beam_files.exists_in(beam_files.existing_files(str(out)), path)
