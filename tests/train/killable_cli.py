"""Runs a training CLI in a subprocess that can be SIGKILLed after n trained batches.

A hard kill (no cleanup, no final save) is what resume must survive; the
kill comes from the step counter's batch hook (every training run has one,
whatever its --verbose), so it lands at a known step.
"""

import os
import subprocess
import sys

_WRAPPER = """
import importlib, os, signal
from absl import app
from keras_emlnet.training import callbacks
{setup}
kill_at = int(os.environ.get("KILL_AT_BATCH", "0"))
if kill_at:
    seen = []
    count_step = callbacks.StepCounter.on_train_batch_end
    def die(self, batch, logs=None):
        count_step(self, batch, logs)
        seen.append(batch)
        if len(seen) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    callbacks.StepCounter.on_train_batch_end = die
cli = importlib.import_module({module!r})
cli.define_flags()
app.run(cli.main)
"""


def run_cli(module, args, *, kill_at_batch=0, setup=""):
    """Runs CLI `module` (e.g. "train.encoder") with `args`; SIGKILLed after `kill_at_batch` batches if > 0.

    Args:
        setup: Python lines run first in the child (e.g. registering a test backbone).

    Returns:
        The subprocess.CompletedProcess (returncode -SIGKILL when killed).
    """
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KILL_AT_BATCH": str(kill_at_batch)}
    code = _WRAPPER.format(setup=setup, module=module)
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=600)


def start_cli(module, args, *, kill_at_batch=0, setup="", env=None, log_path=None):
    """Starts CLI `module` like `run_cli` but returns the running subprocess.Popen.

    Args:
        env: extra environment variables (e.g. TF_CONFIG for one worker of a cluster).
        log_path: file receiving the child's stdout and stderr (default: discarded).
    """
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KILL_AT_BATCH": str(kill_at_batch), **(env or {})}
    code = _WRAPPER.format(setup=setup, module=module)
    log = open(log_path, "w") if log_path else subprocess.DEVNULL
    try:
        return subprocess.Popen([sys.executable, "-c", code, *args], env=full_env, stdout=log, stderr=subprocess.STDOUT)
    finally:
        if log_path:
            log.close()
