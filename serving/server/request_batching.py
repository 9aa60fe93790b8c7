"""Dynamic batching of concurrent requests, configured like TF Serving.

Requests that arrive close together for the same (version, signature, input
shapes) are merged into one model call: a batch is run as soon as it holds
`max_batch_size` items or its oldest request has waited `batch_timeout_micros`,
on one of `num_batch_threads` threads. A request is never split across
batches; one larger than `max_batch_size` is rejected (as TF Serving does
without large-batch splitting). The queue of a key holds at most
`max_enqueued_batches * max_batch_size` items; past that a request gets
RESOURCE_EXHAUSTED instead of waiting without bound.

The options are read from TF Serving's own batching-parameters file (text
format of `tensorflow.serving.BatchingParameters`), so the file shipped for the
official server configures this one too.
"""

import collections
import concurrent.futures
import dataclasses
import threading
import time

from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import message_factory
from google.protobuf import text_format
from google.protobuf import wrappers_pb2

from serving.server import errors

# Fields of tensorflow.serving.BatchingParameters (session_bundle_config.proto)
# that this scheduler implements, and their defaults in TF Serving
# (SharedBatchScheduler::QueueOptions), used when the file leaves one out.
_IMPLEMENTED_DEFAULTS = {
    "max_batch_size": 1000,
    "batch_timeout_micros": 0,
    "max_enqueued_batches": 10,
    "num_batch_threads": 2,  # TF Serving: the number of cores (2 here).
}
# Fields of the message that parse but do not change this scheduler.
_PARSED_ONLY = ("thread_pool_name", "allowed_batch_sizes", "pad_variable_length_inputs")


@dataclasses.dataclass(frozen=True)
class BatchingOptions:
    """How requests are batched (see the module docstring).

    Attributes:
        max_batch_size: most items (images) in one model call.
        batch_timeout_micros: longest a request waits for others to join.
        max_enqueued_batches: queue bound, in batches of max_batch_size.
        num_batch_threads: batches run concurrently.
        ignored_fields: fields set in the parsed file that this scheduler
            does not implement (the server logs them).
    """

    max_batch_size: int = _IMPLEMENTED_DEFAULTS["max_batch_size"]
    batch_timeout_micros: int = _IMPLEMENTED_DEFAULTS["batch_timeout_micros"]
    max_enqueued_batches: int = _IMPLEMENTED_DEFAULTS["max_enqueued_batches"]
    num_batch_threads: int = _IMPLEMENTED_DEFAULTS["num_batch_threads"]
    ignored_fields: tuple = ()

    def __post_init__(self):
        for name in _IMPLEMENTED_DEFAULTS:
            value = getattr(self, name)
            minimum = 0 if name == "batch_timeout_micros" else 1
            if not isinstance(value, int) or value < minimum:
                raise ValueError(f"batching parameter {name} must be an integer >= {minimum}, got {value!r}")


def _batching_parameters_class():
    """The BatchingParameters message class.

    tensorflow-serving-api does not ship session_bundle_config_pb2, so the
    message is declared here from its published schema (same names, numbers
    and wrapper types) and text_format parses the file exactly as the
    official server's parser does, rejecting unknown fields by name.
    """
    try:  # a build of the API that does ship it wins
        from tensorflow_serving.servables.tensorflow import session_bundle_config_pb2

        return session_bundle_config_pb2.BatchingParameters
    except ImportError:
        pass
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    proto_file = descriptor_pb2.FileDescriptorProto(
        name="serving/batching_parameters.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    message = proto_file.message_type.add(name="BatchingParameters")
    field_type = descriptor_pb2.FieldDescriptorProto
    fields = [
        ("max_batch_size", 1, ".google.protobuf.Int64Value", None),
        ("batch_timeout_micros", 2, ".google.protobuf.Int64Value", None),
        ("max_enqueued_batches", 3, ".google.protobuf.Int64Value", None),
        ("num_batch_threads", 4, ".google.protobuf.Int64Value", None),
        ("thread_pool_name", 5, ".google.protobuf.StringValue", None),
        ("allowed_batch_sizes", 6, None, field_type.TYPE_INT64),
        ("pad_variable_length_inputs", 7, None, field_type.TYPE_BOOL),
    ]
    for name, number, type_name, scalar_type in fields:
        field = message.field.add(name=name, number=number)
        if type_name:
            field.type, field.type_name = field_type.TYPE_MESSAGE, type_name
            field.label = field_type.LABEL_OPTIONAL
        else:
            field.type = scalar_type
            repeated = name == "allowed_batch_sizes"
            field.label = field_type.LABEL_REPEATED if repeated else field_type.LABEL_OPTIONAL
    pool.Add(proto_file)
    descriptor = pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters")
    return message_factory.GetMessageClass(descriptor)


def parse_batching_parameters(text, *, source="batching parameters"):
    """Parses TF Serving's batching-parameters text proto into BatchingOptions.

    Args:
        text: the file's contents, e.g. ``max_batch_size { value: 8 }``.
        source: name used in error messages (the file path).

    Returns:
        BatchingOptions; fields left out take TF Serving's defaults.

    Raises:
        ValueError: the text does not parse (the message names the field and
            line) or a value is out of range.
    """
    message = _batching_parameters_class()()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as error:
        raise ValueError(f"{source}: {error}") from error
    values = {}
    for name, default in _IMPLEMENTED_DEFAULTS.items():
        values[name] = int(getattr(message, name).value) if message.HasField(name) else default
    ignored = []
    for name in _PARSED_ONLY:
        field = getattr(message, name)
        is_set = message.HasField(name) if name == "thread_pool_name" else bool(field)
        if is_set:
            ignored.append(name)
    try:
        return BatchingOptions(**values, ignored_fields=tuple(ignored))
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from error


def read_batching_parameters_file(path):
    """parse_batching_parameters over a file; errors name the path."""
    with open(path, encoding="utf-8") as f:
        return parse_batching_parameters(f.read(), source=str(path))


@dataclasses.dataclass
class _Task:
    payload: object
    size: int
    future: concurrent.futures.Future
    enqueued_at: float


class BatchScheduler:
    """Merges concurrent tasks with equal keys into batches.

    Args:
        process_batch: ``fn(key, payloads) -> results``, one result per
            payload, in order; an exception fails every task of that batch.
        options: BatchingOptions.
    """

    def __init__(self, process_batch, options):
        self._process_batch = process_batch
        self._options = options
        self._queues = collections.OrderedDict()  # key -> deque of _Task
        self._queued_items = collections.Counter()  # key -> items waiting
        self._condition = threading.Condition()
        self._stopped = False
        self._threads = [
            threading.Thread(target=self._run_worker, name=f"batch-{i}", daemon=True)
            for i in range(options.num_batch_threads)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def options(self):
        return self._options

    def submit(self, key, payload, size):
        """Queues `payload` (holding `size` items) under `key`; returns a Future.

        Raises:
            InvalidArgument: size is larger than max_batch_size.
            ResourceExhausted: the queue for `key` is full.
            Unavailable: the scheduler is stopped.
        """
        options = self._options
        if size > options.max_batch_size:
            raise errors.InvalidArgument(
                f"batch of {size} items is larger than the maximum batch size {options.max_batch_size}"
            )
        future = concurrent.futures.Future()
        with self._condition:
            if self._stopped:
                raise errors.Unavailable("the server is shutting down")
            capacity = options.max_enqueued_batches * options.max_batch_size
            if self._queued_items[key] + size > capacity:
                raise errors.ResourceExhausted(
                    f"the batching queue is full ({self._queued_items[key]} items waiting, "
                    f"at most {capacity}); retry later"
                )
            self._queues.setdefault(key, collections.deque()).append(
                _Task(payload, size, future, time.monotonic())
            )
            self._queued_items[key] += size
            self._condition.notify_all()
        return future

    def stop(self):
        """Stops the workers; tasks still queued fail with Unavailable."""
        with self._condition:
            self._stopped = True
            pending = [task for queue in self._queues.values() for task in queue]
            self._queues.clear()
            self._queued_items.clear()
            self._condition.notify_all()
        for task in pending:
            task.future.set_exception(errors.Unavailable("the server is shutting down"))
        for thread in self._threads:
            thread.join()

    def _next_batch(self):
        """Blocks until a batch is due; returns (key, tasks) or None on stop."""
        timeout = self._options.batch_timeout_micros / 1e6
        with self._condition:
            while not self._stopped:
                if not self._queues:
                    self._condition.wait()
                    continue
                # A full batch runs at once; otherwise the key whose oldest
                # task has waited longest runs when its timeout is up.
                max_size = self._options.max_batch_size
                key = next((k for k in self._queues if self._queued_items[k] >= max_size), None)
                if key is None:
                    key = min(self._queues, key=lambda k: self._queues[k][0].enqueued_at)
                    wait = self._queues[key][0].enqueued_at + timeout - time.monotonic()
                    if wait > 0:
                        self._condition.wait(wait)
                        continue
                queue = self._queues[key]
                tasks, items = [], 0
                while queue and items + queue[0].size <= self._options.max_batch_size:
                    task = queue.popleft()
                    tasks.append(task)
                    items += task.size
                self._queued_items[key] -= items
                if not queue:
                    del self._queues[key]
                    del self._queued_items[key]
                return key, tasks
        return None

    def _run_worker(self):
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            key, tasks = batch
            try:
                results = self._process_batch(key, [task.payload for task in tasks])
            except BaseException as error:  # delivered to every waiting caller
                for task in tasks:
                    task.future.set_exception(error)
                continue
            for task, result in zip(tasks, results):
                task.future.set_result(result)
