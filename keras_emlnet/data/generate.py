"""`python -m keras_emlnet.data.generate`: writes a synthetic dataset in a real dataset's on-disk layout.

    python -m keras_emlnet.data.generate --dataset salicon --out DIR --num_images N [--image_size HxW]

See `keras_emlnet.data.synthetic_dataset` (the library this command calls).
"""

from absl import app, flags, logging

from keras_emlnet import cli
from keras_emlnet.data.synthetic_dataset import DEFAULT_IMAGE_SIZE, generate_dataset

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS):
    """Defines this CLI's flags in `flag_values` when it runs, never at import."""
    flags.DEFINE_enum("dataset", None, sorted(DEFAULT_IMAGE_SIZE), "Dataset format to write.",
                      flag_values=flag_values)
    flags.DEFINE_string("out", None, "Output folder (the dataset root).", flag_values=flag_values)
    flags.DEFINE_integer("num_images", None, "Number of stimuli to write.", flag_values=flag_values)
    flags.DEFINE_integer("seed", 0, "Random seed.", flag_values=flag_values)
    flags.DEFINE_string("image_size", None, "Image size HxW, e.g. 480x640 (height x width); unset: the real "
                        "dataset's size.", flag_values=flag_values)
    flags.mark_flags_as_required(["dataset", "out", "num_images"], flag_values=flag_values)


def main(argv):
    del argv
    image_size = cli.parse_size(FLAGS.image_size, "image_size") if FLAGS.image_size else None
    config = generate_dataset(FLAGS.dataset, FLAGS.out, FLAGS.num_images, seed=FLAGS.seed, image_size=image_size)
    logging.info("wrote %d %s images to %s: %s", FLAGS.num_images, FLAGS.dataset, FLAGS.out, config["files"])


if __name__ == "__main__":
    define_flags()
    app.run(main)
