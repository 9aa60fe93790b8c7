"""`python -m serving.export` wall time: this checkout beside an older one, alternating.

The demo-size EMLNet (`nasnet` + `densenet161` encoders, random weights, no
download; 96x128 input, minmax output) is saved once as `.keras`; then the
export CLI runs in a fresh process per export, alternating between
--baseline_root (a checkout of older code, e.g. `git archive <commit> | tar -x
-C /tmp/base`) and this checkout, --rounds times. Printed: each export's wall
time, the medians and their ratio (baseline / this), the precision this
checkout's export chose, the CPU's features and the load average at each run
(the machine may be shared: only the ratio of interleaved runs means much).
The exports share a fresh precision cache (``$EMLNET_PRECISION_CACHE`` in the
work folder): the first export of this checkout that measures `auto` stores
the choice, later ones reuse it (--warm_precision_cache runs that first one
before the rounds).

    python benchmarks/export_speed.py --baseline_root /tmp/base
Smoke run (tiny model, seconds):
    python benchmarks/export_speed.py --backbones tiny --input_size 32x48
"""

import json
import os
import subprocess
import sys
import tempfile
import time

from absl import app, flags

from keras_emlnet import cli

flags.DEFINE_list("backbones", ["nasnet", "densenet161"], "Encoder backbones, or 'tiny' (testing encoders).")
flags.DEFINE_string("input_size", "96x128", "Model input size HxW (the demo's).")
flags.DEFINE_string("baseline_root", None, "Root of an older checkout to time beside this one (optional).")
flags.DEFINE_integer("rounds", 1, "Exports per checkout (alternating).", lower_bound=1)
flags.DEFINE_list("export_flags", [], "Extra flags for this checkout's export, e.g. --precision=float32.")
flags.DEFINE_bool("warm_precision_cache", False,
                  "Before the timed rounds, export once with this checkout (timed and printed as 'warming') so "
                  "its precision=auto measurement is cached and the rounds show the cached cost.")
flags.DEFINE_string("out", None, "Optional folder for results.json.")

FLAGS = flags.FLAGS
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def save_model(path, backbones, input_size):
    import keras

    from keras_emlnet.models.emlnet import build_emlnet

    keras.utils.set_random_seed(0)
    if backbones == ["tiny"]:
        from keras_emlnet.testing import tiny_emlnet

        model = tiny_emlnet(input_size)
    else:
        from keras_emlnet.models.encoder import build_encoder

        encoders = [build_encoder(name, weights=None, input_size=input_size, seed=0) for name in backbones]
        model = build_emlnet(encoders, output_mode="minmax")
    model.save(path)


def export_once(root, model_path, export_base, version, extra):
    env = dict(os.environ, PYTHONPATH=root, TF_CPP_MIN_LOG_LEVEL="2")
    command = [sys.executable, "-m", "serving.export", "--model", model_path, "--export_base", export_base,
               "--version", str(version), *extra]
    load = os.getloadavg()[0]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"export in {root} failed:\n{done.stderr[-3000:]}")
    with open(os.path.join(export_base, str(version), "config.json")) as f:
        record = json.load(f)
    return {"root": root, "seconds": seconds, "load_average_1m": load,
            "precision": record.get("precision", "float32"), "precision_reason": record.get("precision_reason"),
            "parity": record["parity"]["max_relative_diff"]}


def main(argv):
    del argv
    import numpy as np

    from keras_emlnet.inference.precision import describe_hardware

    input_size = cli.parse_size(FLAGS.input_size, "input_size")
    roots = [("this", REPO_ROOT, list(FLAGS.export_flags))]
    if FLAGS.baseline_root:
        roots.insert(0, ("baseline", os.path.abspath(FLAGS.baseline_root), []))
    runs = []
    with tempfile.TemporaryDirectory(prefix="export_speed_") as work:
        model_path = os.path.join(work, "emlnet.keras")
        save_model(model_path, list(FLAGS.backbones), input_size)
        os.environ["EMLNET_PRECISION_CACHE"] = os.path.join(work, "auto_precision.json")
        version = 0
        if FLAGS.warm_precision_cache:
            version += 1
            run = export_once(REPO_ROOT, model_path, os.path.join(work, "exports"), version, list(FLAGS.export_flags))
            run["label"] = "warming"
            runs.append(run)
            print(f"warming   {run['seconds']:8.1f} s  load {run['load_average_1m']:5.2f}  "
                  f"precision {run['precision_reason']}", flush=True)
        for _ in range(FLAGS.rounds):
            for label, root, extra in roots:
                version += 1
                run = export_once(root, model_path, os.path.join(work, "exports"), version, extra)
                run["label"] = label
                runs.append(run)
                print(f"{label:<9} {run['seconds']:8.1f} s  load {run['load_average_1m']:5.2f}  "
                      f"precision {run['precision_reason'] or run['precision']}  parity {run['parity']:.2g}",
                      flush=True)
    medians = {label: float(np.median([r["seconds"] for r in runs if r["label"] == label])) for label, _, _ in roots}
    print(f"\nserving.export of {'+'.join(FLAGS.backbones)} at {input_size[0]}x{input_size[1]}, "
          f"median of {FLAGS.rounds} per checkout; CPU: {describe_hardware()}")
    for label, seconds in medians.items():
        print(f"  {label:<9} {seconds:8.1f} s")
    if "baseline" in medians:
        print(f"  ratio baseline / this: {medians['baseline'] / medians['this']:.2f}x")
    if FLAGS.out:
        from keras_emlnet.atomic_files import write_json_atomic

        write_json_atomic(os.path.join(FLAGS.out, "results.json"),
                          {"cpu": describe_hardware(), "runs": runs, "medians_s": medians,
                           "config": {name: FLAGS[name].value for name in
                                      ("backbones", "input_size", "baseline_root", "rounds", "export_flags",
                                       "warm_precision_cache")}})


if __name__ == "__main__":
    app.run(main)
