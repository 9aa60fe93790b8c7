"""A local model server speaking TF Serving's gRPC and REST APIs.

    python -m serving.server --model_base_path exports/emlnet --model_name emlnet \
        --grpc_port 8500 --rest_port 8501 [--enable_batching \
        --batching_parameters_file serving/batching_parameters.txt]

For machines where tensorflow_model_server (or its docker image) cannot run:
it serves the newest version under --model_base_path, picks up new version
folders without a restart, batches concurrent requests when asked, and
answers clients written for TF Serving unchanged (see the README's
"Serving" section). Binds 127.0.0.1 unless --host says
otherwise. A port of 0 takes any free port (logged); -1 turns that API off.
"""

import dataclasses

from serving.server import dispatch
from serving.server import request_batching
from serving.server import rest
from serving.server.dispatch import RequestDispatcher
from serving.server.grpc_service import start_grpc_server
from serving.server.model_registry import ModelRegistry
from serving.server.rest import RestServer

DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """Everything a ModelServer is started with (the CLI flags).

    Attributes:
        model_base_path: folder of integer version folders.
        model_name: name requests must use.
        host: address both APIs bind.
        grpc_port, rest_port: 0 for any free port, negative to disable.
        enable_batching: batch concurrent requests.
        batching_parameters_file: TF Serving batching-parameters text proto;
            None for TF Serving's defaults.
        file_system_poll_wait_seconds: how often new versions are looked for
            (<= 0: only at start).
        max_request_bytes: largest request accepted (gRPC message or REST body).
        grpc_max_workers: threads answering gRPC calls.
        max_images_per_request, max_request_pixels, max_response_bytes:
            per-request caps (see `dispatch.RequestDispatcher`), checked
            before the model runs; over one: RESOURCE_EXHAUSTED / HTTP 413.
        max_image_pixels: pixel limit of one encoded image, read from its
            header before decoding; None = `image_files.max_image_pixels()`
            (50 M, or $EMLNET_MAX_IMAGE_PIXELS).
        rest_api_num_threads: REST connections served at once.
        rest_api_timeout_in_ms: time a REST client has to send a request.
        tensorflow_intra_op_parallelism, tensorflow_inter_op_parallelism:
            TensorFlow's thread pools (0: TensorFlow's default, all cores
            each); set before TensorFlow starts, so only in a fresh process.
    """

    model_base_path: str
    model_name: str
    host: str = "127.0.0.1"
    grpc_port: int = 8500
    rest_port: int = 8501
    enable_batching: bool = False
    batching_parameters_file: str = None
    file_system_poll_wait_seconds: float = 1.0
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    grpc_max_workers: int = 16
    max_images_per_request: int = dispatch.DEFAULT_MAX_IMAGES_PER_REQUEST
    max_request_pixels: int = dispatch.DEFAULT_MAX_REQUEST_PIXELS
    max_response_bytes: int = dispatch.DEFAULT_MAX_RESPONSE_BYTES
    max_image_pixels: int = None
    rest_api_num_threads: int = rest.DEFAULT_NUM_THREADS
    rest_api_timeout_in_ms: int = int(rest.DEFAULT_TIMEOUT_S * 1000)
    tensorflow_intra_op_parallelism: int = 0
    tensorflow_inter_op_parallelism: int = 0


def set_tensorflow_threads(intra_op, inter_op):
    """Sizes TensorFlow's thread pools (0 leaves one as it is).

    Raises:
        ValueError: a size is set after TensorFlow has started in this process.
    """
    import tensorflow as tf

    threading_config = tf.config.threading
    for name, value, getter, setter in (
            ("tensorflow_intra_op_parallelism", intra_op, threading_config.get_intra_op_parallelism_threads,
             threading_config.set_intra_op_parallelism_threads),
            ("tensorflow_inter_op_parallelism", inter_op, threading_config.get_inter_op_parallelism_threads,
             threading_config.set_inter_op_parallelism_threads)):
        if value and getter() != value:
            try:
                setter(value)
            except RuntimeError as error:
                raise ValueError(f"--{name} must be set before TensorFlow starts in this process: {error}") from None


class ModelServer:
    """Registry + dispatcher + gRPC and REST front ends; a context manager.

    Attributes (after start): grpc_port, rest_port (bound ports or None),
    batching (BatchingOptions or None), registry.
    """

    def __init__(self, config, *, on_event=None):
        self.config = config
        self._on_event = on_event
        self.registry = None
        self.dispatcher = None
        self.grpc_port = None
        self.rest_port = None
        self._grpc_server = None
        self._rest_server = None

    @property
    def batching(self):
        return None if self.dispatcher is None else self.dispatcher.batching

    def start(self):
        """Loads the newest version and starts both APIs.

        Raises:
            FileNotFoundError: model_base_path or the batching file is missing.
            ValueError: the batching file does not parse.
            OSError: a port cannot be bound.
        """
        config = self.config
        set_tensorflow_threads(config.tensorflow_intra_op_parallelism, config.tensorflow_inter_op_parallelism)
        options = None
        if config.enable_batching:
            options = request_batching.BatchingOptions()
            if config.batching_parameters_file:
                options = request_batching.read_batching_parameters_file(config.batching_parameters_file)
        elif config.batching_parameters_file:
            raise ValueError("--batching_parameters_file needs --enable_batching")
        self.registry = ModelRegistry(
            config.model_base_path,
            config.model_name,
            poll_wait_seconds=config.file_system_poll_wait_seconds,
            on_event=self._on_event,
        )
        self.dispatcher = RequestDispatcher(
            self.registry, batching=options, max_request_bytes=config.max_request_bytes,
            max_images_per_request=config.max_images_per_request,
            max_request_pixels=config.max_request_pixels,
            max_response_bytes=config.max_response_bytes,
            max_image_pixels=config.max_image_pixels,
        )
        try:
            self.registry.start()
            if config.grpc_port >= 0:
                self._grpc_server, self.grpc_port = start_grpc_server(
                    self.dispatcher, host=config.host, port=config.grpc_port,
                    max_workers=config.grpc_max_workers,
                )
            if config.rest_port >= 0:
                self._rest_server = RestServer(
                    self.dispatcher, host=config.host, port=config.rest_port,
                    num_threads=config.rest_api_num_threads,
                    timeout_s=config.rest_api_timeout_in_ms / 1000,
                )
                self.rest_port = self._rest_server.port
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        """Stops both APIs (in-flight gRPC calls get 2 s), batching and polling."""
        if self._grpc_server is not None:
            self._grpc_server.stop(grace=2).wait()
            self._grpc_server = None
        if self._rest_server is not None:
            self._rest_server.stop()
            self._rest_server = None
        if self.dispatcher is not None:
            self.dispatcher.stop()
        if self.registry is not None:
            self.registry.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()
