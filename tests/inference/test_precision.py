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
    (ZEN4, [], "float32"),  # not settled by the flags: float32 unless measured
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
    assert "avx512_bf16 without AMX" in choose_precision(flags=ZEN4, gpus=[]).reason
    assert "amx_bf16" in choose_precision(flags=SKYLAKE_X | {"amx_bf16"}, gpus=[]).reason
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


def test_only_avx512_bf16_without_amx_or_gpu_needs_a_measurement(monkeypatch):
    assert precision.needs_measurement(flags=ZEN4, gpus=[])
    assert not precision.needs_measurement(flags=ZEN4 | {"amx_bf16"}, gpus=[])
    assert not precision.needs_measurement(flags=SKYLAKE_X, gpus=[])
    assert not precision.needs_measurement(flags=ZEN4, gpus=[(9, 0)])
    monkeypatch.setenv(precision.AUTO_ENV, "bfloat16")
    assert not precision.needs_measurement(flags=ZEN4, gpus=[])


def test_measured_auto_returns_the_model_it_measured_as_faster(monkeypatch):
    import numpy as np

    from keras_emlnet.inference import predictor
    from keras_emlnet.testing import tiny_emlnet

    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(ZEN4))
    monkeypatch.setattr(precision, "gpu_capabilities", lambda: [])
    model = tiny_emlnet((32, 48))
    chosen, choice, function = predictor.choose_inference_model(model, "auto")
    assert choice.reason.startswith("auto: measured faster (float32 ")
    timings = dict(part.rsplit(" ", 2)[:2] for part in choice.reason[len("auto: measured faster ("):-1].split(", "))
    assert choice.precision == min(timings, key=lambda name: float(timings[name]))
    conv = chosen.extractor.get_layer("tiny_a_features").get_layer("tiny_a_conv2")
    assert conv.compute_dtype == choice.precision and conv.use_bias  # the folded conv, in that precision
    images = np.random.default_rng(0).uniform(0, 255, (1, 32, 48, 3)).astype(np.float32)
    # the returned function runs the returned model (graph vs eager: bfloat16 rounding apart)
    np.testing.assert_allclose(np.asarray(function(images)), np.asarray(chosen(images)),
                               atol=0.03 if choice.precision == "bfloat16" else 1e-5)
    assert np.corrcoef(np.ravel(chosen(images)), np.ravel(model(images)))[0, 1] > 0.99
    # the float32 reference is untouched either way
    assert model.extractor.get_layer("tiny_a_features").get_layer("tiny_a_conv2").compute_dtype == "float32"
