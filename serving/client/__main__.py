"""`python -m serving.client`: scores images through a server, writes maps and overlays.

    python -m serving.client --server 127.0.0.1:8500 --model_name emlnet \\
        photo1.jpg photo2.png --out maps/
    python -m serving.client --rest --server 127.0.0.1:8501 ... # REST instead of gRPC

Exits 1 when an image was skipped (unreadable or rejected). See
`serving.client.client` (the library this command calls).
"""

from absl import app, flags, logging

from keras_emlnet import cli
from serving.client.client import ClientConfig, run_client

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS):
    """Defines this CLI's flags in `flag_values` when it runs, never at import."""
    flags.DEFINE_string("server", "127.0.0.1:8500", "host:port of the gRPC (or, with --rest, REST) API.",
                        flag_values=flag_values)
    flags.DEFINE_string("model_name", "emlnet", "Model name on the server.", flag_values=flag_values)
    flags.DEFINE_string("out", None, "Folder for the PNGs.", required=True, flag_values=flag_values)
    flags.DEFINE_bool("rest", False, "Use the REST API instead of gRPC.", flag_values=flag_values)
    flags.DEFINE_string("signature_name", "serving_default", "Signature taking image_bytes.",
                        flag_values=flag_values)
    flags.DEFINE_integer("version", None, "Model version; default: the one served.", flag_values=flag_values)
    flags.DEFINE_integer("batch_size", 4, "Images per request.", lower_bound=1, flag_values=flag_values)
    flags.DEFINE_float("timeout_s", 60.0, "Deadline of one request in seconds.", flag_values=flag_values)
    flags.DEFINE_integer("max_image_pixels", None,
                         "Images whose header declares more pixels are skipped, never decoded "
                         "(default: $EMLNET_MAX_IMAGE_PIXELS or 50000000; 0 = no limit).",
                         lower_bound=0, flag_values=flag_values)


def main(argv):
    images = tuple(argv[1:])
    if not images:
        raise app.UsageError("give at least one IMAGE path")
    config = cli.config_from_flags(ClientConfig, overrides={"images": images})
    written, failed = run_client(config)
    for path, outputs in written.items():
        logging.info("%s -> %s", path, ", ".join(outputs))
    for path, reason in failed.items():
        logging.error("skipped %s: %s", path, reason)
    logging.info("%d written, %d skipped; outputs in %s", len(written), len(failed), config.out)
    return 1 if failed else 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
