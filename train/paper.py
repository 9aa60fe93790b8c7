r"""Reproduces the paper's SALICON experiments (Table 1) with one resumable command.

    python -m train.paper --data_dir DIR --workdir runs/paper \
        [--experiments densenet161,nasnet,combined] [--smoke]

Trains each encoder on its own (pretrained ImageNet / Places365 weights, the
encoder recipe), a multi-level decoder per encoder (Table 1 rows 1-2) and one
over both (row 3), evaluates each on the SALICON val split and writes
<workdir>/results.md: our rows beside the paper's, with every stage's settings
and time. Killed and rerun with the same command, finished stages are skipped
and the unfinished one resumes from its last finished epoch.

--smoke runs the same stages at the smallest sizes on generated data
(written to --data_dir, default <workdir>/data/salicon), from random
initialisation: a wiring check, not the paper's numbers.
See keras_emlnet/training/paper.py.
"""

from absl import app, flags, logging

from keras_emlnet.training import paper
from keras_emlnet.training.callbacks import EpochLogger
from keras_emlnet.training.config import ConfigMismatchError

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS):
    """Defines this CLI's flags in `flag_values`."""
    flags.DEFINE_string("data_dir", None, "SALICON root folder (images/, maps/, fixations/); with --smoke, where "
                        "the generated dataset goes (default <workdir>/data/salicon).", flag_values=flag_values)
    flags.DEFINE_string("workdir", None, "Run folder; rerunning the same command there resumes the run.",
                        flag_values=flag_values)
    flags.DEFINE_list("experiments", list(paper.EXPERIMENTS), "Table 1 rows to run: densenet161, nasnet, combined "
                      "(a decoder over both encoders).", flag_values=flag_values)
    flags.DEFINE_boolean("smoke", False, "The same stages at the smallest sizes on generated data, random "
                         "initialisation (no pretrained weights offline).", flag_values=flag_values)
    flags.DEFINE_enum("mixed_precision", None, ["bfloat16", "float16"], "Mixed-precision compute dtype of every "
                      "training stage; unset: float32 (the paper's).", flag_values=flag_values)
    flags.mark_flags_as_required(["workdir"], flag_values=flag_values)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if FLAGS.data_dir is None and not FLAGS.smoke:
        raise app.UsageError("--data_dir (the SALICON root) is required unless --smoke")
    try:
        config = paper.paper_config(FLAGS.data_dir, FLAGS.workdir, experiments=FLAGS.experiments,
                                    smoke=FLAGS.smoke, mixed_precision=FLAGS.mixed_precision)
    except ValueError as error:
        raise app.UsageError(f"--experiments: {error}") from None
    logging.info("paper run in %s: experiments %s%s", FLAGS.workdir, ", ".join(config.experiments),
                 " (smoke: generated data, random initialisation)" if config.smoke else "")
    try:
        written = paper.run_paper(config, callbacks=[EpochLogger()])
    except (ConfigMismatchError, FileNotFoundError) as error:  # another run's workdir, missing weights: named
        raise app.UsageError(str(error)) from None
    with open(written["results"], encoding="utf-8") as f:
        print(f.read())
    logging.info("wrote %s", written["results"])


if __name__ == "__main__":
    define_flags()
    app.run(main)
