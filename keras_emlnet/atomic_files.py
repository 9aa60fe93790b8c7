"""Atomic file output: a reader never sees a half-written file.

Every output of a run (configs, tables, maps, models) is written to a temporary
file in the destination folder and renamed into place, so a killed run leaves
either the old file or the new one, never a truncated one.
"""

import contextlib
import json
import os
import tempfile


@contextlib.contextmanager
def atomic_path(path, *, suffix=None):
    """Yields a temporary path beside `path`; renames it to `path` on success.

    The temporary name keeps `path`'s extension (or `suffix`), because some
    writers (Keras `model.save`, PIL) choose the format from it. On an
    exception the temporary file is removed and `path` is left untouched.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    if suffix is None:
        suffix = _full_extension(os.path.basename(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
    os.close(fd)
    try:
        yield tmp
        if os.path.isfile(tmp):
            # mkstemp creates 0600; give the result the mode a plain open() would.
            os.chmod(tmp, 0o666 & ~UMASK)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def _read_umask():
    # os.umask can only be read by setting it; do that once, at import, rather
    # than racing other threads that create files while it is briefly 0.
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _read_umask()


def _full_extension(basename):
    # ".weights.h5" and ".tar.gz" must survive whole: Keras checks the full suffix.
    parts = basename.split(".")
    return "." + ".".join(parts[1:]) if len(parts) > 1 and parts[0] else ""


def write_bytes_atomic(path, data):
    """Writes `data` (bytes) to `path` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def write_text_atomic(path, text):
    """Writes `text` (UTF-8) to `path` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path, obj):
    """Writes `obj` as indented, key-sorted JSON to `path` atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(value):
    # numpy scalars and arrays, tuples-as-lists, paths: what run configs hold.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON: {value!r}")
