"""`python -m serving.export`: the command line of `serving.export.export`."""

from serving.export.export import DEFAULT_PARITY_TOLERANCE, ExportConfig, export_saliency_model, load_keras_model


def main(argv):
    del argv
    from absl import flags
    from absl import logging

    values = flags.FLAGS
    config = ExportConfig(
        model=values.model,
        export_base=values.export_base,
        version=values.version,
        model_name=values.model_name,
        parity_tolerance=values.parity_tolerance,
        seed=values.seed,
    )
    model = load_keras_model(config.model)
    version_dir, record = export_saliency_model(model, config)
    parity = record["parity"]
    logging.info(
        "exported %s version %d to %s (max |SavedModel - Keras| = %.3g, relative %.3g; %d warmup requests)",
        record["model_name"], record["version"], version_dir,
        parity["max_abs_diff"], parity["max_relative_diff"], record["warmup_requests"],
    )
    return 0
def define_flags(flag_values=None):
    """Defines this CLI's flags in `flag_values` (default: the global FLAGS) when it runs, never at import."""
    from absl import flags

    flag_values = flags.FLAGS if flag_values is None else flag_values

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
if __name__ == "__main__":
    from absl import app

    define_flags()
    app.run(main)
