"""`python -m keras_emlnet.convert_places365`: CSAIL's DenseNet-161 Places365 checkpoint -> Keras weights.

    python -m keras_emlnet.convert_places365 densenet161_places365.pth.tar OUT.weights.h5

Place OUT at `backbones.places365_weights_path()` to use `weights="places365"`.
See `keras_emlnet.models.places365` (the library this command calls).
"""

from absl import app, flags, logging

from keras_emlnet.models.places365 import convert_places365

USAGE = "usage: python -m keras_emlnet.convert_places365 CHECKPOINT.pth.tar OUT.weights.h5"


def define_flags(flag_values=flags.FLAGS):
    """Defines no flag: the command takes its two paths as positional arguments."""
    del flag_values


def main(argv):
    if len(argv) != 3:
        raise app.UsageError(USAGE)
    convert_places365(argv[1], argv[2])
    logging.info("wrote %s from %s", argv[2], argv[1])


if __name__ == "__main__":
    define_flags()
    app.run(main)
