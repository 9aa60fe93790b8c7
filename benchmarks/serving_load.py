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
memory; then the batching-on / batching-off ratios. Before the load, one
request's time broken down in this process over the same export (median of
--breakdown_repeats): PNG decode, resize to the model size, the model,
the map back to the original size, and the response (TensorProto +
PredictResponse serialisation and the client's parse), beside the whole
``serving_default`` call.

With --baseline, the same model is also exported as before issue 17
(float32, BatchNorm not folded) and served with batching on to clients that
open a channel per request, as the client did; its row is measured between
the two others, and the p50 ratio (this export / baseline) printed. The CPU's
features and the load average are printed beside the figures.

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
flags.DEFINE_enum("precision", "auto", ["auto", "float32", "bfloat16"], "Export precision (serving.export).")
flags.DEFINE_bool("baseline", False, "Also measure the pre-issue-17 export and client (see the docstring).")
flags.DEFINE_list("batching_variants", [],
                  "Extra batching-on rows, each MAX_BATCH/TIMEOUT_MICROS/BATCH_THREADS[/INTRA/INTER], e.g. 4/2000/2 "
                  "or 8/5000/2/1/2 (with the server's TensorFlow thread pools, see --thread_variants).")
flags.DEFINE_list("thread_variants", [],
                  "Extra batching-off rows with the server's TensorFlow thread pools set, each INTRA/INTER "
                  "(--tensorflow_intra_op_parallelism/--tensorflow_inter_op_parallelism), e.g. 1/2.")
flags.DEFINE_integer("breakdown_repeats", 5, "Repeats of the one-request breakdown (0: skip).", lower_bound=0)

FLAGS = flags.FLAGS
HOST = "127.0.0.1"  # loopback only
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_READY = re.compile(r"ready: gRPC \S+:(\d+) REST \S+:(\d+)")


def load_model():
    from serving.export.export import load_keras_model

    if FLAGS.model:
        return load_keras_model(FLAGS.model)
    from keras_emlnet.testing import tiny_emlnet

    return tiny_emlnet(cli.parse_size(FLAGS.input_size, "input_size"))


def export_model(model, export_base, **settings):
    """Exports `model` as version 1 (ExportConfig `settings`); returns (model name, seconds, record)."""
    from serving.export.export import ExportConfig, export_saliency_model

    start = time.perf_counter()
    _, record = export_saliency_model(model, ExportConfig(model=FLAGS.model or "<tiny_emlnet>",
                                                          export_base=export_base, version=1,
                                                          model_name="emlnet", **settings))
    return "emlnet", time.perf_counter() - start, record


def request_breakdown(version_dir, encoded, repeats):
    """{stage: median ms} of one request's stages, run one by one on the loaded export."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    from keras_emlnet.models.geometry import tf_image_to_model
    from keras_emlnet.models.postprocess import tf_to_original_size

    loaded = tf.saved_model.load(version_dir)
    input_size = tuple(int(v) for v in loaded.input_size.numpy())
    resize_mode = loaded.resize_mode.numpy().decode()
    output_mode = loaded.output_mode.numpy().decode()
    decode = tf.function(lambda data: tf.io.decode_image(data, channels=3, expand_animations=False))
    resize = tf.function(lambda image: tf_image_to_model(image, input_size, resize_mode)[tf.newaxis])
    back = tf.function(lambda saliency, size: tf_to_original_size(saliency[0], size, resize_mode, output_mode))
    signature = loaded.signatures["serving_default"]
    data = tf.constant(encoded)

    def response(saliency):
        reply = predict_pb2.PredictResponse()
        reply.outputs["saliency"].CopyFrom(tf.make_tensor_proto(saliency[np.newaxis, ..., 0]))
        parsed = predict_pb2.PredictResponse.FromString(reply.SerializeToString())
        return tf.make_ndarray(parsed.outputs["saliency"])

    stages = {}

    def timed(name, fn, *args):
        start = time.perf_counter()
        result = fn(*args)
        result = result.numpy() if hasattr(result, "numpy") else result
        stages.setdefault(name, []).append(time.perf_counter() - start)
        return result

    for repeat in range(repeats + 1):  # the first round traces: not counted
        image = timed("decode PNG", decode, data)
        model_input = timed("resize to model size", resize, tf.constant(image))
        maps = timed("model", loaded.predict_model_size, tf.constant(model_input))
        restored = timed("map back to original size", back, tf.constant(maps), tf.constant(image.shape[:2]))
        timed("response (proto + serialise + parse)", response, restored)
        timed("whole serving_default call", lambda: signature(image_bytes=data[tf.newaxis])["saliency"])
        if repeat == 0:
            stages.clear()
    return {name: 1000 * float(np.median(values)) for name, values in stages.items()}


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


def sender_factory(protocol, port, model_name, reuse_channel=True):
    """A function making, in each client thread, a sender of one encoded image.

    gRPC clients keep one channel each (`reuse_channel`), as a real client
    sending many requests would; REST opens a connection per request.
    """
    from serving.client import client

    server = f"{HOST}:{port}"
    if protocol == "rest":
        return lambda: (lambda encoded: client.predict_rest(server, model_name, [encoded], timeout_s=60.0))

    def make():
        channel = client.open_channel(server) if reuse_channel else None
        return lambda encoded: client.predict_grpc(server, model_name, [encoded], timeout_s=60.0, channel=channel)

    return make


def run_load(make_sender, images, requests_per_client, duration_s):
    """(latencies in s, errors, wall time) of all clients together."""
    deadline = time.monotonic() + duration_s
    barrier = threading.Barrier(len(images))

    def one_client(encoded):
        sender = make_sender()
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


def write_batching_file(path, max_batch_size, batch_timeout_micros, num_batch_threads):
    with open(path, "w") as f:
        f.write(f"max_batch_size {{ value: {max_batch_size} }}\n"
                f"batch_timeout_micros {{ value: {batch_timeout_micros} }}\n"
                f"num_batch_threads {{ value: {num_batch_threads} }}\n"
                f"max_enqueued_batches {{ value: 1000 }}\n")
    return path


def parse_variant(text, count, flag, optional=0):
    parts = text.split("/")
    if not count <= len(parts) <= count + optional or not all(part.isdigit() for part in parts):
        raise cli.FlagError(f"--{flag}: expected {count} integers separated by '/', got {text!r}")
    return [int(part) for part in parts]


def measure(mode, export_base, model_name, images, batching_file, reuse_channel=True, server_args=()):
    args = ["--model_base_path", export_base, "--model_name", model_name, "--host", HOST,
            "--grpc_port", "0", "--rest_port", "0", "--file_system_poll_wait_seconds", "0", *server_args]
    if batching_file:
        args += ["--enable_batching", "--batching_parameters_file", batching_file]
    server = ServerProcess(args)
    try:
        port = server.ports[0] if FLAGS.protocol == "grpc" else server.ports[1]
        make_sender = sender_factory(FLAGS.protocol, port, model_name, reuse_channel)
        latencies, errors, wall = run_load(make_sender, images, FLAGS.requests_per_client, FLAGS.duration_s)
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
        "load_average_1m": os.getloadavg()[0],
    }


def main(argv):
    del argv
    from keras_emlnet.atomic_files import write_json_atomic
    from keras_emlnet.inference.precision import describe_hardware

    # checked before the minutes of export
    thread_variants = [parse_variant(text, 2, "thread_variants") for text in FLAGS.thread_variants]
    batching_variants = [parse_variant(text, 3, "batching_variants", optional=2) for text in FLAGS.batching_variants]

    print(f"CPU: {describe_hardware()}; load average at start {os.getloadavg()[0]:.2f}")
    model = load_model()
    with tempfile.TemporaryDirectory(prefix="serving_load_") as work:
        export_base = os.path.join(work, "emlnet")
        model_name, export_s, record = export_model(model, export_base, precision=FLAGS.precision,
                                                     max_batch_size=FLAGS.max_batch_size)
        print(f"export: {export_s:.1f} s ({record['precision']}: {record['precision_reason']})")
        baseline_base = os.path.join(work, "baseline")
        if FLAGS.baseline:
            _, baseline_export_s, _ = export_model(model, baseline_base, precision="float32",
                                                   fold_batch_norms=False)
            print(f"baseline export (float32, not folded): {baseline_export_s:.1f} s")
        images = client_images(FLAGS.clients, cli.parse_size(FLAGS.image_size, "image_size"))
        breakdown = {}
        if FLAGS.breakdown_repeats:
            breakdown = request_breakdown(os.path.join(export_base, "1"), images[0], FLAGS.breakdown_repeats)
            print(f"one request ({FLAGS.image_size} PNG), stages run one by one, median of "
                  f"{FLAGS.breakdown_repeats} (load {os.getloadavg()[0]:.2f}):")
            parts = sum(value for name, value in breakdown.items() if not name.startswith("whole"))
            for name, value in breakdown.items():
                share = "" if name.startswith("whole") else f" ({100 * value / parts:4.1f} %)"
                print(f"  {name:<40}{value:9.1f} ms{share}")
        batching_file = write_batching_file(os.path.join(work, "batching_parameters.txt"), FLAGS.max_batch_size,
                                            FLAGS.batch_timeout_micros, FLAGS.num_batch_threads)
        rows = [measure("batching off", export_base, model_name, images, None)]
        for intra, inter in thread_variants:
            rows.append(measure(f"off {intra}/{inter} thr", export_base, model_name, images, None,
                                server_args=["--tensorflow_intra_op_parallelism", str(intra),
                                             "--tensorflow_inter_op_parallelism", str(inter)]))
        for index, values in enumerate(batching_variants):
            variant = write_batching_file(os.path.join(work, f"batching_{index}.txt"), *values[:3])
            threads = [] if len(values) < 5 else ["--tensorflow_intra_op_parallelism", str(values[3]),
                                                  "--tensorflow_inter_op_parallelism", str(values[4])]
            rows.append(measure(f"on {'/'.join(map(str, values))}", export_base, model_name, images, variant,
                                server_args=threads))
        if FLAGS.baseline:
            rows.append(measure("baseline on", baseline_base, model_name, images, batching_file,
                                reuse_channel=False))
        rows.append(measure("batching on", export_base, model_name, images, batching_file))
    off = rows[0]
    on = next(row for row in rows if row["mode"] == "batching on")
    print(f"\nserving load: {FLAGS.clients} {FLAGS.protocol} clients x {FLAGS.requests_per_client} "
          f"one-image requests ({FLAGS.image_size} PNG), model {FLAGS.model or 'tiny ' + FLAGS.input_size}, "
          f"batching max {FLAGS.max_batch_size} / {FLAGS.batch_timeout_micros} us / "
          f"{FLAGS.num_batch_threads} thread(s); CPU: {describe_hardware()}")
    print(f"{'mode':<14}{'requests':>9}{'errors':>7}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'peak MiB':>10}"
          f"{'load':>7}")
    for row in rows:
        print(f"{row['mode']:<14}{row['requests']:>9}{row['errors']:>7}{row['throughput_rps']:>9.1f}"
              f"{row['p50_ms']:>9.1f}{row['p99_ms']:>9.1f}{row['server_peak_rss_mib']:>10.0f}"
              f"{row['load_average_1m']:>7.2f}")
    ratios = {
        "throughput_on_over_off": on["throughput_rps"] / off["throughput_rps"],
        "p50_on_over_off": on["p50_ms"] / off["p50_ms"],
        "p99_on_over_off": on["p99_ms"] / off["p99_ms"],
    }
    print("ratios (batching on / off): throughput {throughput_on_over_off:.2f}x, p50 {p50_on_over_off:.2f}x, "
          "p99 {p99_on_over_off:.2f}x".format(**ratios))
    if FLAGS.baseline:
        base = next(row for row in rows if row["mode"] == "baseline on")
        ratios["p50_on_over_baseline"] = on["p50_ms"] / base["p50_ms"]
        ratios["throughput_on_over_baseline"] = on["throughput_rps"] / base["throughput_rps"]
        print("ratios (this export, batching on / baseline): p50 {p50_on_over_baseline:.2f}x, throughput "
              "{throughput_on_over_baseline:.2f}x".format(**ratios))
        # Every row against the baseline, measured in the same run (the target: p50 halved).
        ratios["p50_over_baseline"] = {row["mode"]: row["p50_ms"] / base["p50_ms"] for row in rows}
        print("p50 / baseline p50: " + ", ".join(f"{mode} {value:.2f}x"
                                                 for mode, value in ratios["p50_over_baseline"].items()))
    errors = sum(row["errors"] for row in rows)
    print(f"errors: {errors}")
    if FLAGS.out:
        config = {name: FLAGS[name].value for name in ("model", "input_size", "image_size", "protocol", "clients",
                                                         "requests_per_client", "duration_s", "max_batch_size",
                                                         "batch_timeout_micros", "num_batch_threads",
                                                         "precision", "baseline", "batching_variants",
                                                         "thread_variants")}
        write_json_atomic(os.path.join(FLAGS.out, "results.json"),
                          {"config": config, "cpu": describe_hardware(), "export_s": export_s,
                           "export": {"precision": record["precision"], "reason": record["precision_reason"]},
                           "breakdown_ms": breakdown, "rows": rows, "ratios": ratios, "errors": errors})
    return 1 if errors else 0


if __name__ == "__main__":
    app.run(main)
