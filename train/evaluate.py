"""Evaluates a saliency model on a benchmark split: nine metrics, baselines, tables.

    python -m train.evaluate --model runs/emlnet/emlnet.keras --data_dir data/salicon \
        --dataset salicon --split val
    python -m train.evaluate --model exports/emlnet/1 --data_dir data/CAT2000 \
        --dataset cat2000 --split val --baseline_maps published/SAM-ResNet --out eval/cat2000

Prints the table (columns in the MIT benchmark's order, as the EML-NET paper's
tables) with a center-bias row and, with --baseline_maps, a row for another
model's maps; writes results.md, results.csv, results.json (with per-image
scores) and config.json to --out (default: <model's folder>/eval_<dataset>_<split>),
and with --report report.html (table beside the paper's numbers, gallery of
the best and worst images; keras_emlnet/evaluation/report.py).
CAT2000 is also reported per category. See keras_emlnet/evaluation/evaluate.py.
"""

import os
import sys

from absl import app, flags, logging

from keras_emlnet import cli
from keras_emlnet.evaluation.baselines import DEFAULT_CENTER_BIAS_SIGMA
from keras_emlnet.evaluation.evaluate import SHUFFLED_OTHER_IMAGES
from keras_emlnet.inference.predictor import PRECISIONS
from train import flags_common

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS):
    """Defines this CLI's flags in `flag_values`.

    Called when the CLI runs, not at import: its --model, --out, --batch_size,
    --seed, ... mean other things than the same names in the training CLIs
    and serving.batch_score, and absl allows one definition per process. The
    dataset flags are `train.flags_common`'s, shared with the training CLIs.
    """
    flags.DEFINE_string("model", None, "`.keras` file or SavedModel version folder.", flag_values=flag_values)
    flags_common.define_data_flags(flag_values, dataset_default=None)
    flags.DEFINE_string("split", "val", "Split with ground truth: val, train (all: MIT1003, CAT2000).",
                        flag_values=flag_values)
    flags.DEFINE_string("out", None, "Output folder (default: <model folder>/eval_<dataset>_<split>).",
                        flag_values=flag_values)
    flags.DEFINE_string("model_name", None, "Row label of the model (default: from --model).",
                        flag_values=flag_values)
    flags.DEFINE_string("baseline_maps", None, "Folder of another model's maps, by image name.",
                        flag_values=flag_values)
    flags.DEFINE_string("baseline_name", None, "Row label of --baseline_maps (default: folder name).",
                        flag_values=flag_values)
    flags.DEFINE_float("center_bias_sigma", DEFAULT_CENTER_BIAS_SIGMA,
                       "Center-bias Gaussian sigma, fraction of image height/width.", flag_values=flag_values)
    flags.DEFINE_integer("shuffled_others", SHUFFLED_OTHER_IMAGES,
                         "Other images whose fixations make sAUC's other map.", lower_bound=1,
                         flag_values=flag_values)
    flags.DEFINE_integer("seed", 0, "Seeds sAUC's other images and the metrics' sampling.", flag_values=flag_values)
    flags.DEFINE_integer("limit", None, "Evaluate only the first N images.", lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer("batch_size", 8, "Images per model call.", lower_bound=1, flag_values=flag_values)
    flags.DEFINE_enum("precision", "float32", PRECISIONS, "Compute dtype (.keras only).", flag_values=flag_values)
    flags.DEFINE_boolean("report", False, "Also write report.html beside results.md: the table beside the paper's "
                         "numbers and a gallery of the best and worst images by NSS (per category for CAT2000), "
                         "ground truth, model and baseline maps side by side.", flag_values=flag_values)
    cli.define_verbose_flag(flag_values)
    flags.DEFINE_integer("progress", None, "Deprecated, use --verbose (same values); wins when set.",
                         flag_values=flag_values)
    flags.mark_flags_as_required(["model", "data_dir", "dataset"], flag_values=flag_values)


def default_model_name(model_path):
    """The model's row label: emlnet for runs/emlnet/emlnet.keras, emlnet/1 for exports/emlnet/1."""
    path = os.path.normpath(model_path)
    if path.endswith(".keras"):
        return os.path.splitext(os.path.basename(path))[0]
    return "/".join(path.split(os.sep)[-2:])


def default_out_dir(model_path, dataset, split):
    """<folder holding the model>/eval_<dataset>_<split>."""
    path = os.path.normpath(model_path)
    folder = os.path.dirname(path) if path.endswith(".keras") else path
    return os.path.join(folder or ".", f"eval_{dataset}_{split}")


def main(argv):
    del argv
    from keras_emlnet.data.records import BadSampleError
    from keras_emlnet.evaluation.evaluate import EvalConfig, evaluate_and_write
    from keras_emlnet.inference.predictor import load_predictor
    from keras_emlnet.inference.progress import ThroughputProgress

    # The row label defaults to the model's name, derived from --model.
    config = cli.config_from_flags(
        EvalConfig, overrides={"model_name": FLAGS.model_name or default_model_name(FLAGS.model)})
    out = FLAGS.out or default_out_dir(FLAGS.model, config.dataset, config.split)
    verbose = cli.verbosity_from_flags()
    predictor = load_predictor(FLAGS.model, precision=FLAGS.precision)
    logging.info("evaluating %s (%s, %s output) on %s/%s", predictor.source, predictor.kind,
                 predictor.output_mode, config.dataset, config.split)
    try:
        written = evaluate_and_write(
            predictor, config, out,
            make_progress=lambda total: ThroughputProgress(total, unit="image", verbose=verbose).add,
        )
    except BadSampleError as error:
        # One line naming the file and the fix, not a traceback through the library.
        print(f"train.evaluate: bad sample {error}; rerun with --skip_bad to leave bad samples out "
              "(results.md lists them)", file=sys.stderr)
        return 1
    for path, problem in sorted(written.results.skipped.items()):
        logging.warning("skipped bad sample %s: %s", path, problem)
    if FLAGS.report:
        from keras_emlnet.evaluation.report import write_report

        written.paths["report"] = write_report(out, predictor, config, written.results)
    print()
    print(written.text)
    logging.info("wrote %s", ", ".join(sorted(written.paths.values())))


if __name__ == "__main__":
    define_flags()
    app.run(main)
