"""Beam's filesystems for batch scoring: finding the images, reading them, writing outputs.

Every path goes through `apache_beam.io.filesystems.FileSystems`, so the same
code reads and writes local paths, gs:// (apache-beam[gcp]) and s3://
(apache-beam[aws]). Output names come from `serving.batch.files` (the rules
`serving.batch_score` uses), and a glob means what it means there (Python's
`glob`: `*` within one folder, `**` zero or more folders, hidden names only
when the pattern names them), not Beam's own `match` syntax, where `**` must
cross at least one '/'.
"""

import fnmatch
import os
import re

from serving.batch import files as batch_files

_GLOB_MAGIC = re.compile(r"[*?[]")


def is_local(path):
    """True for a path of the local filesystem (no `scheme://`)."""
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.get_scheme(path) in (None, "file")


def discover_images(images, *, exclude_dir=None):
    """`serving.batch.files.discover_images` over Beam's filesystems.

    Args:
        images: a folder (searched recursively) or a glob pattern, local or
            `scheme://...`.
        exclude_dir: a folder whose files are never inputs (the output folder).

    Returns:
        (root, paths, relative_parts): the folder names are relative to, the
        image paths sorted by relative path, and each path's components below root.

    Raises:
        FileNotFoundError: if nothing matches.
    """
    from apache_beam.io.filesystems import FileSystems

    images = os.fspath(images)
    local = is_local(images)
    if _GLOB_MAGIC.search(images):
        root, pattern = _split_glob(images)
    elif local and os.path.isdir(images) or not local and not FileSystems.exists(images):
        root, pattern = images.rstrip("/") or "/", None  # a folder: everything below it
    else:
        root, pattern = (os.path.dirname(images) or "."), [os.path.basename(images)]
    listing = FileSystems.match([_join(root, "**")])[0].metadata_list
    if exclude_dir is not None:
        excluded = _canonical(exclude_dir)
    found = []
    for metadata in listing:
        path = metadata.path
        parts = _relative_parts(path, root)
        if parts is None or not batch_files._is_image_name(path):
            continue
        if pattern is not None and not _match_parts(pattern, parts):
            continue
        if exclude_dir is not None and _is_within(_canonical(path), excluded):
            continue
        found.append((parts, path))
    if not found:
        raise FileNotFoundError(
            f"no images ({', '.join(batch_files.IMAGE_EXTENSIONS)}) found at {images!r}"
        )
    found.sort()
    return root, [path for _, path in found], [parts for parts, _ in found]


def plan_entries(images, *, exclude_dir=None):
    """ImageJob / Rejected per input, named as `serving.batch_score` names them."""
    _, paths, relative_parts = discover_images(images, exclude_dir=exclude_dir)
    return batch_files.plan_relative_entries(paths, relative_parts)


def output_path(out, name, suffix):
    """Where one output goes; raises batch_files.UnsafeNameError if it would leave `out`.

    Local: `serving.batch.files.output_path` (resolved-path check, symlinks
    included). Object stores have no symlinks or '..': the checked name is joined.
    """
    if is_local(out):
        return batch_files.output_path(out, name, suffix)
    parts = batch_files.sanitize_relative_name(name).split("/")
    return _join(out, *parts[:-1], parts[-1] + suffix)


def existing_files(out):
    """The set of files below `out` (one listing, not one request per output)."""
    from apache_beam.io.filesystems import FileSystems

    if is_local(out) and not os.path.isdir(out):
        return set()
    return {_canonical(m.path) for m in FileSystems.match([_join(out, "**")])[0].metadata_list}


def exists_in(listing, path):
    return _canonical(path) in listing


def read_bytes(path):
    """The whole file, through Beam's filesystems, never decompressed (a `.gz` image is bytes)."""
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return f.read()


def write_bytes(path, data):
    """Writes one output whole or not at all.

    Local files through `keras_emlnet.atomic_files` (temp name + rename); an
    object store's object appears only when its upload completes.
    """
    if is_local(path):
        from keras_emlnet import atomic_files

        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        atomic_files.write_bytes_atomic(path, data)
        return
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(data)


def write_json(path, obj):
    import json

    from keras_emlnet import atomic_files

    text = json.dumps(obj, indent=2, sort_keys=True, default=atomic_files._json_default) + "\n"
    write_bytes(path, text.encode("utf-8"))


def localize_model(path, cache_dir):
    """A local path of the model: `path` itself, or a copy under `cache_dir` of a remote one.

    A `.keras` file is one object; a SavedModel folder is every object below it.
    """
    from apache_beam.io.filesystems import FileSystems

    if is_local(path):
        return path
    path = path.rstrip("/")
    name = path.rsplit("/", 1)[-1]
    target = os.path.join(cache_dir, name)
    if path.endswith(".keras"):
        sources = [(path, target)]
    else:
        sources = [
            (m.path, os.path.join(target, *_relative_parts(m.path, path)))
            for m in FileSystems.match([_join(path, "**")])[0].metadata_list
        ]
        if not sources:
            raise FileNotFoundError(f"--model {path!r}: no files found")
    for source, local in sources:
        write_bytes(local, read_bytes(source))
    return target


def _join(base, *parts):
    if not parts:
        return base
    if is_local(base):
        return os.path.join(base, *parts)
    return "/".join([base.rstrip("/"), *parts])  # object stores: '/'-separated keys


def _canonical(path):
    return os.path.realpath(path) if is_local(path) else path.rstrip("/")


def _is_within(path, folder):
    if is_local(path):
        return os.path.commonpath([path, folder]) == folder
    return path == folder or path.startswith(folder + "/")


def _split_glob(pattern):
    """(root, pattern components below it): the root as serving.batch.files takes it."""
    sep = os.sep if is_local(pattern) else "/"
    scheme, rest = ("", pattern) if is_local(pattern) else pattern.split("://", 1)
    parts = rest.split(sep)
    static = []
    for part in parts[:-1]:
        if _GLOB_MAGIC.search(part):
            break
        static.append(part)
    root = sep.join(static)
    if rest.startswith(sep) and not root:
        root = sep
    root = root or "."
    if scheme:
        root = f"{scheme}://{root}"
    return root, [p for p in parts[len(static):] if p]


def _relative_parts(path, root):
    """Components of `path` below `root`, or None if it is not below it."""
    if is_local(path):
        relative = os.path.relpath(os.path.normpath(path), os.path.normpath(root))
        if relative == os.pardir or relative.startswith(os.pardir + os.sep):
            return None
        return tuple(relative.split(os.sep))
    prefix = root.rstrip("/") + "/"
    return tuple(path[len(prefix):].split("/")) if path.startswith(prefix) else None


def _match_parts(pattern, parts):
    """Python glob semantics on path components (`**` = zero or more folders)."""
    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        if _match_parts(rest, parts):
            return True
        return bool(parts) and not _hidden(parts[0], head) and _match_parts(pattern, parts[1:])
    return (
        bool(parts)
        and not _hidden(parts[0], head)
        and fnmatch.fnmatchcase(parts[0], head)
        and _match_parts(rest, parts[1:])
    )


def _hidden(name, pattern_part):
    # glob's '*', '?', '[...]' and '**' never match a leading '.' unless the pattern has one.
    return name.startswith(".") and not pattern_part.startswith(".")
