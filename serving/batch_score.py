"""Scores an image collection with a saved EML-NET model: one map per image at its original size.

    python -m serving.batch_score --model exports/emlnet/1 --images photos/ --out maps/
    python -m serving.batch_score --model runs/emlnet/emlnet.keras \
        --images 'photos/**/*.jpg' --out maps/ --format both --overlays \
        --precision bfloat16 --shard_index 0 --num_shards 4

Uses every local GPU (MirroredStrategy) or the CPU. Rerun the same command to
resume: images whose outputs all exist are skipped. Unreadable images, images
over the pixel limit (--max_image_pixels, read from the header before decoding)
and inputs that are not regular files are listed in batch_score_summary*.json
and skipped. See serving/batch/scoring.py.
"""

from absl import app, flags, logging

from keras_emlnet import cli
from keras_emlnet.inference.precision import PRECISION_CHOICES
from serving.batch.scoring import FORMATS, ScoreConfig

FLAGS = flags.FLAGS


COLLECTION_FLAGS = ("model", "images", "out", "format", "overlays", "batch_size")


def define_collection_flags(flag_values, *, batch_size_help):
    """--model --images --out --format --overlays --batch_size (`COLLECTION_FLAGS`): what every
    scoring CLI takes (serving.batch_score and serving.beam_score write the same files)."""
    flags.DEFINE_string("model", None, "`.keras` file or SavedModel version folder.", flag_values=flag_values)
    flags.DEFINE_string("images", None, "Folder (searched recursively) or glob pattern.", flag_values=flag_values)
    flags.DEFINE_string("out", None, "Output folder; names mirror the inputs' relative paths.",
                        flag_values=flag_values)
    flags.DEFINE_enum("format", "png", FORMATS, "png: 8-bit min-max; npy: float32 maps.", flag_values=flag_values)
    flags.DEFINE_bool("overlays", False, "Also write <name>_overlay.jpg heatmaps.", flag_values=flag_values)
    flags.DEFINE_integer("batch_size", 8, batch_size_help, lower_bound=1, flag_values=flag_values)


def define_flags(flag_values=FLAGS):
    """Defines this CLI's flags in `flag_values`.

    Called when the CLI runs, not at import: --model, --out, --batch_size, ...
    mean other things in train.evaluate, the training CLIs and the demo, and
    absl allows one definition of a name per process.
    """
    define_collection_flags(flag_values, batch_size_help="Images per replica per step.")
    flags.DEFINE_enum("precision", "auto", PRECISION_CHOICES, "Compute dtype: auto = bfloat16 only where "
                      "the hardware computes it faster (reduced ones: .keras only).", flag_values=flag_values)
    flags.DEFINE_integer("shard_index", 0, "This machine's shard.", lower_bound=0, flag_values=flag_values)
    flags.DEFINE_integer("num_shards", 1, "Machines sharing the collection.", lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer("writer_threads", 4, "Output-writing threads.", lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer("max_image_pixels", None,
                         "Images whose header declares more pixels are reported and skipped, never decoded "
                         "(default: $EMLNET_MAX_IMAGE_PIXELS or 50000000; 0 = no limit).",
                         lower_bound=0, flag_values=flag_values)
    cli.define_verbose_flag(flag_values)
    flags.DEFINE_integer("progress", None, "Deprecated, use --verbose (same values); wins when set.",
                         flag_values=flag_values)
    flags.mark_flags_as_required(["model", "images", "out"], flag_values=flag_values)


def main(argv):
    del argv
    from keras_emlnet.inference.progress import ThroughputProgress
    from serving.batch.scoring import score_collection, summary_path

    config = cli.config_from_flags(ScoreConfig)
    verbose = cli.verbosity_from_flags()

    def make_progress(total):
        logging.info("shard %d of %d: %d images to score", config.shard_index,
                     config.num_shards, total)
        return ThroughputProgress(total, unit="image", verbose=verbose).add

    summary = score_collection(config, make_progress=make_progress, logger=logging.warning)
    logging.info(
        "scored %d, already done %d, failed %d (%.1f images/s); summary: %s",
        summary["scored"], summary["already_done"], len(summary["failed"]),
        summary["images_per_s"], summary_path(config.out, config.shard_index, config.num_shards),
    )


if __name__ == "__main__":
    define_flags()
    app.run(main)
