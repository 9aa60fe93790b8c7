"""`python -m serving.server`: the development and test server, speaking TF Serving's gRPC and REST APIs.

    python -m serving.server --model_base_path exports/emlnet --model_name emlnet \
        [--enable_batching --batching_parameters_file serving/batching_parameters.txt]

For development and tests where the official tensorflow_model_server cannot
run; deploy with the official server (serving/Dockerfile). It also takes the
official server's flag names (--port, --rest_api_port, --model_config_file),
so one command line works with both. Runs until SIGTERM or Ctrl-C. See
`serving.server.server` (the library this command calls).
"""

import dataclasses
import signal
import threading

from absl import app, flags, logging

from keras_emlnet import cli
from serving.server import dispatch
from serving.server import rest
from serving.server.model_config import read_model_config
from serving.server.server import DEFAULT_MAX_REQUEST_BYTES, ModelServer, ServerConfig

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS):
    """Defines this CLI's flags in `flag_values` when it runs, never at import."""
    flags.DEFINE_string("model_base_path", None, "Folder of integer version folders (or --model_config_file).",
                        flag_values=flag_values)
    flags.DEFINE_string("model_name", "emlnet", "Name clients use for the model.", flag_values=flag_values)
    flags.DEFINE_string("model_config_file", None, "TF Serving model config (ModelServerConfig text proto naming "
                        "one model, e.g. serving/models.config): its name and base_path replace --model_name and "
                        "--model_base_path.", flag_values=flag_values)
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
    # Resource bounds (issue 19): over one, a request gets RESOURCE_EXHAUSTED / HTTP 413.
    flags.DEFINE_integer("max_images_per_request", dispatch.DEFAULT_MAX_IMAGES_PER_REQUEST,
                         "Most images in one request.", lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer("max_request_pixels", dispatch.DEFAULT_MAX_REQUEST_PIXELS,
                         "Most decoded pixels in one request (batch x largest H x largest W).",
                         lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer("max_response_bytes", dispatch.DEFAULT_MAX_RESPONSE_BYTES,
                         "Largest reply the server builds, in bytes.", lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer("max_image_pixels", None,
                         "Pixel limit of one image, read from its header before decoding "
                         "(default: $EMLNET_MAX_IMAGE_PIXELS or 50000000; 0 = no limit).",
                         lower_bound=0, flag_values=flag_values)
    flags.DEFINE_integer("rest_api_num_threads", rest.DEFAULT_NUM_THREADS,
                         "REST connections served at once.", lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer("rest_api_timeout_in_ms", int(rest.DEFAULT_TIMEOUT_S * 1000),
                         "Time a REST client has to send each request.", lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer("tensorflow_intra_op_parallelism", 0,
                         "Threads one TensorFlow op may use (0: all cores). On a small CPU 1, with "
                         "--tensorflow_inter_op_parallelism = cores, served faster (2 cores: p50 0.7x for one "
                         "client and for 8; WORKSPACE.md).",
                         lower_bound=0, flag_values=flag_values)
    flags.DEFINE_integer("tensorflow_inter_op_parallelism", 0,
                         "TensorFlow ops run at once (0: all cores).", lower_bound=0, flag_values=flag_values)
    # tensorflow_model_server's names for the ports, so a command line moves between the servers unchanged.
    flags.DEFINE_alias("port", "grpc_port", flag_values=flag_values)
    flags.DEFINE_alias("rest_api_port", "rest_port", flag_values=flag_values)


def model_overrides(flag_values=FLAGS):
    """{model_name, model_base_path} read from --model_config_file; {} without it.

    Raises:
        cli.FlagError: neither --model_base_path nor --model_config_file, both,
            or a config file the local server cannot serve (names the flag).
    """
    config_file = flag_values.model_config_file
    if config_file is None:
        if flag_values.model_base_path is None:
            raise cli.FlagError("give --model_base_path or --model_config_file")
        return {}
    if flag_values.model_base_path is not None or flag_values["model_name"].present:
        raise cli.FlagError("--model_config_file names the model: leave out --model_base_path and --model_name")
    try:
        model = read_model_config(config_file)
    except (OSError, ValueError) as error:
        raise cli.FlagError(f"--model_config_file: {error}") from None
    if model.ignored_fields:
        logging.warning("%s: fields not implemented here (ignored): %s", config_file, model.ignored_fields)
    return {"model_name": model.name, "model_base_path": model.base_path}


def main(argv):
    del argv
    config = cli.config_from_flags(ServerConfig, overrides=model_overrides())
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


if __name__ == "__main__":
    define_flags()
    app.run(main)
