"""Versions of one model under a base path, as TF Serving manages them.

`<model_base_path>/<N>/` directories with an integer name N are versions
(anything else, such as the export's `.tmp-*` folders, is ignored). Like TF
Serving's default "latest" version policy, the highest version is served and
the one it replaces is unloaded; the base path is polled every
`poll_wait_seconds`, so a new version directory is picked up without a
restart. A version that fails to load (or to warm up) is reported through
GetModelStatus and the version being served stays.

A version folder is loaded only once it looks complete (`is_complete`:
saved_model.pb and, when the SavedModel has variables, variables.index with
every data shard it names). A version that failed is retried when its files
change (`fingerprint`: names, sizes, mtimes), so one caught mid-copy loads as
soon as the copy finishes, and a truly broken one is not reloaded every poll.
Publishing atomically (copy to a temporary name in the base path, then rename
to the version number, as serving.export does) avoids partial loads entirely.
"""

import dataclasses
import os
import re
import threading

from serving.server import errors
from serving.server.servable import SAVED_MODEL_FILE
from serving.server.servable import Servable

# tensorflow.serving.ModelVersionStatus.State values (get_model_status.proto).
AVAILABLE = "AVAILABLE"
LOADING = "LOADING"
END = "END"


@dataclasses.dataclass
class VersionStatus:
    """What GetModelStatus reports for one version."""

    version: int
    state: str
    error_message: str = ""


_DATA_SHARD = re.compile(r"^variables\.data-(\d{5})-of-(\d{5})$")


def list_versions(model_base_path):
    """Integer version directories holding a saved_model.pb, ascending."""
    versions = []
    for name in os.listdir(model_base_path):
        path = os.path.join(model_base_path, name)
        if name.isdigit() and os.path.isfile(os.path.join(path, SAVED_MODEL_FILE)):
            versions.append(int(name))
    return sorted(versions)


def is_complete(path):
    """True when a version folder holds a whole SavedModel's files.

    saved_model.pb, and when there is a `variables/` folder: variables.index
    and every `variables.data-NNNNN-of-MMMMM` shard (all M of them). A copy
    that has written saved_model.pb but not yet variables/ is incomplete only
    if variables/ already exists; otherwise the load fails and is retried
    when the files change (see `fingerprint`).
    """
    if not os.path.isfile(os.path.join(path, SAVED_MODEL_FILE)):
        return False
    variables = os.path.join(path, "variables")
    if not os.path.isdir(variables):
        return True
    names = set(os.listdir(variables))
    if "variables.index" not in names:
        return False
    shards = [_DATA_SHARD.match(name) for name in names]
    counts = {int(m[2]) for m in shards if m}
    if len(counts) != 1:
        return False
    (count,) = counts
    return {int(m[1]) for m in shards if m} == set(range(count))


def fingerprint(path):
    """(relative path, size, mtime_ns) of every file under `path`, sorted: changes when a copy progresses."""
    entries = []
    for folder, _, files in os.walk(path):
        for name in files:
            full = os.path.join(folder, name)
            try:
                info = os.stat(full)
            except OSError:
                continue
            entries.append((os.path.relpath(full, path), info.st_size, info.st_mtime_ns))
    return tuple(sorted(entries))


class ModelRegistry:
    """Loads and serves the newest version of one model.

    Args:
        model_base_path: folder holding the version directories.
        model_name: the name requests must use.
        poll_wait_seconds: how often to look for new versions (<= 0: only
            when `poll` is called).
        load_servable: ``fn(path, version) -> Servable`` (tests swap it).
        on_event: optional ``fn(message)`` told about loads and failures
            (the server's main logs them).
    """

    def __init__(self, model_base_path, model_name, *, poll_wait_seconds=1.0,
                 load_servable=Servable.load, on_event=None):
        if not os.path.isdir(model_base_path):
            raise FileNotFoundError(f"model_base_path {model_base_path!r} is not a directory")
        self.model_base_path = model_base_path
        self.model_name = model_name
        self._poll_wait_seconds = poll_wait_seconds
        self._load_servable = load_servable
        self._on_event = on_event or (lambda message: None)
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._serving = None  # the Servable answering requests
        self._statuses = {}  # version -> VersionStatus
        self._failed = {}  # version -> fingerprint of its files when its load failed
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        """Loads the newest version now, then polls in a background thread."""
        self.poll()
        if self._poll_wait_seconds > 0:
            self._thread = threading.Thread(target=self._poll_loop, name="version-poll", daemon=True)
            self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def poll(self):
        """Looks for a newer version once; loads it if there is one.

        Returns:
            The version served after this poll (None when there is none).
        """
        with self._poll_lock:
            try:
                versions = list_versions(self.model_base_path)
            except OSError as error:
                self._on_event(f"cannot list {self.model_base_path}: {error}")
                return self.serving_version
            candidates = [v for v in versions if self._loadable(v)]
            if not candidates or candidates[-1] == self.serving_version:
                return self.serving_version
            self._load(candidates[-1])
            return self.serving_version

    def _version_path(self, version):
        return os.path.join(self.model_base_path, str(version))

    def _loadable(self, version):
        """Complete, and not a failed version whose files are unchanged since."""
        path = self._version_path(version)
        if not is_complete(path):
            return False
        with self._lock:
            failed = self._failed.get(version)
        return failed is None or fingerprint(path) != failed

    @property
    def serving_version(self):
        servable = self._serving
        return None if servable is None else servable.version

    def get(self, model_name, version=None):
        """The Servable for a request.

        Args:
            model_name: must equal this registry's model name.
            version: None for the served (newest) version, or an integer.

        Raises:
            NotFound: unknown model name, or a version that is not served.
            Unavailable: no version has loaded yet.
        """
        self._check_name(model_name)
        servable = self._serving
        if version is not None and (servable is None or servable.version != version):
            raise errors.NotFound(
                f"servable not found for request: Specific({model_name}, {version}); "
                f"served version: {self.serving_version}"
            )
        if servable is None:
            raise errors.Unavailable(
                f"no version of model '{model_name}' is loaded yet under {self.model_base_path}"
            )
        return servable

    def statuses(self, model_name, version=None):
        """VersionStatus list (newest first) for GetModelStatus.

        Raises:
            NotFound: unknown model name, or a version never seen.
        """
        self._check_name(model_name)
        with self._lock:
            statuses = sorted(self._statuses.values(), key=lambda s: -s.version)
        if version is not None:
            statuses = [s for s in statuses if s.version == version]
            if not statuses:
                raise errors.NotFound(f"model '{model_name}' has no version {version}")
        if not statuses:
            raise errors.NotFound(f"model '{model_name}' has no versions under {self.model_base_path}")
        return [dataclasses.replace(s) for s in statuses]

    def _check_name(self, model_name):
        if model_name != self.model_name:
            raise errors.NotFound(
                f"servable not found for request: unknown model '{model_name}' "
                f"(this server serves '{self.model_name}')"
            )

    def _load(self, version):
        path = self._version_path(version)
        files = fingerprint(path)
        with self._lock:
            retry = version in self._failed
            self._statuses[version] = VersionStatus(version, LOADING)
        if retry:
            self._on_event(f"version {version} changed since it failed to load; retrying")
        try:
            servable = self._load_servable(path, version)
            warmed = servable.warmup()
        except Exception as error:  # any load failure is reported, not fatal
            with self._lock:
                self._statuses[version] = VersionStatus(version, END, f"{type(error).__name__}: {error}")
                self._failed[version] = files
            self._on_event(f"version {version} failed to load; still serving "
                           f"{self.serving_version}; retried when its files change: {error}")
            return
        previous = self._serving
        with self._lock:
            self._failed.pop(version, None)
            self._serving = servable
            self._statuses[version] = VersionStatus(version, AVAILABLE)
            if previous is not None:
                self._statuses[previous.version] = VersionStatus(previous.version, END)
        self._on_event(f"serving version {version} of '{self.model_name}' from {path} "
                       f"({warmed} warmup requests replayed)")

    def _poll_loop(self):
        while not self._stop.wait(self._poll_wait_seconds):
            self.poll()
