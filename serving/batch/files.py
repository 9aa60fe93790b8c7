"""Which images a batch-scoring run reads, and where their outputs go.

Pure Python (no TensorFlow): discovery of the input collection (a folder,
searched recursively, or a glob), output names derived from each image's path
relative to the collection's root, a deterministic split into shards, and the
checks that keep every output inside `--out` whatever the input names are.

Only regular files are scored: a FIFO, a device (a symlink to /dev/zero) or a
dangling link named like an image is a `Rejected` input, reported and never
opened (opening a FIFO blocks forever, /dev/zero never ends). Each real file
is scored once (links and hard links to one file: the first path in sorted
order), and `**` patterns visit each real directory once, so directory symlink
loops end (glob.glob followed them: 41 copies of each path for one loop,
no end for two).
"""

import collections
import dataclasses
import glob
import os
import re
import stat

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
# Characters that make a glob pattern component "magic" (glob.has_magic's set).
_GLOB_MAGIC = frozenset("*?[")


class UnsafeNameError(ValueError):
    """An output name would land outside the output folder."""


@dataclasses.dataclass(frozen=True)
class ImageJob:
    """One image to score.

    Attributes:
        source: path of the image file to read.
        name: output name, '/'-separated and relative to the output folder,
            without extension (outputs add ".png", ".npy", "_overlay.jpg").
    """

    source: str
    name: str


@dataclasses.dataclass(frozen=True)
class Rejected:
    """An input that is not scored because no safe output name exists for it."""

    source: str
    reason: str


def discover_images(images, *, exclude_dir=None):
    """Finds the image files named by `images`.

    Args:
        images: a folder (searched recursively for IMAGE_EXTENSIONS, case
            insensitive) or a glob pattern (`**` allowed).
        exclude_dir: a folder whose files are never inputs (the output folder,
            so that a rerun does not score the maps it wrote itself).

    Returns:
        (root, paths): the folder output names are relative to, and the image
        paths sorted by that relative path.

    Raises:
        FileNotFoundError: if nothing matches.
    """
    images = os.fspath(images)
    if os.path.isdir(images):
        root = images
        paths = []
        for folder, subfolders, files in os.walk(images):
            subfolders.sort()
            paths.extend(os.path.join(folder, f) for f in files if _is_image_name(f))
    elif "**" in images:
        root = _glob_root(images)
        paths = [p for p in _walk_pattern(root, images) if _is_image_name(p)]
    else:
        root = _glob_root(images)
        paths = [
            p
            for p in glob.glob(images)
            if not os.path.isdir(p) and os.path.lexists(p) and _is_image_name(p)
        ]
    if exclude_dir is not None:
        excluded = os.path.realpath(exclude_dir)
        paths = [p for p in paths if not _is_within(os.path.realpath(p), excluded)]
    if not paths:
        raise FileNotFoundError(
            f"no images ({', '.join(IMAGE_EXTENSIONS)}) found at {images!r}"
        )
    paths.sort(key=lambda p: _relative_parts(p, root))
    return root, paths


def plan_entries(root, paths):
    """Gives each image a safe, unique output name.

    The name is the path relative to `root` without its extension; when two
    inputs share a name (`a.jpg` and `a.png`) both keep their extension
    (`a.jpg`, `a.png`) so neither overwrites the other. Computed over the
    whole collection, before sharding, so names do not depend on the shard.

    Returns:
        One entry per path, in the same order: an ImageJob, or a Rejected
        for a relative path that climbs out of the root or is otherwise
        unsafe, for what is not a regular file (FIFO, device, dangling link),
        or for a second path to one file (a link to it, a hard link: the file
        itself is kept, else the first in order).
    """
    return plan_relative_entries(paths, [_relative_parts(path, root) for path in paths],
                                 problems=local_file_problems(paths))


def local_file_problems(paths):
    """{path: why it is not scored} for local paths that are not regular files or repeat a file.

    One path per real file (st_dev, st_ino): the file itself rather than a
    link to it, else the first in order.
    """
    problems = {path: special_file_problem(path) for path in paths}
    chosen = {}
    for path in sorted((p for p in paths if problems[p] is None), key=os.path.islink):
        chosen.setdefault(_file_identity(path), path)
    for path in paths:
        if problems[path] is None and chosen[_file_identity(path)] != path:
            problems[path] = f"the same file as {chosen[_file_identity(path)]} (scored once)"
    return {path: problem for path, problem in problems.items() if problem is not None}


def plan_relative_entries(paths, relative_parts, *, problems=None):
    """`plan_entries` for relative paths the caller computed (`relative_parts[i]`:
    the components of `paths[i]` below the collection's root), so that paths that
    are not local files (gs://, s3:// in serving/beam) get the same names.
    `problems` ({path: reason}) rejects paths up front (`local_file_problems`).
    """
    problems = problems or {}
    named = []
    for path, parts in zip(paths, relative_parts, strict=True):
        if path in problems:
            named.append((path, UnsafeNameError(problems[path])))
            continue
        try:
            named.append((path, sanitize_relative_name(parts)))
        except UnsafeNameError as error:
            named.append((path, error))
    stem_counts = collections.Counter(
        _strip_extension(name) for _, name in named if isinstance(name, str)
    )
    entries = []
    for path, name in named:
        if not isinstance(name, str):
            entries.append(Rejected(path, str(name)))
            continue
        stem = _strip_extension(name)
        entries.append(ImageJob(path, stem if stem_counts[stem] == 1 else name))
    return entries


def special_file_problem(path):
    """Why `path` is not scored (None for a regular file).

    Looks with stat (following links), never opens: opening a FIFO blocks.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        return f"cannot read: {error.strerror or error}"
    if stat.S_ISREG(mode):
        return None
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))
    kind = next((name for test, name in kinds if test(mode)), "not a regular file")
    return f"not a regular file ({kind}); only regular files are scored"


def _file_identity(path):
    info = os.stat(path)
    return info.st_dev, info.st_ino


def _walk_pattern(root, pattern):
    """Paths matching a `**` glob pattern, each real directory visited once.

    Same matches as glob.glob(pattern, recursive=True) (`**` = any number of
    folders, `*` and `?` within one name, names starting with '.' matched
    only by a pattern component starting with '.'), but a directory reached
    again through a symlink (a loop, or a second link to it) is not walked again.
    """
    bare = root == "." and not pattern.startswith("." + os.sep)
    rest = pattern if bare else pattern[len(root):].lstrip(os.sep)
    regex = re.compile(_pattern_regex(rest.replace(os.sep, "/")))
    visited = set()
    found = []
    for folder, subfolders, files in os.walk(root, followlinks=True):
        try:
            info = os.stat(folder)
        except OSError:
            subfolders[:] = []
            continue
        if (info.st_dev, info.st_ino) in visited:
            subfolders[:] = []
            continue
        visited.add((info.st_dev, info.st_ino))
        subfolders.sort()
        relative_folder = os.path.relpath(folder, root)
        for name in files:
            relative = name if relative_folder == "." else os.path.join(relative_folder, name)
            if regex.fullmatch(relative.replace(os.sep, "/")):
                found.append(relative if bare else os.path.join(root, relative))
    return found


def _pattern_regex(pattern):
    """A glob pattern ('/'-separated, `**` allowed) as a regular expression."""
    parts = []
    components = pattern.split("/")
    for i, component in enumerate(components):
        last = i == len(components) - 1
        if component == "**":
            parts.append(r"(?:(?!\.)[^/]*/)*" + (r"(?!\.)[^/]*" if last else ""))
            continue
        regex = "" if component.startswith(".") else r"(?!\.)"
        j = 0
        while j < len(component):
            char = component[j]
            end = component.find("]", j + 2) if char == "[" else -1
            if char == "*":
                regex += "[^/]*"
            elif char == "?":
                regex += "[^/]"
            elif end > 0:
                body = component[j + 1:end]
                body = "^" + body[1:] if body.startswith("!") else body
                regex += "[" + body.replace("\\", "\\\\") + "]"
                j = end
            else:
                regex += re.escape(char)
            j += 1
        parts.append(regex + ("" if last else "/"))
    return "".join(parts)


def sanitize_relative_name(parts):
    """Checks relative path components and joins them with '/'.

    Raises:
        UnsafeNameError: for an empty name, an absolute path, a '.' or '..'
            component, or a component with a control character or a
            backslash (a separator on Windows).
    """
    if isinstance(parts, str):
        if os.path.isabs(parts) or parts.startswith(("/", "\\")):
            raise UnsafeNameError(f"absolute path {parts!r} is not a relative output name")
        parts = parts.replace(os.sep, "/").split("/")
    parts = list(parts)
    if not parts:
        raise UnsafeNameError("empty output name")
    for part in parts:
        if part in ("", ".", ".."):
            raise UnsafeNameError(f"path component {part!r} is not allowed in output names")
        if "\\" in part or "/" in part or any(ord(c) < 32 for c in part):
            raise UnsafeNameError(f"path component {part!r} has a separator or control character")
    return "/".join(parts)


def shard_jobs(entries, shard_index, num_shards):
    """Deterministic round-robin split: shard k takes items k, k + n, k + 2n, ...

    Every item lands in exactly one shard, and shard sizes differ by at most 1.
    """
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"shard_index must be in [0, {num_shards}), got {shard_index}")
    return list(entries)[shard_index::num_shards]


def output_path(out_dir, name, suffix):
    """The path of one output; raises UnsafeNameError if it would leave `out_dir`.

    Checked on the resolved path, so a symlinked folder inside `out_dir` that
    points elsewhere is caught as well as a '..' in the name.
    """
    parts = sanitize_relative_name(name).split("/")
    path = os.path.join(out_dir, *parts[:-1], parts[-1] + suffix)
    resolved_out = os.path.realpath(out_dir)
    if not _is_within(os.path.realpath(path), resolved_out):
        raise UnsafeNameError(f"output {path!r} resolves outside the output folder {out_dir!r}")
    return path


def _is_image_name(path):
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def _is_within(path, folder):
    return os.path.commonpath([path, folder]) == folder


def _glob_root(pattern):
    """The folder before the first component with glob magic ('.' if none)."""
    parts = pattern.split(os.sep)
    static = []
    for part in parts[:-1]:
        if _GLOB_MAGIC & set(part):
            break
        static.append(part)
    root = os.sep.join(static)
    if pattern.startswith(os.sep) and not root:
        return os.sep
    return root or "."


def _relative_parts(path, root):
    relative = os.path.relpath(os.path.normpath(path), os.path.normpath(root))
    return tuple(relative.split(os.sep))


def _strip_extension(name):
    head, _, last = name.rpartition("/")
    stem = os.path.splitext(last)[0] or last
    return f"{head}/{stem}" if head else stem
