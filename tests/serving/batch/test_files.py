"""serving.batch.files: discovery, unique safe names, sharding, and outputs that never leave --out."""

import os

import pytest

from serving.batch import files as batch_files
from serving.batch.files import ImageJob, Rejected, UnsafeNameError


def _touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"x")


@pytest.fixture
def collection(tmp_path):
    root = tmp_path / "imgs"
    for name in ["b.jpg", "a.JPG", "sub/c.png", "sub/deeper/d.jpeg", "notes.txt", "dup.jpg", "dup.png"]:
        _touch(str(root / name))
    return root


def test_folder_discovery_is_recursive_sorted_and_filtered(collection):
    root, paths = batch_files.discover_images(str(collection))
    relative = [os.path.relpath(p, root) for p in paths]
    assert relative == ["a.JPG", "b.jpg", "dup.jpg", "dup.png", "sub/c.png", "sub/deeper/d.jpeg"]


def test_glob_discovery_names_relative_to_the_static_prefix(collection):
    root, paths = batch_files.discover_images(str(collection / "sub" / "**" / "*.*"))
    assert os.path.normpath(root) == os.path.normpath(str(collection / "sub"))
    entries = batch_files.plan_entries(root, paths)
    assert [e.name for e in entries] == ["c", "deeper/d"]


def test_no_match_raises_naming_the_argument(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        batch_files.discover_images(str(tmp_path / "nothing-here" / "*.jpg"))


def test_output_folder_inside_the_inputs_is_excluded(collection):
    _touch(str(collection / "maps" / "b.png"))
    root, paths = batch_files.discover_images(str(collection), exclude_dir=str(collection / "maps"))
    assert not any("maps" in p for p in paths)


def test_names_drop_the_extension_unless_two_inputs_collide(collection):
    root, paths = batch_files.discover_images(str(collection))
    names = [e.name for e in batch_files.plan_entries(root, paths)]
    assert names == ["a", "b", "dup.jpg", "dup.png", "sub/c", "sub/deeper/d"]


def test_paths_climbing_out_of_the_root_are_rejected(tmp_path, collection):
    outside = tmp_path / "secret" / "x.jpg"
    _touch(str(outside))
    pattern = str(collection / "*" / ".." / ".." / "secret" / "*.jpg")
    root, paths = batch_files.discover_images(pattern)
    entries = batch_files.plan_entries(root, paths)
    assert entries and all(isinstance(e, Rejected) for e in entries)
    assert "'..'" in entries[0].reason


@pytest.mark.parametrize("name", ["../x", "a/../../x", "/etc/x", "", "a//b", "a/./b", "a\\..\\b", "a\x00b"])
def test_sanitize_rejects_unsafe_names(name):
    with pytest.raises(UnsafeNameError):
        batch_files.sanitize_relative_name(name)


def test_output_path_stays_inside_out(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    assert batch_files.output_path(str(out), "a/b", ".png") == os.path.join(str(out), "a", "b.png")
    with pytest.raises(UnsafeNameError):
        batch_files.output_path(str(out), "../escaped", ".png")
    # a symlinked folder inside --out that points elsewhere is caught on the resolved path
    os.symlink(str(tmp_path), str(out / "link"))
    with pytest.raises(UnsafeNameError, match="outside"):
        batch_files.output_path(str(out), "link/escaped", ".png")


@pytest.mark.parametrize("num_shards", [1, 2, 3, 7, 20])
def test_shards_cover_every_item_exactly_once(num_shards):
    items = [ImageJob(f"src{i}", f"n{i}") for i in range(17)]
    shards = [batch_files.shard_jobs(items, k, num_shards) for k in range(num_shards)]
    flat = [item for shard in shards for item in shard]
    assert sorted(flat, key=lambda j: j.source) == sorted(items, key=lambda j: j.source)
    assert len(flat) == len(set(flat)) == len(items)
    sizes = [len(shard) for shard in shards]
    assert max(sizes) - min(sizes) <= 1
    assert shards == [batch_files.shard_jobs(items, k, num_shards) for k in range(num_shards)]


def test_bad_shard_arguments_raise():
    with pytest.raises(ValueError, match="shard_index"):
        batch_files.shard_jobs([], 2, 2)
    with pytest.raises(ValueError, match="num_shards"):
        batch_files.shard_jobs([], 0, 0)
