"""Scores an image collection with Apache Beam's RunInference: the files `serving.batch_score` writes.

    python -m serving.beam_score --model runs/emlnet/emlnet.keras --images 'photos/**/*.jpg' \
        --out maps/ --format both --overlays \
        --runner=DirectRunner --direct_running_mode=multi_processing --direct_num_workers=2

Flags this CLI does not define are Beam pipeline options (`--runner=DataflowRunner
--project=... --region=... --temp_location=gs://...`, see README.md), so the
same command runs on DataflowRunner, FlinkRunner or SparkRunner. Paths may be
local, gs:// or s3:// (with Beam's [gcp] / [aws] extras). Rerun the same command
to resume; unreadable images go to the dead-letter list in
batch_score_summary.json. See serving/beam/pipeline.py.
"""

from absl import app, flags, logging

from keras_emlnet import cli
from keras_emlnet.inference.precision import PRECISION_CHOICES
from serving import batch_score

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS):
    """Defines this CLI's flags in `flag_values` (when it runs, not at import)."""
    batch_score.define_collection_flags(flag_values, batch_size_help="Images per model call on a worker.")
    for name in batch_score.COLLECTION_FLAGS:  # listed by this CLI's --help, not only --helpfull
        flags.declare_key_flag(name, flag_values=flag_values)
    flags.DEFINE_enum("precision", "auto", PRECISION_CHOICES,
                      "Compute dtype, chosen on each worker: auto = bfloat16 only where that worker's hardware "
                      "computes it faster (keras_emlnet.inference.precision), else float32; reduced precisions "
                      "need a .keras model.", flag_values=flag_values)
    flags.mark_flags_as_required(["model", "images", "out"], flag_values=flag_values)


def parse_flags(argv):
    """This CLI's flags; everything else is left for Beam's PipelineOptions."""
    return FLAGS(argv, known_only=True)


def main(argv):
    from serving.batch.scoring import summary_path
    from serving.beam.pipeline import BeamScoreConfig, run

    config = cli.config_from_flags(BeamScoreConfig)
    pipeline_args = argv[1:]
    summary = run(config, pipeline_args, logger=logging.warning)
    logging.info(
        "scored %d, already done %d, dead letters %d (%.1f images/s, %s); summary: %s",
        summary["scored"], summary["already_done"], summary["failed_count"],
        summary["images_per_s"], summary["runner"], summary_path(config.out, 0, 1),
    )


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=parse_flags)
