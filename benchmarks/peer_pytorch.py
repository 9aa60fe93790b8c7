"""This project's EMLNet inference beside the same architecture in PyTorch, timed in one run.

Two worker processes stay up for the whole run: "ours" (this project's
predictor path: `keras_emlnet.inference.predictor.inference_model`, BatchNorm
folded, in float32 and in bfloat16) under the project's venv, and "torch"
(timm's `nasnetalarge` / `densenet161` / `resnet50` feature extractors at the
same taps + the EML-NET decoder in plain PyTorch: per tap 1x1 conv + ReLU,
bilinear to the largest tap, concat, 1x1 conv, bilinear to the input size,
min-max) under the peer venv (`make bench-peer`, requirements-peer.txt). The
peer runs as a user would run it at its best: `torch.inference_mode()`, NCHW
and channels_last, bfloat16 autocast, and `torch.compile` with --compile. Both
build once, warm up, then every timed call alternates between the workers
and the variants (round robin, --iterations rounds), so load from other
processes hits all of them alike; medians are printed with the ratio ours /
best PyTorch, the CPU features and the load average.

The two sides run the same architecture on the same images with random
weights of their own (the weights are not transferred), and every BatchNorm
gets seeded trained-looking statistics of the same distribution on both sides
(`batch_norm_statistics.py`; fresh ones fold into zero biases that TensorFlow
deletes, which would flatter ours); outputs are not compared here;
`tests/models` checks the Keras backbones against PyTorch forwards where
weights are converted (DenseNet-161, ResNet-50; not NASNet, which has no
converter).

oneDNN weight caching: with --onednn_frozen_weights 1 the ours worker runs
with TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=1 (oneDNN keeps each convolution's
reordered kernel: 1.216 vs 1.260 s an image at 480x640 batch 1). Off by
default, so the benchmark times what users run: no CLI of ours sets it,
because TensorFlow caches eager kernels by op attributes and an eager
convolution then computes with another one's cached filter (WORKSPACE.md).

OpenMP: PyTorch's CPU threads spin-wait between parallel regions
(OMP_WAIT_POLICY active by default); on a machine shared with other busy
processes a descheduled spinning thread stalls its team, and densenet161
at 96x128 measured 10.4 s a call beside 0.08 s with OMP_WAIT_POLICY=PASSIVE
(load ~7, 2 cores). The torch worker gets --omp_wait_policy (default
PASSIVE, what a user on a shared machine would set); TensorFlow's own
thread pool does not spin that way.

torchvision: the PyPI torchvision 0.28.0 wheel is the CUDA build, whose
operators do not load beside torch 2.13.0+cpu (`import torchvision` fails);
timm imports it but its model definitions do not use it, so the torch worker
stubs the `torchvision` package out before importing timm.

    make bench-peer                       # both configurations, batch 1 and 8, 480x640
    .venv-peer/bin/python benchmarks/peer_pytorch.py --configs demo --input_size 96x128 --iterations 2
"""

import json
import os
import subprocess
import sys
import time

import numpy as np
from absl import app, flags

import batch_norm_statistics

flags.DEFINE_enum("worker", None, ["ours", "torch"], "Internal: run as that worker process.")
flags.DEFINE_string("configs", "nasnet+densenet161,resnet50x2", "Configurations to time (comma separated).")
flags.DEFINE_string("input_size", "480x640", "Input size HxW.")
flags.DEFINE_string("batch_sizes", "1,8", "Batch sizes (comma separated).")
flags.DEFINE_integer("iterations", 3, "Timed rounds (median).", lower_bound=1)
flags.DEFINE_bool("compile", False, "Also time torch.compile (minutes to compile).")
flags.DEFINE_string("ours_python", None, "Python of the project's venv (TensorFlow); default .venv/bin/python.")
flags.DEFINE_integer("onednn_frozen_weights", 0,
                     "1: the ours worker runs with TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=1 (~3.5 % faster, but no CLI "
                     "sets it: it gives eager convolutions wrong filters, WORKSPACE.md).")
flags.DEFINE_string("omp_wait_policy", "PASSIVE", "OMP_WAIT_POLICY of the torch worker.")
flags.DEFINE_string("out", None, "Optional folder for results.json.")
FLAGS = flags.FLAGS
# The flags recorded in results.json (the configuration the run used).
_SETTINGS = ("configs", "input_size", "batch_sizes", "iterations", "compile", "onednn_frozen_weights",
             "omp_wait_policy")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {
    # name: (Keras backbones, timm models with their feature indices)
    "nasnet+densenet161": (["nasnet", "densenet161"], [("nasnetalarge", (3, 4)), ("densenet161", (1, 2, 3, 4))]),
    "resnet50x2": (["resnet50", "resnet50"], [("resnet50", (2, 3, 4)), ("resnet50", (2, 3, 4))]),
}
OURS_VARIANTS = ("float32", "bfloat16")
TORCH_VARIANTS = ("float32 NCHW", "float32 channels_last", "bfloat16 channels_last")
COMPILE_VARIANT = "float32 channels_last compile"


# ---------------------------------------------------------------- workers ---
def ours_worker(config, input_size, batches):
    """Builds the EMLNet (random weights) and answers `run <variant> <batch>` lines with seconds."""
    import keras
    import tensorflow as tf

    from keras_emlnet.inference.predictor import choose_inference_model, inference_model
    from keras_emlnet.models.emlnet import build_emlnet
    from keras_emlnet.models.encoder import build_encoder

    keras.utils.set_random_seed(0)
    backbones, _ = CONFIGS[config]
    encoders = []
    for i, name in enumerate(backbones):
        prefix = name if backbones.index(name) == i else f"{name}_b"
        encoders.append(build_encoder(name, weights=None, input_size=input_size, prefix=prefix, seed=i))
    model = build_emlnet(encoders, output_mode="minmax")
    batch_norm_statistics.assign_to_keras(model)
    runnables = {
        "float32": inference_model(model, "float32")[0],
        # a folded copy sharing no layer, so the float32 one stays float32
        "bfloat16": inference_model(_folded_copy(model), "bfloat16", fold_batch_norms=False)[0],
    }
    functions = {variant: tf.function(lambda x, m=m: m(x, training=False)) for variant, m in runnables.items()}
    images = {b: tf.constant(_images(b, input_size)) for b in batches}
    for variant in OURS_VARIANTS:
        for b in batches:
            functions[variant](images[b]).numpy()  # trace + warm up
    # What `auto` picks for this model here, measured as the predictor and the export measure it
    # (batch 1, the worker's precision cache off), printed beside the timings of both precisions.
    _, auto_choice, _ = choose_inference_model(model, "auto")
    _serve(lambda variant, b: _timed(lambda: functions[variant](images[b]).numpy()),
           {"auto": auto_choice.precision, "auto_reason": auto_choice.reason})


def _folded_copy(model):
    from keras_emlnet.inference.folding import fold_batch_norms

    return fold_batch_norms(model, copy=True)


def torch_worker(config, input_size, batches, compile_model):
    _stub_torchvision()
    import timm
    import torch
    from torch import nn
    from torch.nn import functional as F

    torch.manual_seed(0)
    _, specs = CONFIGS[config]

    class EMLNetTorch(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbones = nn.ModuleList(
                timm.create_model(name, pretrained=False, features_only=True, out_indices=indices)
                for name, indices in specs
            )
            channels = [c for backbone in self.backbones for c in backbone.feature_info.channels()]
            self.taps = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in channels)
            self.fuse = nn.Conv2d(len(channels), 1, 1, bias=False)
            self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255)
            self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255)

        def forward(self, images):  # float RGB 0-255, (B, 3, H, W)
            x = (images - self.mean) / self.std
            features = [f for backbone in self.backbones for f in backbone(x)]
            largest = max((f.shape[-2:] for f in features), key=lambda s: s[0] * s[1])
            maps = [F.interpolate(F.relu(tap(f)), size=largest, mode="bilinear", align_corners=False)
                    for tap, f in zip(self.taps, features)]
            fused = F.interpolate(self.fuse(torch.cat(maps, 1)), size=images.shape[-2:], mode="bilinear",
                                  align_corners=False).float()
            low = fused.amin(dim=(2, 3), keepdim=True)
            high = fused.amax(dim=(2, 3), keepdim=True)
            return (fused - low) / (high - low + 1e-7)

    nchw = EMLNetTorch().eval()
    rng = np.random.default_rng(batch_norm_statistics.SEED)
    with torch.no_grad():
        for module in nchw.modules():
            if isinstance(module, nn.BatchNorm2d):
                statistics = batch_norm_statistics.draw(module.num_features, rng)
                for name, attribute in (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"),
                                        ("moving_variance", "running_var")):
                    getattr(module, attribute).copy_(torch.from_numpy(statistics[name]))
    channels_last = EMLNetTorch().eval().to(memory_format=torch.channels_last)
    channels_last.load_state_dict(nchw.state_dict())
    images = {b: torch.from_numpy(_images(b, input_size)).permute(0, 3, 1, 2).contiguous() for b in batches}
    images_cl = {b: x.contiguous(memory_format=torch.channels_last) for b, x in images.items()}

    def run(variant, b):
        with torch.inference_mode():
            if variant == "float32 NCHW":
                return nchw(images[b])
            if variant == "bfloat16 channels_last":
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return channels_last(images_cl[b])
            if variant == COMPILE_VARIANT:
                return compiled(images_cl[b])
            return channels_last(images_cl[b])

    variants = list(TORCH_VARIANTS)
    info = {"torch": torch.__version__, "timm": timm.__version__, "threads": torch.get_num_threads()}
    if compile_model:
        compiled = torch.compile(channels_last)
        start = time.perf_counter()
        for b in batches:
            with torch.inference_mode():
                compiled(images_cl[b])
        info["compile_s"] = time.perf_counter() - start
        variants.append(COMPILE_VARIANT)
    for variant in variants:
        for b in batches:
            run(variant, b)  # warm up
    _serve(lambda variant, b: _timed(lambda: run(variant, b)), info)


def _stub_torchvision():
    """Makes `import torchvision` (and submodules) give inert stand-ins (see the module docstring)."""
    import importlib.abc
    import importlib.machinery
    from unittest import mock

    class Stub(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name, path, target=None):
            if name == "torchvision" or name.startswith("torchvision."):
                return importlib.machinery.ModuleSpec(name, self, is_package=True)
            return None

        def create_module(self, spec):
            module = mock.MagicMock(name=spec.name)
            module.__path__, module.__spec__, module.__name__ = [], spec, spec.name
            return module

        def exec_module(self, module):
            pass

    sys.meta_path.insert(0, Stub())


def _images(batch, input_size):
    rng = np.random.default_rng(batch)
    return rng.uniform(0, 255, size=(batch, *input_size, 3)).astype(np.float32)


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _serve(run, info):
    """Worker loop: prints `ready <json>`, then one line of seconds per `run <variant>|<batch>` line."""
    print("ready " + json.dumps(info), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "quit":
            return
        variant, batch = command[len("run "):].rsplit("|", 1)
        print(f"{run(variant, int(batch)):.6f}", flush=True)


# ----------------------------------------------------------- orchestrator ---
class Worker:
    def __init__(self, python, args, env=None):
        self.process = subprocess.Popen(
            [python, os.path.abspath(__file__), *args], cwd=REPO_ROOT, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
        )
        for line in self.process.stdout:
            if line.startswith("ready "):
                self.info = json.loads(line[len("ready "):])
                return
        raise RuntimeError(f"worker {args} exited with {self.process.wait()} before it was ready")

    def run(self, variant, batch):
        self.process.stdin.write(f"run {variant}|{batch}\n")
        self.process.stdin.flush()
        return float(self.process.stdout.readline())

    def close(self):
        if self.process.poll() is None:
            self.process.stdin.write("quit\n")
            self.process.stdin.close()
            self.process.wait(60)


def describe_cpu():
    flags, model = set(), "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")
    return f"{model}, {os.cpu_count()} CPUs, flags: {' '.join(w for w in wanted if w in flags)}"


def main(argv):
    del argv
    ours_python = FLAGS.ours_python or os.path.join(REPO_ROOT, ".venv", "bin", "python")
    input_size = tuple(int(v) for v in FLAGS.input_size.split("x"))
    batches = [int(b) for b in FLAGS.batch_sizes.split(",")]
    if FLAGS.worker:
        config = FLAGS.configs
        if FLAGS.worker == "ours":
            return ours_worker(config, input_size, batches)
        return torch_worker(config, input_size, batches, FLAGS.compile)

    results = []
    cpu = describe_cpu()
    for config in FLAGS.configs.split(","):
        common = ["--configs", config, "--input_size", FLAGS.input_size, "--batch_sizes", FLAGS.batch_sizes]
        # An empty precision cache: `auto` measures in this run, not a choice stored earlier.
        env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2", EMLNET_PRECISION_CACHE="")
        if FLAGS.onednn_frozen_weights:
            env.setdefault("TF_ONEDNN_ASSUME_FROZEN_WEIGHTS", "1")
        ours = Worker(ours_python, ["--worker", "ours", *common], env)
        peer = Worker(sys.executable, ["--worker", "torch", *common] + (["--compile"] if FLAGS.compile else []),
                      dict(os.environ, OMP_WAIT_POLICY=FLAGS.omp_wait_policy))
        try:
            plan = [(ours, "ours", v) for v in OURS_VARIANTS] + [(peer, "torch", v) for v in TORCH_VARIANTS]
            if FLAGS.compile:
                plan.append((peer, "torch", COMPILE_VARIANT))
            times, loads = {}, []
            for _ in range(FLAGS.iterations):
                for batch in batches:
                    for worker, side, variant in plan:
                        times.setdefault((side, variant, batch), []).append(worker.run(variant, batch))
                loads.append(os.getloadavg()[0])
        finally:
            ours.close()
            peer.close()
        print(f"\n{config} at {FLAGS.input_size}, median of {FLAGS.iterations} interleaved rounds; "
              f"CPU: {cpu}; load average {min(loads):.2f}-{max(loads):.2f}")
        print(f"ours: precision auto -> {ours.info['auto']} ({ours.info['auto_reason']}), "
              f"TF_ONEDNN_ASSUME_FROZEN_WEIGHTS={env.get('TF_ONEDNN_ASSUME_FROZEN_WEIGHTS', '0')}; torch {peer.info}")
        for batch in batches:
            rate = {key[:2]: batch / sorted(v)[len(v) // 2] for key, v in times.items() if key[2] == batch}
            for (side, variant), value in rate.items():
                print(f"  batch {batch}  {side:<5} {variant:<32} {value:8.3f} images/s")
            best_torch_f32 = max(v for (side, variant), v in rate.items() if side == "torch" and "float32" in variant)
            best_torch = max(v for (side, _), v in rate.items() if side == "torch")
            ratios = {
                "ours_float32_over_best_torch_float32": rate[("ours", "float32")] / best_torch_f32,
                "ours_best_over_best_torch": max(rate[("ours", v)] for v in OURS_VARIANTS) / best_torch,
            }
            faster = max(OURS_VARIANTS, key=lambda v: rate[("ours", v)])
            ratios["auto_picked_the_faster"] = ours.info["auto"] == faster
            print(f"  batch {batch}  auto picked {ours.info['auto']}; the faster here: {faster}")
            print(f"  batch {batch}  ours float32 / best PyTorch float32: "
                  f"{ratios['ours_float32_over_best_torch_float32']:.2f}x; ours best / PyTorch best: "
                  f"{ratios['ours_best_over_best_torch']:.2f}x")
            results.append({"config": config, "batch": batch, "images_per_s": {" ".join(k): v for k, v in rate.items()},
                            "ratios": ratios})
    if FLAGS.out:
        os.makedirs(FLAGS.out, exist_ok=True)
        with open(os.path.join(FLAGS.out, "results.json.tmp"), "w") as f:
            settings = {name: FLAGS[name].value for name in _SETTINGS}
            json.dump({"cpu": cpu, "args": dict(settings, ours_python=ours_python), "results": results}, f,
                      indent=1)
        os.replace(os.path.join(FLAGS.out, "results.json.tmp"), os.path.join(FLAGS.out, "results.json"))
    return 0


if __name__ == "__main__":
    app.run(main)
