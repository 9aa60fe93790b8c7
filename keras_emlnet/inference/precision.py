"""`precision="auto"`: bfloat16 only where the hardware computes it faster than float32.

The rule (`choose_precision`), from measurements recorded in WORKSPACE.md
("Inference precision auto"):

- a GPU with bfloat16 tensor cores (compute capability >= 8.0): bfloat16;
  an older GPU: float32;
- a CPU listing ``amx_bf16`` (Sapphire Rapids and later): bfloat16;
- a CPU listing ``avx512_bf16`` but no AMX (Cooper Lake, AMD Zen 4): not
  settled by the flags. On this project's Zen 4 machine bfloat16 measured
  ~2.4x faster than float32 for NASNet + DenseNet at 480x640 but slower at
  96x128 batch 1, so callers that hold the model (the predictor, the export,
  the benchmarks) measure both on it (`needs_measurement`, `measure`);
  without a measurement the rule says float32 (exact maps);
- any other CPU (plain AVX-512 or AVX2): float32; without a native bfloat16
  dot product oneDNN converts every operand, and mixed bfloat16 measured
  several times slower than float32.

``$EMLNET_AUTO_PRECISION`` (float32 or bfloat16), where set, is what "auto"
resolves to (the test suite sets float32 so its exact-equality checks hold
on any machine; a fleet can pin one precision for all its machines).

Where a caller can afford to time both (a benchmark, a long batch run) it
passes `measure`, and the faster measured precision wins over the rule. A
caller running batches of several sizes (an export for a batching server)
uses `choose_precision_by_batch`: bfloat16 from the batch size where it
starts to win, float32 below.
Every choice carries its reason, which the CLIs log and record.

A measurement is remembered (`cache_key`): the winner is stored in a small
JSON file (``$EMLNET_PRECISION_CACHE``, default
``$KERAS_HOME/emlnet/auto_precision.json``, ``~/.keras`` without KERAS_HOME;
an empty value turns the cache off) under a key naming the CPU model and
flags, the CPU count, the TensorFlow version, the model's architecture, the
input size and the batch size (`measurement_key`). The next "auto" with the
same key takes the stored choice without timing anything; its reason says
it came from the cache, which file and when it was measured. Delete the
file to measure again.
"""

import dataclasses
import datetime
import hashlib
import json
import os

PRECISIONS = ("float32", "bfloat16", "float16")
AUTO = "auto"
AUTO_ENV = "EMLNET_AUTO_PRECISION"
CACHE_ENV = "EMLNET_PRECISION_CACHE"
PRECISION_CHOICES = (AUTO,) + PRECISIONS
# CPU flags (as /proc/cpuinfo spells them) with native bfloat16 arithmetic.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
# The first GPU generation with bfloat16 tensor cores (Ampere).
BF16_GPU_CAPABILITY = (8, 0)
# The flags that change how fast float32/bfloat16 convolutions run (part of the cache key).
_SPEED_FLAGS = frozenset({"avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16",
                          "amx_tile", "amx_bf16", "amx_int8"})


@dataclasses.dataclass(frozen=True)
class PrecisionChoice:
    """The precision picked and why.

    Attributes:
        precision: the compute precision (of batches below
            `bfloat16_from_batch` where that is set).
        reason: what decided it.
        bfloat16_from_batch: None, or the batch size from which bfloat16
            measured faster (`choose_precision_by_batch`): batches of at least
            this many images compute in bfloat16.
    """

    precision: str
    reason: str
    bfloat16_from_batch: int = None

    @property
    def description(self):
        """E.g. "float32", or "float32 below batch 4, bfloat16 from 4"."""
        if self.bfloat16_from_batch is None:
            return self.precision
        return f"{self.precision} below batch {self.bfloat16_from_batch}, bfloat16 from {self.bfloat16_from_batch}"

    def __str__(self):
        return f"{self.description} ({self.reason})"


def cpu_flags(cpuinfo="/proc/cpuinfo"):
    """The CPU's feature flags (a frozenset; empty where /proc/cpuinfo is unreadable)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags") and ":" in line:
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def gpu_capabilities():
    """[(major, minor)] compute capability of each visible GPU (TensorFlow's view)."""
    import tensorflow as tf

    capabilities = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        capabilities.append(tuple(details.get("compute_capability") or (0, 0)))
    return capabilities


def describe_hardware(flags=None):
    """One line naming the CPU model and the flags the precision rule reads (for benchmark output)."""
    flags = cpu_flags() if flags is None else flags
    model = cpu_model()
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
    listed = [name for name in wanted if name in flags]
    return f"{model}, {os.cpu_count()} CPUs, flags: {' '.join(listed) or 'none of ' + ' '.join(wanted)}"


def needs_measurement(*, flags=None, gpus=None):
    """True where "auto" cannot be settled by the hardware: no GPU, avx512_bf16 without AMX."""
    if os.environ.get(AUTO_ENV):
        return False
    gpus = gpu_capabilities() if gpus is None else list(gpus)
    flags = cpu_flags() if flags is None else frozenset(flags)
    return not gpus and "avx512_bf16" in flags and "amx_bf16" not in flags


def precision_cache_path():
    """The file remembering measured "auto" choices (None: ``$EMLNET_PRECISION_CACHE`` is set empty)."""
    path = os.environ.get(CACHE_ENV)
    if path is not None:
        return path or None
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(keras_home, "emlnet", "auto_precision.json")


def cpu_model():
    """The CPU's model name from /proc/cpuinfo ("unknown CPU" where unreadable)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def architecture_fingerprint(model):
    """A hash of what a model's speed depends on: its layer classes and weight shapes/dtypes, not values."""
    digest = hashlib.sha256()
    for layer in model._flatten_layers(include_self=True, recursive=True):
        digest.update(type(layer).__name__.encode())
        digest.update(str(getattr(layer, "dtype_policy", "")).encode())
        for weight in layer._trainable_variables + layer._non_trainable_variables:
            digest.update(f"{tuple(weight.shape)}{weight.dtype}".encode())
    return digest.hexdigest()[:16]


# Part of the cache key: raise it when what is measured changes, so older
# choices are measured again. 2: bfloat16 candidates before it applied every
# folded BatchNorm twice (`folding.fold_batch_norms(copy=True)`), so they
# measured slower than they are.
MEASUREMENT_VERSION = 2


def measurement_key(model, input_size, batch_size, *, flags=None):
    """A dict naming everything a float32/bfloat16 timing depends on (the cache key)."""
    import tensorflow as tf

    flags = cpu_flags() if flags is None else frozenset(flags)
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count()
    return {"cpu": cpu_model(), "cpu_flags": sorted(flags & _SPEED_FLAGS), "cpus": cpus,
            "tensorflow": tf.__version__, "model": architecture_fingerprint(model),
            "input_size": [int(v) for v in input_size], "batch_size": int(batch_size),
            "measurement": MEASUREMENT_VERSION}


def _key_digest(key):
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]


def _read_cache(path):
    try:
        with open(path, encoding="utf-8") as f:
            entries = json.load(f)
    except (OSError, ValueError):
        return {}  # absent or damaged: measure again (and rewrite it)
    return entries if isinstance(entries, dict) else {}


def cached_choice(cache_key, cache_path=None):
    """The PrecisionChoice stored for `cache_key`, or None (no cache, no entry)."""
    cache_path = cache_path or precision_cache_path()
    if not cache_path:
        return None
    entry = _read_cache(cache_path).get(_key_digest(cache_key))
    if not isinstance(entry, dict) or entry.get("precision") not in PRECISIONS:
        return None
    return PrecisionChoice(entry["precision"], f"auto: cached in {cache_path}, measured {entry.get('measured_at')}: "
                                               f"{entry.get('timing')}")


def remember_choice(cache_key, precision, timing, cache_path=None):
    """Stores a measured choice under `cache_key` (atomic rewrite; an unwritable cache only logs)."""
    from keras_emlnet import atomic_files

    cache_path = cache_path or precision_cache_path()
    if not cache_path:
        return
    entries = _read_cache(cache_path)
    entries[_key_digest(cache_key)] = {
        "key": cache_key, "precision": precision, "timing": timing,
        "measured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    try:
        os.makedirs(os.path.dirname(os.path.abspath(cache_path)), exist_ok=True)
        atomic_files.write_json_atomic(cache_path, entries)
    except OSError as error:
        import logging

        logging.getLogger(__name__).warning("could not remember the precision measurement in %s: %s",
                                            cache_path, error)


def choose_precision(precision=AUTO, *, flags=None, gpus=None, measure=None, cache_key=None, cache_path=None):
    """Resolves a precision setting to a PrecisionChoice.

    Args:
        precision: "auto", or an explicit "float32", "bfloat16", "float16".
        flags: CPU flags to judge by (default: this machine's, `cpu_flags()`).
        gpus: [(major, minor)] GPU compute capabilities (default: TensorFlow's
            visible GPUs, `gpu_capabilities()`).
        measure: optional callable precision -> seconds per image; with it,
            "auto" times float32 and bfloat16 and picks the faster.
        cache_key: with `measure`, a `measurement_key`: a choice stored under
            it is returned without measuring, a new measurement is stored.
        cache_path: the cache file (default `precision_cache_path()`).

    Raises:
        ValueError: an unknown precision.
    """
    if precision not in PRECISION_CHOICES:
        raise ValueError(f"precision must be one of {PRECISION_CHOICES}, got {precision!r}")
    if precision != AUTO:
        return PrecisionChoice(precision, "requested")
    pinned = os.environ.get(AUTO_ENV)
    if pinned:
        if pinned not in PRECISIONS:
            raise ValueError(f"${AUTO_ENV} must be one of {PRECISIONS}, got {pinned!r}")
        return PrecisionChoice(pinned, f"auto: ${AUTO_ENV}={pinned}")
    if measure is not None:
        if cache_key is not None:
            cached = cached_choice(cache_key, cache_path)
            if cached is not None:
                return cached
        seconds = {name: float(measure(name)) for name in ("float32", "bfloat16")}
        fastest = min(seconds, key=seconds.get)
        timing = ", ".join(f"{name} {value:.4g} s/image" for name, value in seconds.items())
        if cache_key is not None:
            remember_choice(cache_key, fastest, timing, cache_path)
        return PrecisionChoice(fastest, f"auto: measured faster ({timing})")
    gpus = gpu_capabilities() if gpus is None else list(gpus)
    if gpus:
        capability = min(tuple(g) for g in gpus)
        if capability >= BF16_GPU_CAPABILITY:
            return PrecisionChoice("bfloat16", f"auto: GPU compute capability {capability[0]}.{capability[1]} "
                                               "has bfloat16 tensor cores")
        return PrecisionChoice("float32", f"auto: GPU compute capability {capability[0]}.{capability[1]} "
                                          "has no bfloat16 tensor cores")
    flags = cpu_flags() if flags is None else frozenset(flags)
    if "amx_bf16" in flags:
        return PrecisionChoice("bfloat16", "auto: the CPU lists amx_bf16 (AMX bfloat16 tiles)")
    if "avx512_bf16" in flags:
        return PrecisionChoice("float32", "auto: the CPU lists avx512_bf16 without AMX and nothing was "
                                          "measured; float32 keeps maps exact")
    return PrecisionChoice("float32", "auto: the CPU lists no amx_bf16/avx512_bf16, bfloat16 would be emulated")


def choose_precision_by_batch(measure, max_batch_size, *, cache_key_for=None, cache_path=None):
    """`auto` for a caller running batches of 1 to `max_batch_size` images (a server batching requests).

    bfloat16 can lose at batch 1 and win at batch 8 (NASNet + DenseNet at
    96x128 on Zen 4: 0.64x, then 1.63x float32's speed). Both precisions are
    measured at 1 and at `max_batch_size` (`choose_precision` with `measure`,
    each size cached under its own key); where float32 wins at 1 and bfloat16
    at `max_batch_size`, the powers of two between are bisected for the
    smallest batch from which bfloat16 wins, and the choice says
    "float32 below batch n, bfloat16 from n".

    Args:
        measure: callable (precision, batch_size) -> seconds per image.
        max_batch_size: the largest batch the caller runs.
        cache_key_for: optional callable batch_size -> `measurement_key`.
        cache_path: the cache file (default `precision_cache_path()`).

    Returns:
        A PrecisionChoice; `bfloat16_from_batch` set only for a crossover.
    """
    max_batch_size = int(max_batch_size)
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
    choices = {}

    def choice_at(batch_size):
        if batch_size not in choices:
            choices[batch_size] = choose_precision(
                AUTO, measure=lambda name: measure(name, batch_size), cache_path=cache_path,
                cache_key=cache_key_for(batch_size) if cache_key_for else None)
        return choices[batch_size]

    smallest, largest = choice_at(1), choice_at(max_batch_size)
    if smallest.precision == largest.precision or max_batch_size == 1:
        return smallest if max_batch_size == 1 else PrecisionChoice(
            smallest.precision, f"batch 1: {smallest.reason}; batch {max_batch_size}: {largest.reason}")
    if smallest.precision == "bfloat16":
        # Not seen on any machine: keep the exact precision rather than guess a rule.
        return PrecisionChoice("float32", f"bfloat16 faster at batch 1 but not at {max_batch_size}, float32 "
                                          f"throughout; batch 1: {smallest.reason}; batch {max_batch_size}: "
                                          f"{largest.reason}")
    sizes = sorted({1, max_batch_size} | {2 ** k for k in range(1, max_batch_size.bit_length())
                                          if 2 ** k < max_batch_size})
    low, high = 0, len(sizes) - 1  # float32 wins at sizes[low], bfloat16 at sizes[high]
    while high - low > 1:
        middle = (low + high) // 2
        if choice_at(sizes[middle]).precision == "bfloat16":
            high = middle
        else:
            low = middle
    reasons = "; ".join(f"batch {size}: {choices[size].reason}" for size in sorted(choices))
    return PrecisionChoice("float32", reasons, bfloat16_from_batch=sizes[high])
