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
import signal
import threading

from serving import batching as batching_lib
from serving.dispatch import RequestDispatcher
from serving.grpc_service import start_grpc_server
from serving.model_registry import ModelRegistry
from serving.rest import RestServer

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
        options = None
        if config.enable_batching:
            options = batching_lib.BatchingOptions()
            if config.batching_parameters_file:
                options = batching_lib.read_batching_parameters_file(config.batching_parameters_file)
        elif config.batching_parameters_file:
            raise ValueError("--batching_parameters_file needs --enable_batching")
        self.registry = ModelRegistry(
            config.model_base_path,
            config.model_name,
            poll_wait_seconds=config.file_system_poll_wait_seconds,
            on_event=self._on_event,
        )
        self.dispatcher = RequestDispatcher(self.registry, batching=options,
                                            max_request_bytes=config.max_request_bytes)
        try:
            self.registry.start()
            if config.grpc_port >= 0:
                self._grpc_server, self.grpc_port = start_grpc_server(
                    self.dispatcher, host=config.host, port=config.grpc_port,
                    max_workers=config.grpc_max_workers,
                )
            if config.rest_port >= 0:
                self._rest_server = RestServer(self.dispatcher, host=config.host, port=config.rest_port)
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


def main(argv):
    del argv
    from absl import flags
    from absl import logging

    values = flags.FLAGS
    config = ServerConfig(
        model_base_path=values.model_base_path,
        model_name=values.model_name,
        host=values.host,
        grpc_port=values.grpc_port,
        rest_port=values.rest_port,
        enable_batching=values.enable_batching,
        batching_parameters_file=values.batching_parameters_file,
        file_system_poll_wait_seconds=values.file_system_poll_wait_seconds,
        max_request_bytes=values.max_request_bytes,
        grpc_max_workers=values.grpc_max_workers,
    )
    logging.info("server config: %s", dataclasses.asdict(config))
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    server = ModelServer(config, on_event=lambda message: logging.info("%s", message)).start()
    try:
        if server.batching is not None:
            logging.info("batching: %s", server.batching)
            if server.batching.ignored_fields:
                logging.warning("batching parameters not implemented here (ignored): %s",
                                server.batching.ignored_fields)
        if server.registry.serving_version is None:
            logging.warning("no version under %s yet; waiting for one", config.model_base_path)
        logging.info("ready: gRPC %s:%s REST %s:%s", config.host, server.grpc_port, config.host, server.rest_port)
        stopping.wait()
        logging.info("stopping")
    finally:
        server.stop()
    return 0


def define_flags(flag_values=None):
    """Defines this CLI's flags in `flag_values` (default: the global FLAGS) when it runs, never at import."""
    from absl import flags

    flag_values = flags.FLAGS if flag_values is None else flag_values

    flags.DEFINE_string("model_base_path", None, "Folder of integer version folders.", required=True,
                        flag_values=flag_values)
    flags.DEFINE_string("model_name", "emlnet", "Name clients use for the model.", flag_values=flag_values)
    flags.DEFINE_string("host", "127.0.0.1", "Address to bind (both APIs).", flag_values=flag_values)
    flags.DEFINE_integer("grpc_port", 8500, "gRPC port; 0 = any free port, -1 = off.",
                         flag_values=flag_values)
    flags.DEFINE_integer("rest_port", 8501, "REST port; 0 = any free port, -1 = off.",
                         flag_values=flag_values)
    flags.DEFINE_bool("enable_batching", False, "Batch concurrent requests.", flag_values=flag_values)
    flags.DEFINE_string("batching_parameters_file", None,
                        "TF Serving batching parameters (text proto), e.g. serving/batching_parameters.txt.",
                        flag_values=flag_values)
    flags.DEFINE_float("file_system_poll_wait_seconds", 1.0, "Seconds between looks for new versions.",
                       flag_values=flag_values)
    flags.DEFINE_integer("max_request_bytes", DEFAULT_MAX_REQUEST_BYTES, "Largest request accepted, in bytes.",
                         flag_values=flag_values)
    flags.DEFINE_integer("grpc_max_workers", 16, "Threads answering gRPC calls.", flag_values=flag_values)


if __name__ == "__main__":
    from absl import app

    define_flags()
    app.run(main)
