"""keras_emlnet.inference.precision: the `auto` rule on injected hardware and measurements."""

import pytest

from keras_emlnet.inference import precision
from keras_emlnet.inference.precision import choose_precision

# This test machine's class: AVX-512 with avx512_bf16 (AMD Zen 4), and one without it.
ZEN4 = {"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}
SKYLAKE_X = {"avx2", "avx512f", "avx512_vnni"}


@pytest.fixture(autouse=True)
def unpinned(monkeypatch, tmp_path):
    monkeypatch.delenv(precision.AUTO_ENV, raising=False)
    # measurements are remembered in a per-test file, never in the user's cache
    monkeypatch.setenv(precision.CACHE_ENV, str(tmp_path / "auto_precision_cache.json"))


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


def test_a_measurement_is_remembered_per_key(tmp_path, monkeypatch):
    cache = str(tmp_path / "cache" / "auto_precision.json")
    calls = []

    def measure(name):
        calls.append(name)
        return {"float32": 2.0, "bfloat16": 1.0}[name]

    key = {"cpu": "test", "model": "abc", "input_size": [96, 128], "batch_size": 1}
    first = choose_precision("auto", measure=measure, cache_key=key, cache_path=cache)
    assert first.precision == "bfloat16" and sorted(calls) == ["bfloat16", "float32"]
    second = choose_precision("auto", measure=measure, cache_key=dict(key), cache_path=cache)
    assert len(calls) == 2  # not measured again
    assert second.precision == "bfloat16"
    assert second.reason.startswith(f"auto: cached in {cache}, measured ") and "float32 2 s/image" in second.reason
    # another input size is another measurement; the first entry stays
    third = choose_precision("auto", measure=lambda name: {"float32": 1.0, "bfloat16": 3.0}[name],
                             cache_key=dict(key, input_size=[480, 640]), cache_path=cache)
    assert third.precision == "float32"
    assert choose_precision("auto", measure=measure, cache_key=key, cache_path=cache).precision == "bfloat16"
    assert len(calls) == 2
    # the pin still wins over the cache
    monkeypatch.setenv(precision.AUTO_ENV, "float32")
    assert choose_precision("auto", measure=measure, cache_key=key, cache_path=cache).precision == "float32"


def test_a_damaged_or_disabled_cache_measures(tmp_path, monkeypatch):
    cache = tmp_path / "auto_precision.json"
    cache.write_text("{not json")
    calls = []

    def measure(name):
        calls.append(name)
        return {"float32": 1.0, "bfloat16": 2.0}[name]

    key = {"model": "abc"}
    assert choose_precision("auto", measure=measure, cache_key=key, cache_path=str(cache)).precision == "float32"
    assert precision.cached_choice(key, str(cache)).precision == "float32"  # rewritten whole
    monkeypatch.setenv(precision.CACHE_ENV, "")
    assert precision.precision_cache_path() is None
    choose_precision("auto", measure=measure, cache_key=key)
    choose_precision("auto", measure=measure, cache_key=key)
    assert len(calls) == 6  # no cache: every call measures
    monkeypatch.delenv(precision.CACHE_ENV)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    assert precision.precision_cache_path() == str(tmp_path / "keras" / "emlnet" / "auto_precision.json")


def test_the_key_follows_architecture_and_size_not_weights():
    from keras_emlnet.models.emlnet import build_emlnet
    from keras_emlnet.testing import tiny_emlnet, tiny_encoder

    a, b = tiny_emlnet((32, 48)), tiny_emlnet((32, 48))
    b.set_weights([w + 1.0 for w in b.get_weights()])
    key = precision.measurement_key(a, (32, 48), 1, flags=ZEN4)
    assert precision.measurement_key(b, (32, 48), 1, flags=ZEN4) == key
    assert precision.measurement_key(a, (64, 96), 1, flags=ZEN4) != key
    assert precision.measurement_key(a, (32, 48), 2, flags=ZEN4) != key
    assert precision.measurement_key(a, (32, 48), 1, flags=ZEN4 | {"amx_bf16"}) != key
    one_encoder = build_emlnet([tiny_encoder()], output_mode="minmax")
    assert precision.measurement_key(one_encoder, (32, 48), 1, flags=ZEN4)["model"] != key["model"]


def test_choices_measured_by_an_older_measurement_are_measured_again(monkeypatch, tmp_path):
    from keras_emlnet.testing import tiny_emlnet

    cache = str(tmp_path / "auto_precision.json")
    key = precision.measurement_key(tiny_emlnet((32, 48)), (32, 48), 1, flags=ZEN4)
    precision.remember_choice(key, "bfloat16", "float32 2 s, bfloat16 1 s", cache_path=cache)
    assert precision.cached_choice(key, cache_path=cache).precision == "bfloat16"
    monkeypatch.setattr(precision, "MEASUREMENT_VERSION", precision.MEASUREMENT_VERSION + 1)
    newer = precision.measurement_key(tiny_emlnet((32, 48)), (32, 48), 1, flags=ZEN4)
    assert newer != key and precision.cached_choice(newer, cache_path=cache) is None


def test_a_remembered_choice_builds_and_traces_only_the_winner(monkeypatch, tmp_path):
    from keras_emlnet.inference import predictor
    from keras_emlnet.testing import tiny_emlnet

    monkeypatch.setenv(precision.CACHE_ENV, str(tmp_path / "auto_precision.json"))
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(ZEN4))
    monkeypatch.setattr(precision, "gpu_capabilities", lambda: [])
    made = []

    def make_function(model, name):
        made.append(name)
        return lambda x: model(x, training=False)

    model = tiny_emlnet((32, 48))
    _, measured, _ = predictor.choose_inference_model(model, "auto", make_function=make_function)
    assert sorted(made) == ["bfloat16", "float32"]
    made.clear()
    chosen, again, _ = predictor.choose_inference_model(tiny_emlnet((32, 48)), "auto", make_function=make_function)
    assert made == [measured.precision]
    assert again.precision == measured.precision and again.reason.startswith("auto: cached in ")
    conv = chosen.extractor.get_layer("tiny_a_features").get_layer("tiny_a_conv2")
    assert conv.compute_dtype == measured.precision and conv.use_bias  # folded, in the remembered precision


def _by_batch_measure(bfloat16_from, calls):
    """Seconds per image where bfloat16 is faster exactly from `bfloat16_from` images on."""
    def measure(name, batch_size):
        calls.append((name, batch_size))
        faster = batch_size >= bfloat16_from
        return {"float32": 1.0, "bfloat16": 0.5 if faster else 2.0}[name]
    return measure


@pytest.mark.parametrize("max_batch_size, bfloat16_from, measured", [
    (8, 4, {1, 2, 4, 8}),
    (16, 4, {1, 2, 4, 16}),  # bisected: 8 is never timed
    (16, 16, {1, 4, 8, 16}),
    (6, 5, {1, 2, 4, 6}),  # a largest size that is no power of two
    (8, 2, {1, 2, 8}),
])
def test_by_batch_finds_the_smallest_batch_where_bfloat16_wins(max_batch_size, bfloat16_from, measured):
    calls = []
    choice = precision.choose_precision_by_batch(_by_batch_measure(bfloat16_from, calls), max_batch_size)
    expected_from = 6 if bfloat16_from == 5 else bfloat16_from  # 1, 2, 4 and 6 are the candidates
    assert (choice.precision, choice.bfloat16_from_batch) == ("float32", expected_from)
    assert {batch for _, batch in calls} == measured
    assert choice.description == f"float32 below batch {expected_from}, bfloat16 from {expected_from}"
    assert "batch 1: auto: measured faster (float32 1 s/image, bfloat16 2 s/image)" in choice.reason
    assert str(choice).startswith(choice.description + " (")


def test_by_batch_without_a_crossover_is_one_precision(monkeypatch):
    calls = []
    everywhere = precision.choose_precision_by_batch(_by_batch_measure(1, calls), 8)
    assert (everywhere.precision, everywhere.bfloat16_from_batch) == ("bfloat16", None)
    assert everywhere.description == "bfloat16" and {batch for _, batch in calls} == {1, 8}
    nowhere = precision.choose_precision_by_batch(_by_batch_measure(99, []), 8)
    assert (nowhere.precision, nowhere.bfloat16_from_batch) == ("float32", None)
    assert "batch 8: auto: measured faster" in nowhere.reason
    # bfloat16 ahead only at batch 1: the exact precision throughout
    def backwards(name, batch_size):
        return {"float32": 1.0, "bfloat16": 0.5 if batch_size == 1 else 2.0}[name]
    odd = precision.choose_precision_by_batch(backwards, 8)
    assert (odd.precision, odd.bfloat16_from_batch) == ("float32", None) and "not at 8" in odd.reason
    single = precision.choose_precision_by_batch(_by_batch_measure(4, []), 1)
    assert single.precision == "float32" and single.reason.startswith("auto: measured faster")
    monkeypatch.setenv(precision.AUTO_ENV, "float32")  # the pin wins at every size
    pinned = precision.choose_precision_by_batch(_by_batch_measure(4, calls := []), 8)
    assert (pinned.precision, pinned.bfloat16_from_batch, calls) == ("float32", None, [])
    with pytest.raises(ValueError, match="max_batch_size"):
        precision.choose_precision_by_batch(_by_batch_measure(4, []), 0)


def test_by_batch_remembers_each_batch_size(tmp_path):
    cache = str(tmp_path / "auto_precision.json")
    calls = []

    def key(batch_size):
        return {"cpu": "test", "model": "abc", "input_size": [96, 128], "batch_size": batch_size}

    first = precision.choose_precision_by_batch(_by_batch_measure(4, calls), 8, cache_key_for=key,
                                                cache_path=cache)
    measured = len(calls)
    second = precision.choose_precision_by_batch(_by_batch_measure(4, calls), 8, cache_key_for=key,
                                                 cache_path=cache)
    assert len(calls) == measured  # every size came from the cache
    assert second.bfloat16_from_batch == first.bfloat16_from_batch == 4
    assert "cached in" in second.reason
