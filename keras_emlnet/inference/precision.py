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
passes `measure`, and the faster measured precision wins over the rule.
Every choice carries its reason, which the CLIs log and record.
"""

import dataclasses
import os

PRECISIONS = ("float32", "bfloat16", "float16")
AUTO = "auto"
AUTO_ENV = "EMLNET_AUTO_PRECISION"
PRECISION_CHOICES = (AUTO,) + PRECISIONS
# CPU flags (as /proc/cpuinfo spells them) with native bfloat16 arithmetic.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
# The first GPU generation with bfloat16 tensor cores (Ampere).
BF16_GPU_CAPABILITY = (8, 0)


@dataclasses.dataclass(frozen=True)
class PrecisionChoice:
    """The precision picked and why."""

    precision: str
    reason: str

    def __str__(self):
        return f"{self.precision} ({self.reason})"


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
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
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


def choose_precision(precision=AUTO, *, flags=None, gpus=None, measure=None):
    """Resolves a precision setting to a PrecisionChoice.

    Args:
        precision: "auto", or an explicit "float32", "bfloat16", "float16".
        flags: CPU flags to judge by (default: this machine's, `cpu_flags()`).
        gpus: [(major, minor)] GPU compute capabilities (default: TensorFlow's
            visible GPUs, `gpu_capabilities()`).
        measure: optional callable precision -> seconds per image; with it,
            "auto" times float32 and bfloat16 and picks the faster.

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
        seconds = {name: float(measure(name)) for name in ("float32", "bfloat16")}
        fastest = min(seconds, key=seconds.get)
        timing = ", ".join(f"{name} {value:.4g} s/image" for name, value in seconds.items())
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
