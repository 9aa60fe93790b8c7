import json

import numpy as np
import pytest

from keras_emlnet import atomic_files


def test_json_round_trip_with_numpy_values(tmp_path):
    path = tmp_path / "sub" / "config.json"
    atomic_files.write_json_atomic(path, {"lr": np.float32(0.5), "size": (480, 640), "w": np.arange(3)})
    assert json.loads(path.read_text()) == {"lr": 0.5, "size": [480, 640], "w": [0, 1, 2]}
    assert [p.name for p in path.parent.iterdir()] == ["config.json"]


def test_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "table.csv"
    atomic_files.write_text_atomic(path, "old")
    with pytest.raises(RuntimeError):
        with atomic_files.atomic_path(path) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("killed")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_temporary_name_keeps_the_full_extension(tmp_path):
    with atomic_files.atomic_path(tmp_path / "enc.weights.h5") as tmp:
        assert tmp.endswith(".weights.h5")
        open(tmp, "wb").close()
    assert (tmp_path / "enc.weights.h5").exists()


def test_unserialisable_value_names_its_type(tmp_path):
    with pytest.raises(TypeError, match="object"):
        atomic_files.write_json_atomic(tmp_path / "x.json", {"bad": object()})


def test_written_files_get_the_umask_mode_not_mkstemps_0600(tmp_path):
    atomic_files.write_text_atomic(tmp_path / "shared.txt", "x")
    assert (tmp_path / "shared.txt").stat().st_mode & 0o777 == 0o666 & ~atomic_files.UMASK


def _dead_pid():
    import subprocess

    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_temporary_names_say_which_process_wrote_them(tmp_path):
    import os

    with atomic_files.atomic_path(tmp_path / "map.npy") as tmp:
        name = os.path.basename(tmp)
        assert name.startswith(atomic_files.temp_prefix()) and f"-{os.getpid()}-" in name
        assert not atomic_files.is_stale_temp(tmp)  # this process is alive


def test_only_stale_temporaries_of_our_naming_are_removed(tmp_path):
    import os
    import time

    own = atomic_files.temp_prefix()
    dead = own.replace(f"-{os.getpid()}-", f"-{_dead_pid()}-")
    other_host = ".tmp-0123abcd-1-"
    entries = {
        f"{dead}a.npy": True,  # this host, process gone
        f"{own}b.npy": False,  # this process: still writing
        f"{other_host}c.npy": False,  # another host's, fresh: may still be writing
        f"{other_host}d.npy": True,  # another host's, two days old
        ".tmp-legacy.csv": False,  # old naming, fresh
        "results.csv": False,  # not ours
        "x.tmp-1.png": False,
    }
    for name in entries:
        (tmp_path / name).write_bytes(b"")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(tmp_path / f"{other_host}d.npy", (two_days_ago, two_days_ago))
    export_dir = tmp_path / atomic_files.temp_prefix("3").replace(f"-{os.getpid()}-", f"-{_dead_pid()}-")
    (export_dir / "variables").mkdir(parents=True)  # an export killed mid-write: a folder
    nested = tmp_path / "sub"
    nested.mkdir()
    (nested / f"{dead}e.png").write_bytes(b"")
    removed = atomic_files.remove_stale_temp_files(tmp_path)
    expected = sorted([str(tmp_path / n) for n, stale in entries.items() if stale] + [str(export_dir)])
    assert sorted(removed) == expected
    assert sorted(os.listdir(tmp_path)) == sorted([n for n, stale in entries.items() if not stale] + ["sub"])
    assert (nested / f"{dead}e.png").exists()  # not recursive unless asked
    assert atomic_files.remove_stale_temp_files(tmp_path, recursive=True) == [str(nested / f"{dead}e.png")]
    assert atomic_files.remove_stale_temp_files(tmp_path / "missing") == []


def test_a_write_killed_with_sigkill_leaves_a_temporary_that_the_next_start_removes(tmp_path):
    import os
    import subprocess
    import sys

    from tests.paths import REPO_ROOT

    code = ("import sys, time\nfrom keras_emlnet import atomic_files\n"
            "with atomic_files.atomic_path(sys.argv[1]) as tmp:\n"
            "    open(tmp, 'wb').close(); print(tmp, flush=True); time.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "table.csv")], cwd=REPO_ROOT,
                             stdout=subprocess.PIPE, text=True)
    left = child.stdout.readline().strip()
    child.kill()
    child.wait(30)
    assert os.path.getsize(left) == 0 and not (tmp_path / "table.csv").exists()
    assert atomic_files.remove_stale_temp_files(tmp_path) == [left]
    assert os.listdir(tmp_path) == []
