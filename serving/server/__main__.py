"""`python -m serving.server`: the command line of `serving.server.server`."""

import dataclasses
import signal
import threading

from serving.server.server import DEFAULT_MAX_REQUEST_BYTES, ModelServer, ServerConfig


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
