"""One benchmark configuration per fresh Python process.

Peak memory (ru_maxrss, VmHWM) and TensorFlow's global state (dtype policy, thread pools, compiled graphs) cannot
be reset inside a process, so each configuration is measured by the benchmark script re-run as a worker:
`run_in_fresh_process(__file__, config)` starts `python <script> --worker=<json>`, and the script's `main` begins
with `if serve_worker(measure): return`, which measures the configuration and prints the result as JSON.
"""

import json
import os
import subprocess
import sys

from absl import flags

flags.DEFINE_string("worker", None, "Internal: JSON of one configuration to measure in this process.")


def serve_worker(measure):
    """In a worker process, prints `measure(config)` as JSON and returns True; elsewhere returns False."""
    config = flags.FLAGS.worker
    if not config:
        return False
    print(json.dumps(measure(json.loads(config))))
    return True


def run_in_fresh_process(script, config):
    """Runs `script --worker=<config>` and returns its result dict.

    Raises:
        RuntimeError: the worker failed (its stderr's end is in the message).
    """
    command = [sys.executable, os.path.abspath(script), f"--worker={json.dumps(config)}"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{os.path.basename(script)}: configuration {config} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
