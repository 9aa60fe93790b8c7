"""`python -m serving.export`: exports a trained EMLNet `.keras` as a versioned TF-Serving SavedModel.

    python -m serving.export --model runs/emlnet/emlnet.keras --export_base exports/emlnet [--version 3]

See `serving.export.export` (the library this command calls).
"""

from absl import app, flags, logging

from keras_emlnet import cli
from serving.export.export import DEFAULT_PARITY_TOLERANCE, ExportConfig, export_saliency_model, load_keras_model

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS):
    """Defines this CLI's flags in `flag_values` when it runs, never at import."""
    flags.DEFINE_string("model", None, "EMLNet .keras file to export.", required=True,
                        flag_values=flag_values)
    flags.DEFINE_string("export_base", None, "Folder holding the version folders, e.g. exports/emlnet.",
                        required=True, flag_values=flag_values)
    flags.DEFINE_integer("version", None, "Version number (folder name); default: next free one.",
                         flag_values=flag_values)
    flags.DEFINE_string("model_name", None, "Model name in the warmup requests; default: export_base's name.",
                        flag_values=flag_values)
    flags.DEFINE_float("parity_tolerance", DEFAULT_PARITY_TOLERANCE,
                       "Largest allowed max |SavedModel - Keras| / max |Keras| on the check images.",
                       flag_values=flag_values)
    flags.DEFINE_integer("seed", 0, "Seed of the representative check and warmup images.",
                         flag_values=flag_values)
    flags.DEFINE_integer("max_image_pixels", None,
                         "Pixel limit the SavedModel checks on each image's header before decoding "
                         "(default: $EMLNET_MAX_IMAGE_PIXELS or 50000000; 0 = no limit).",
                         lower_bound=0, flag_values=flag_values)
    cli.define_verbose_flag(flag_values)
    flags.DEFINE_enum("precision", "auto", ["auto", "float32", "bfloat16"],
                      "Compute precision fixed in the SavedModel: auto = bfloat16 only where this machine "
                      "computes it faster (see keras_emlnet.inference.precision).", flag_values=flag_values)
    flags.DEFINE_integer("max_batch_size", 1,
                         "Largest batch the server will run: 1 without batching (TF Serving's default), else its "
                         "batching max_batch_size (8 in serving/batching_parameters.txt). auto measures at 1 and "
                         "at this size; where bfloat16 is faster only for larger batches, it computes those in "
                         "bfloat16 and smaller ones in float32.",
                         lower_bound=1, flag_values=flag_values)
    flags.DEFINE_bool("fold_batch_norms", True, "Export with BatchNorm folded into the convolutions before it.",
                      flag_values=flag_values)


def main(argv):
    del argv
    from keras_emlnet.inference.progress import StageLog

    config = cli.config_from_flags(ExportConfig)
    # No steps to count here: any verbosity above 0 logs each stage with its seconds.
    log = logging.info if cli.verbosity_from_flags() else None
    with StageLog(log).stage(f"loading {config.model}"):
        model = load_keras_model(config.model)
    version_dir, record = export_saliency_model(model, config, log=log)
    parity = record["parity"]
    logging.info(
        "exported %s version %d to %s in %s (%s) (max |SavedModel - Keras| = %.3g, relative %.3g; "
        "%d warmup requests)",
        record["model_name"], record["version"], version_dir, record["precision"], record["precision_reason"],
        parity["max_abs_diff"], parity["max_relative_diff"], record["warmup_requests"],
    )
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
