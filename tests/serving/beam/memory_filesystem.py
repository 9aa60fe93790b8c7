"""A Beam FileSystem for `memtest://` paths, held in this process's memory.

Stands in for gs:// and s3:// (object stores: no folders, '/'-separated keys,
an object exists once its writer is closed), so the remote code paths of
serving.beam run here. Defining the class registers it: Beam finds filesystems
among `FileSystem`'s subclasses. In-process runners only (DirectRunner's
default in-memory mode).
"""

import io
import time

from apache_beam.io.filesystem import BeamIOError, FileMetadata, FileSystem

OBJECTS = {}


class _Upload(io.BytesIO):
    def __init__(self, path):
        super().__init__()
        self._path = path

    def close(self):
        if not self.closed:
            OBJECTS[self._path] = (self.getvalue(), time.time())
        super().close()


class MemoryFileSystem(FileSystem):
    @classmethod
    def scheme(cls):
        return "memtest"

    def join(self, basepath, *paths):
        return "/".join([basepath.rstrip("/"), *paths])

    def split(self, path):
        head, _, tail = path.rpartition("/")
        return head, tail

    def mkdirs(self, path):
        pass

    def has_dirs(self):
        return False

    def _list(self, dir_or_prefix):
        for path, (data, updated) in sorted(OBJECTS.items()):
            if path.startswith(dir_or_prefix):
                yield FileMetadata(path, len(data), updated)

    def create(self, path, mime_type="application/octet-stream", compression_type=None):
        return _Upload(path)

    def open(self, path, mime_type="application/octet-stream", compression_type=None):
        if path not in OBJECTS:
            raise BeamIOError("open failed", {path: FileNotFoundError(path)})
        return io.BytesIO(OBJECTS[path][0])

    def copy(self, source_file_names, destination_file_names):
        for source, destination in zip(source_file_names, destination_file_names):
            OBJECTS[destination] = OBJECTS[source]

    def rename(self, source_file_names, destination_file_names):
        for source, destination in zip(source_file_names, destination_file_names):
            OBJECTS[destination] = OBJECTS.pop(source)

    def exists(self, path):
        return path in OBJECTS

    def size(self, path):
        return len(OBJECTS[path][0])

    def last_updated(self, path):
        return OBJECTS[path][1]

    def checksum(self, path):
        return str(hash(OBJECTS[path][0]))

    def metadata(self, path):
        return FileMetadata(path, self.size(path), self.last_updated(path))

    def delete(self, paths):
        for path in paths:
            OBJECTS.pop(path, None)


def upload_tree(local_root, url_root):
    """Copies every file below a local folder to `url_root/...`."""
    import os

    for folder, _, files in os.walk(local_root):
        for name in files:
            path = os.path.join(folder, name)
            key = "/".join(os.path.relpath(path, local_root).split(os.sep))
            with open(path, "rb") as f:
                OBJECTS[f"{url_root.rstrip('/')}/{key}"] = (f.read(), time.time())
