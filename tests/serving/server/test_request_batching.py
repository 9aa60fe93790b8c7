"""serving.server.request_batching: TF Serving's batching-parameters format and the batch scheduler."""

import os
import threading
import time

import pytest

from serving.server import errors
from serving.server import request_batching
from tests.serving.helpers import REPO_ROOT


def test_shipped_batching_parameters_file_parses():
    options = request_batching.read_batching_parameters_file(os.path.join(REPO_ROOT, "serving", "batching_parameters.txt"))
    assert (options.max_batch_size, options.batch_timeout_micros) == (8, 5000)
    assert (options.max_enqueued_batches, options.num_batch_threads) == (100, 2)
    assert options.ignored_fields == ()


def test_missing_fields_take_tf_serving_defaults_and_unimplemented_ones_are_reported():
    options = request_batching.parse_batching_parameters(
        'max_batch_size { value: 3 }\nthread_pool_name { value: "pool" }\nallowed_batch_sizes: 3\n'
    )
    assert options.max_batch_size == 3
    assert (options.batch_timeout_micros, options.max_enqueued_batches) == (0, 10)
    assert options.ignored_fields == ("thread_pool_name", "allowed_batch_sizes")


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("max_batch_size { value: 8 }\nmax_batch_sise { value: 2 }", "max_batch_sise"),  # typo named
        ("max_batch_size: 8", "max_batch_size"),  # a wrapper, not a scalar, in TF Serving's schema
        ("max_batch_size { value: 0 }", "max_batch_size must be an integer >= 1"),
        ("num_batch_threads { value: -1 }", "num_batch_threads"),
    ],
)
def test_bad_batching_parameters_name_the_field(text, fragment):
    with pytest.raises(ValueError, match=fragment) as raised:
        request_batching.parse_batching_parameters(text, source="params.txt")
    assert "params.txt" in str(raised.value)


def test_shipped_models_config_parses_as_a_model_server_config():
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    with open(os.path.join(REPO_ROOT, "serving", "models.config")) as f:
        config = text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())
    (model,) = config.model_config_list.config
    assert (model.name, model.base_path, model.model_platform) == ("emlnet", "/models/emlnet", "tensorflow")
    assert model.model_version_policy.latest.num_versions == 1


class _Recorder:
    """process_batch that records each batch and answers payload * 10."""

    def __init__(self, gate=None):
        self.batches = []
        self.gate = gate

    def __call__(self, key, payloads):
        if self.gate is not None:
            self.gate.wait(10)
        self.batches.append((key, list(payloads)))
        return [payload * 10 for payload in payloads]


def _scheduler(process, **options):
    return request_batching.BatchScheduler(process, request_batching.BatchingOptions(**options))


def test_concurrent_tasks_are_merged_per_key_and_answered_in_order():
    recorder = _Recorder()
    scheduler = _scheduler(recorder, max_batch_size=4, batch_timeout_micros=200_000, num_batch_threads=1)
    try:
        futures = [scheduler.submit("a", i, 1) for i in range(3)] + [scheduler.submit("b", 7, 1)]
        assert [f.result(5) for f in futures] == [0, 10, 20, 70]
    finally:
        scheduler.stop()
    assert sorted((key, payloads) for key, payloads in recorder.batches) == [("a", [0, 1, 2]), ("b", [7])]


def test_a_full_batch_runs_without_waiting_for_the_timeout():
    recorder = _Recorder()
    scheduler = _scheduler(recorder, max_batch_size=2, batch_timeout_micros=30_000_000, num_batch_threads=1)
    try:
        start = time.monotonic()
        futures = [scheduler.submit("k", i, 1) for i in range(2)]
        assert [f.result(5) for f in futures] == [0, 10]
        assert time.monotonic() - start < 5  # far below the 30 s timeout
    finally:
        scheduler.stop()


def test_tasks_are_never_split_and_batches_respect_the_maximum():
    recorder = _Recorder()
    scheduler = _scheduler(recorder, max_batch_size=5, batch_timeout_micros=1_000_000, num_batch_threads=1)
    try:
        futures = [scheduler.submit("k", size, size) for size in (3, 2, 4)]
        [f.result(5) for f in futures]
        with pytest.raises(errors.InvalidArgument, match="larger than the maximum batch size 5"):
            scheduler.submit("k", 6, 6)
    finally:
        scheduler.stop()
    sizes = [sum(payloads) for _, payloads in recorder.batches]
    assert sizes == [5, 4]


def test_a_full_queue_answers_resource_exhausted():
    gate = threading.Event()
    recorder = _Recorder(gate)
    scheduler = _scheduler(recorder, max_batch_size=1, max_enqueued_batches=2, num_batch_threads=1)
    try:
        running = scheduler.submit("k", 0, 1)  # taken by the only thread, which blocks on the gate
        deadline = time.monotonic() + 5
        while scheduler._queued_items["k"] and time.monotonic() < deadline:
            time.sleep(0.01)
        queued = [scheduler.submit("k", i, 1) for i in (1, 2)]
        with pytest.raises(errors.ResourceExhausted, match="queue is full"):
            scheduler.submit("k", 3, 1)
        gate.set()
        assert running.result(5) == 0 and [f.result(5) for f in queued] == [10, 20]
        assert scheduler.submit("k", 4, 1).result(5) == 40  # room again
    finally:
        gate.set()
        scheduler.stop()


def test_a_failing_batch_fails_its_tasks_and_the_scheduler_goes_on():
    calls = []

    def process(key, payloads):
        calls.append(payloads)
        if len(calls) == 1:
            raise RuntimeError("model crashed")
        return payloads

    scheduler = _scheduler(process, max_batch_size=2, batch_timeout_micros=100_000, num_batch_threads=1)
    try:
        first = [scheduler.submit("k", i, 1) for i in range(2)]
        for future in first:
            with pytest.raises(RuntimeError, match="model crashed"):
                future.result(5)
        assert scheduler.submit("k", 9, 1).result(5) == 9
    finally:
        scheduler.stop()


def test_stop_fails_queued_tasks_with_unavailable():
    gate = threading.Event()
    scheduler = _scheduler(_Recorder(gate), max_batch_size=1, num_batch_threads=1)
    running = scheduler.submit("k", 0, 1)
    deadline = time.monotonic() + 5
    while scheduler._queued_items["k"] and time.monotonic() < deadline:
        time.sleep(0.01)
    waiting = scheduler.submit("k", 1, 1)
    stopper = threading.Thread(target=scheduler.stop)
    stopper.start()
    with pytest.raises(errors.Unavailable):
        waiting.result(5)
    gate.set()
    stopper.join(10)
    assert running.result(5) == 0
    with pytest.raises(errors.Unavailable):
        scheduler.submit("k", 2, 1)
