"""keras_emlnet.inference.precision: the `auto` rule on injected hardware and measurements."""

import pytest

from keras_emlnet.inference import precision
from keras_emlnet.inference.precision import choose_precision

# This test machine's class: AVX-512 with avx512_bf16 (AMD Zen 4), and one without it.
ZEN4 = {"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}
SKYLAKE_X = {"avx2", "avx512f", "avx512_vnni"}


@pytest.fixture(autouse=True)
def unpinned(monkeypatch):
    monkeypatch.delenv(precision.AUTO_ENV, raising=False)


@pytest.mark.parametrize("flags, gpus, expected", [
    (ZEN4, [], "bfloat16"),
    (SKYLAKE_X | {"amx_tile", "amx_bf16"}, [], "bfloat16"),
    (SKYLAKE_X, [], "float32"),
    ({"avx2"}, [], "float32"),
    (set(), [], "float32"),
    (SKYLAKE_X, [(9, 0)], "bfloat16"),  # H100: the GPU decides, not the host CPU
    (ZEN4, [(7, 5)], "float32"),  # T4: no bfloat16 tensor cores
    (ZEN4, [(8, 0), (7, 0)], "float32"),  # mixed GPUs: the weakest decides
])
def test_auto_follows_the_hardware(flags, gpus, expected):
    choice = choose_precision("auto", flags=flags, gpus=gpus)
    assert choice.precision == expected
    assert choice.reason.startswith("auto: ")


def test_reasons_name_what_was_seen():
    assert "avx512_bf16" in choose_precision(flags=ZEN4, gpus=[]).reason
    assert "no amx_bf16/avx512_bf16" in choose_precision(flags=SKYLAKE_X, gpus=[]).reason
    assert "7.5" in choose_precision(flags=ZEN4, gpus=[(7, 5)]).reason


def test_a_measurement_wins_over_the_rule_both_ways():
    calls = []

    def measure(times):
        def run(name):
            calls.append(name)
            return times[name]
        return run

    slow_bf16 = choose_precision(flags=ZEN4, gpus=[], measure=measure({"float32": 1.0, "bfloat16": 2.9}))
    assert slow_bf16.precision == "float32" and "bfloat16 2.9 s/image" in slow_bf16.reason
    fast_bf16 = choose_precision(flags=SKYLAKE_X, gpus=[], measure=measure({"float32": 1.0, "bfloat16": 0.4}))
    assert fast_bf16.precision == "bfloat16"
    assert calls == ["float32", "bfloat16"] * 2


def test_explicit_precisions_and_the_pin(monkeypatch):
    assert choose_precision("float32", flags=ZEN4, gpus=[]) == precision.PrecisionChoice("float32", "requested")
    assert choose_precision("bfloat16", flags=set(), gpus=[]).precision == "bfloat16"
    monkeypatch.setenv(precision.AUTO_ENV, "float32")
    assert choose_precision("auto", flags=ZEN4, gpus=[]).precision == "float32"
    monkeypatch.setenv(precision.AUTO_ENV, "int8")
    with pytest.raises(ValueError, match="EMLNET_AUTO_PRECISION"):
        choose_precision("auto", flags=ZEN4, gpus=[])
    with pytest.raises(ValueError, match="precision must be one of"):
        choose_precision("fp8")


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu avx2 avx512_bf16\n\n"
                       "processor\t: 1\nflags\t\t: fpu avx2 avx512_bf16\n")
    assert precision.cpu_flags(str(cpuinfo)) == {"fpu", "avx2", "avx512_bf16"}
    assert precision.cpu_flags(str(tmp_path / "missing")) == frozenset()
