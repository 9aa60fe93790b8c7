"""`python -m keras_emlnet.data.to_tfrecord`: converts a dataset folder's split into TFRecord shards.

    python -m keras_emlnet.data.to_tfrecord --dataset salicon --data_dir DIR --split train \
        --out DIR --num_shards N

Shards hold the original encoded bytes, the parsed fixations and the original
size; bad samples are reported and left out; a killed conversion resumes
when rerun. The shards folder then works wherever a dataset folder does
(`--data_dir` of every training and evaluation CLI). See
`keras_emlnet.data.tfrecords` (the library this command calls).
"""

from absl import app, flags, logging

from keras_emlnet.data import tfrecords

FLAGS = flags.FLAGS
DATASETS = ("salicon", "mit1003", "cat2000")


def define_flags(flag_values=FLAGS):
    """Defines this CLI's flags in `flag_values` when it runs, never at import."""
    flags.DEFINE_enum("dataset", None, list(DATASETS), "Which dataset --data_dir holds.", flag_values=flag_values)
    flags.DEFINE_string("data_dir", None, "The dataset folder as unzipped.", flag_values=flag_values)
    flags.DEFINE_string("split", "train", "Split to convert (train, val; all for MIT1003/CAT2000; SALICON test).",
                        flag_values=flag_values)
    flags.DEFINE_string("out", None, "Shards folder (several splits may share it).", flag_values=flag_values)
    flags.DEFINE_integer("num_shards", 16, "Number of shards (at most one per sample).", lower_bound=1,
                         flag_values=flag_values)
    flags.mark_flags_as_required(["dataset", "data_dir", "out"], flag_values=flag_values)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")

    def progress(index, num_shards, count):
        logging.info("shard %d/%d: %d examples", index + 1, num_shards, count)

    try:
        result = tfrecords.convert(FLAGS.dataset, FLAGS.data_dir, FLAGS.split, FLAGS.out, FLAGS.num_shards,
                                   progress=progress)
    except (ValueError, FileNotFoundError) as error:  # other settings in --out, missing folder: named
        raise app.UsageError(str(error)) from None
    logging.info("%d examples in %s (%d shards written, %d already done); %d bad samples left out%s",
                 result.examples, FLAGS.out, result.shards_written, result.shards_resumed,
                 len(result.bad_samples), f", listed in {result.config_path}" if result.bad_samples else "")


if __name__ == "__main__":
    define_flags()
    app.run(main)
