"""`python -m serving.server` as a child process the demo owns: start, wait until ready, stop.

The server runs in its own process group (its own session), so `stop()` can
end it and anything it started with one signal to the group, and a Ctrl-C in
the demo's terminal reaches the demo only (whose `finally` then stops the
server). On Linux the child also gets SIGTERM if the demo itself dies without
running its `finally` (PR_SET_PDEATHSIG).

Ports: the server is started with port 0 for both APIs (the OS picks free
ports, so there is no race with other programs) and logs the ports it bound
in its "ready:" line, which is read back from its log file.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

# The line serving.server logs once both APIs listen (see serving/server/server.py main).
READY_LINE = re.compile(r"ready: gRPC \S+:(\d+) REST \S+:(\d+)")
STOP_GRACE_S = 30.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    # Runs in the child between fork and exec: ask the kernel for SIGTERM
    # when the parent dies. Best effort: only where prctl exists (Linux).
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class LocalServer:
    """One `serving.server` process on 127.0.0.1; a context manager.

    Args:
        model_base_path: folder of SavedModel version folders.
        model_name: the name clients use.
        log_path: file receiving the server's stdout and stderr.
        start_timeout_s: how long to wait for the model to be AVAILABLE.
        python: interpreter to run the server with (default: this one).

    Attributes (after start): pid, grpc_port, rest_port, grpc_address.
    """

    def __init__(self, model_base_path, model_name, log_path, *, start_timeout_s=600.0, python=None):
        self.model_base_path = os.path.abspath(os.fspath(model_base_path))
        self.model_name = model_name
        self.log_path = os.fspath(log_path)
        self.start_timeout_s = float(start_timeout_s)
        self.python = python or sys.executable
        self.process = None
        self.grpc_port = None
        self.rest_port = None

    @property
    def pid(self):
        return None if self.process is None else self.process.pid

    @property
    def grpc_address(self):
        return f"127.0.0.1:{self.grpc_port}"

    def command(self):
        """The command line the server is started with."""
        return [
            self.python, "-m", "serving.server",
            f"--model_base_path={self.model_base_path}", f"--model_name={self.model_name}",
            "--host=127.0.0.1", "--grpc_port=0", "--rest_port=0",
        ]

    def start(self):
        """Starts the server and waits until it serves the model.

        Raises:
            RuntimeError: the server exited before it was ready (its log's
                tail is in the message).
            TimeoutError: not ready within `start_timeout_s` (it is stopped).
        """
        os.makedirs(os.path.dirname(os.path.abspath(self.log_path)), exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_ready(self):
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"serving.server exited with code {self.process.returncode} before it was ready; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            if self.grpc_port is None:
                match = READY_LINE.search(self._read_log())
                if match:
                    self.grpc_port, self.rest_port = (int(v) for v in match.groups())
            if self.grpc_port is not None and self.model_state() == "AVAILABLE":
                return
            time.sleep(0.5)
        raise TimeoutError(
            f"serving.server did not serve {self.model_name!r} within {self.start_timeout_s:.0f} s; "
            f"log {self.log_path}:\n{self.log_tail()}"
        )

    def model_state(self):
        """State of the served version from REST `GET /v1/models/<name>`, or None."""
        url = f"http://127.0.0.1:{self.rest_port}/v1/models/{self.model_name}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                status = json.load(response).get("model_version_status", [])
        except (urllib.error.URLError, OSError, ValueError):
            return None
        return status[0].get("state") if status else None

    def _read_log(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_tail(self, lines=30):
        """The last `lines` lines of the server's log."""
        return "\n".join(self._read_log().splitlines()[-lines:])

    def stop(self):
        """Stops the server's process group (SIGTERM, SIGKILL after a grace period); returns its exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.process.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.process.wait()
        return self.process.returncode

    def _signal_group(self, signum):
        try:
            os.killpg(self.process.pid, signum)  # its own group: pgid == pid
        except ProcessLookupError:
            pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()
