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
