"""Atomic file output: a reader never sees a half-written file.

Every output of a run (configs, tables, maps, models) is written to a temporary
file in the destination folder and renamed into place, so a killed run leaves
either the old file or the new one, never a truncated one.

A kill during the write leaves the temporary file (``.tmp-<host>-<pid>-...``,
named by `temp_prefix`); `remove_stale_temp_files`, called by every stage on
the folders it writes when it starts, removes those of processes of this host
that are no longer running, and any ``.tmp-*`` entry older than a day.
"""

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time

TEMP_PREFIX = ".tmp-"
# A temporary entry of any naming is stale after this long (other hosts' too).
STALE_AFTER_S = 24 * 3600
# .tmp-[<label>-]<host hash>-<pid>-<random>: who wrote it (label: the export's version).
_OWNED = re.compile(r"^\.tmp-(?:\d+-)?([0-9a-f]{8})-(\d+)-")


def _host_tag():
    return hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


def temp_prefix(label=None):
    """The prefix of this process's temporary names: ``.tmp-[label-]<host hash>-<pid>-``.

    `label` must be digits (an export version) so that `remove_stale_temp_files`
    reads the owner back.
    """
    owner = f"{_host_tag()}-{os.getpid()}-"
    return TEMP_PREFIX + (f"{label}-" if label is not None else "") + owner


def _pid_running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def is_stale_temp(path, *, now=None):
    """True for a temporary entry of our naming left by a dead process (or older than STALE_AFTER_S)."""
    name = os.path.basename(path)
    if not name.startswith(TEMP_PREFIX):
        return False
    match = _OWNED.match(name)
    if match and match[1] == _host_tag() and int(match[2]) != os.getpid() and not _pid_running(int(match[2])):
        return True
    try:
        age = (time.time() if now is None else now) - os.lstat(path).st_mtime
    except OSError:
        return False
    return age > STALE_AFTER_S


def remove_stale_temp_files(directory, *, recursive=False):
    """Removes stale temporary files (and the export's temporary folders) in `directory`.

    Only entries named ``.tmp-*`` are considered (`is_stale_temp`); links
    are removed, never followed. A missing `directory` is fine.

    Returns:
        The removed paths.
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        return []
    removed = []
    for folder, subfolders, files in os.walk(directory):
        for name in sorted(subfolders + files):
            path = os.path.join(folder, name)
            if not is_stale_temp(path):
                continue
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.remove(path)
            except FileNotFoundError:  # another process cleaned it first
                continue
            removed.append(path)
        subfolders[:] = [d for d in subfolders if recursive and os.path.isdir(os.path.join(folder, d))]
    return removed


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
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(), suffix=suffix, dir=directory)
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
