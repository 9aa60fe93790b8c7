"""serving.server under concurrent load, dynamic batching off beside on.

An EMLNet (a `.keras` file, or the tiny testing EMLNet) is exported once with
serving.export; then `python -m serving.server` is started twice in a
subprocess on 127.0.0.1 (ports picked by the OS) — once without batching,
once with `--enable_batching` — and N client threads each send one-image
Predict requests (gRPC or REST), every client its own image, until each has
sent --requests_per_client or --duration_s has passed. Loopback only; every
loop is bounded in count and time.

Printed per mode: requests, errors (must be 0: the script exits 1 otherwise),
throughput (requests/s), p50 and p99 latency, the server's peak resident
memory; then the batching-on / batching-off ratios.

Full run (the paper's 480x640 model size, 640x480 photos; a trained model):
    python benchmarks/serving_load.py --model runs/emlnet/emlnet.keras \
        --image_size 480x640 --clients 16 --requests_per_client 50
Smoke run (tiny model, seconds per mode):
    python benchmarks/serving_load.py --input_size 32x48 --image_size 48x64 \
        --clients 4 --requests_per_client 10
"""

import concurrent.futures
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
from absl import app, flags, logging

from keras_emlnet import cli

flags.DEFINE_string("model", None, "EMLNet .keras file; unset: the tiny testing EMLNet.")
flags.DEFINE_string("input_size", "64x96", "Model input size HxW of the tiny EMLNet (ignored with --model).")
flags.DEFINE_string("image_size", "96x128", "Size HxW of the PNG images the clients send.")
flags.DEFINE_enum("protocol", "grpc", ["grpc", "rest"], "API the clients use.")
flags.DEFINE_integer("clients", 8, "Concurrent client threads.", lower_bound=1, upper_bound=64)
flags.DEFINE_integer("requests_per_client", 20, "Requests each client sends (after 2 warm-up ones).",
                     lower_bound=1, upper_bound=10000)
flags.DEFINE_float("duration_s", 60.0, "Longest a mode's load may run.", upper_bound=600.0)
flags.DEFINE_integer("max_batch_size", 8, "Batching on: max_batch_size.")
flags.DEFINE_integer("batch_timeout_micros", 5000, "Batching on: batch_timeout_micros.")
flags.DEFINE_integer("num_batch_threads", 1, "Batching on: num_batch_threads.")
flags.DEFINE_string("out", None, "Optional folder for results.json (with the configuration used).")

FLAGS = flags.FLAGS
HOST = "127.0.0.1"  # loopback only
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_READY = re.compile(r"ready: gRPC \S+:(\d+) REST \S+:(\d+)")


def export_model(export_base):
    """Exports --model (or the tiny EMLNet) as version 1; returns the model name."""
    from serving.export.export import ExportConfig, export_saliency_model, load_keras_model

    if FLAGS.model:
        model = load_keras_model(FLAGS.model)
    else:
        from keras_emlnet.testing import tiny_emlnet

        model = tiny_emlnet(cli.parse_size(FLAGS.input_size, "input_size"))
    export_saliency_model(model, ExportConfig(model=FLAGS.model or "<tiny_emlnet>",
                                              export_base=export_base, version=1, model_name="emlnet"))
    return "emlnet"


def client_images(count, size, seed=0):
    """`count` distinct seeded PNG images of `size`."""
    from serving.export.checks import encode_image

    rng = np.random.default_rng(seed)
    return [encode_image(rng.integers(0, 256, size=size + (3,), dtype=np.uint8)) for _ in range(count)]


class ServerProcess:
    """serving.server in a subprocess; ports from its ready line; peak RSS from /proc."""

    def __init__(self, args, timeout_s=180):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "serving.server", *args], cwd=REPO_ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.log = []
        self.ports = None
        ready = threading.Event()

        def read():
            for line in self.process.stdout:
                self.log.append(line)
                match = _READY.search(line)
                if match:
                    self.ports = tuple(int(v) for v in match.groups())
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(timeout_s) or self.ports is None:
            self.stop()
            raise RuntimeError("server did not start:\n" + "".join(self.log[-30:]))

    def peak_rss_mib(self):
        try:
            with open(f"/proc/{self.process.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return float("nan")

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def make_sender(protocol, port, model_name):
    """A function sending one encoded image and returning its map (per thread)."""
    from serving.client import client

    predict = client.predict_rest if protocol == "rest" else client.predict_grpc
    return lambda encoded: predict(f"{HOST}:{port}", model_name, [encoded], timeout_s=60.0)


def run_load(sender, images, requests_per_client, duration_s):
    """(latencies in s, errors, wall time) of all clients together."""
    deadline = time.monotonic() + duration_s
    barrier = threading.Barrier(len(images))

    def one_client(encoded):
        for _ in range(2):  # warm-up, not timed: connections, first batches
            sender(encoded)
        barrier.wait(60)
        latencies, errors, started = [], 0, time.perf_counter()
        for _ in range(requests_per_client):
            if time.monotonic() > deadline:
                break
            start = time.perf_counter()
            try:
                sender(encoded)
                latencies.append(time.perf_counter() - start)
            except Exception as error:  # counted and reported: errors must be 0
                errors += 1
                logging.warning("request failed: %s", error)
        return latencies, errors, started, time.perf_counter()

    with concurrent.futures.ThreadPoolExecutor(len(images)) as pool:
        results = list(pool.map(one_client, images))
    latencies = [lat for lats, _, _, _ in results for lat in lats]
    errors = sum(result[1] for result in results)
    wall = max(result[3] for result in results) - min(result[2] for result in results)
    return latencies, errors, wall


def measure(mode, export_base, model_name, images, batching_file):
    args = ["--model_base_path", export_base, "--model_name", model_name, "--host", HOST,
            "--grpc_port", "0", "--rest_port", "0", "--file_system_poll_wait_seconds", "0"]
    if batching_file:
        args += ["--enable_batching", "--batching_parameters_file", batching_file]
    server = ServerProcess(args)
    try:
        port = server.ports[0] if FLAGS.protocol == "grpc" else server.ports[1]
        sender = make_sender(FLAGS.protocol, port, model_name)
        latencies, errors, wall = run_load(sender, images, FLAGS.requests_per_client, FLAGS.duration_s)
        peak = server.peak_rss_mib()
    finally:
        server.stop()
    latencies_ms = np.array(latencies) * 1000
    return {
        "mode": mode,
        "requests": len(latencies),
        "errors": errors,
        "throughput_rps": len(latencies) / wall if wall > 0 else float("nan"),
        "p50_ms": float(np.percentile(latencies_ms, 50)) if len(latencies) else float("nan"),
        "p99_ms": float(np.percentile(latencies_ms, 99)) if len(latencies) else float("nan"),
        "server_peak_rss_mib": peak,
    }


def main(argv):
    del argv
    from keras_emlnet.atomic_files import write_json_atomic

    with tempfile.TemporaryDirectory(prefix="serving_load_") as work:
        export_base = os.path.join(work, "emlnet")
        model_name = export_model(export_base)
        batching_file = os.path.join(work, "batching_parameters.txt")
        with open(batching_file, "w") as f:
            f.write(f"max_batch_size {{ value: {FLAGS.max_batch_size} }}\n"
                    f"batch_timeout_micros {{ value: {FLAGS.batch_timeout_micros} }}\n"
                    f"num_batch_threads {{ value: {FLAGS.num_batch_threads} }}\n"
                    f"max_enqueued_batches {{ value: 1000 }}\n")
        images = client_images(FLAGS.clients, cli.parse_size(FLAGS.image_size, "image_size"))
        rows = [measure("batching off", export_base, model_name, images, None),
                measure("batching on", export_base, model_name, images, batching_file)]
    off, on = rows
    print(f"\nserving load: {FLAGS.clients} {FLAGS.protocol} clients x {FLAGS.requests_per_client} "
          f"one-image requests ({FLAGS.image_size} PNG), model {FLAGS.model or 'tiny ' + FLAGS.input_size}, "
          f"batching max {FLAGS.max_batch_size} / {FLAGS.batch_timeout_micros} us / "
          f"{FLAGS.num_batch_threads} thread(s)")
    print(f"{'mode':<14}{'requests':>9}{'errors':>7}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'peak MiB':>10}")
    for row in rows:
        print(f"{row['mode']:<14}{row['requests']:>9}{row['errors']:>7}{row['throughput_rps']:>9.1f}"
              f"{row['p50_ms']:>9.1f}{row['p99_ms']:>9.1f}{row['server_peak_rss_mib']:>10.0f}")
    ratios = {
        "throughput_on_over_off": on["throughput_rps"] / off["throughput_rps"],
        "p50_on_over_off": on["p50_ms"] / off["p50_ms"],
        "p99_on_over_off": on["p99_ms"] / off["p99_ms"],
    }
    print("ratios (batching on / off): throughput {throughput_on_over_off:.2f}x, p50 {p50_on_over_off:.2f}x, "
          "p99 {p99_on_over_off:.2f}x".format(**ratios))
    errors = off["errors"] + on["errors"]
    print(f"errors: {errors}")
    if FLAGS.out:
        config = {name: FLAGS[name].value for name in ("model", "input_size", "image_size", "protocol", "clients",
                                                         "requests_per_client", "duration_s", "max_batch_size",
                                                         "batch_timeout_micros", "num_batch_threads")}
        write_json_atomic(os.path.join(FLAGS.out, "results.json"),
                          {"config": config, "rows": rows, "ratios": ratios, "errors": errors})
    return 1 if errors else 0


if __name__ == "__main__":
    app.run(main)
