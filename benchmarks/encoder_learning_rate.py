"""Initial learning rate of encoder training: the paper's 0.1 beside the released 0.01.

Trains the same encoder (same seed, same generated SALICON data) with each
learning rate of `--learning_rates` through `encoder_training.train_encoder`
(the recipe: EML loss, PyTorch-style SGD momentum 0.9, weight decay 1e-4, step
decay) and prints the train and validation loss per epoch side by side, the
number of non-finite values, and the final validation NSS/CC.

Random backbone weights only (pretrained files cannot be downloaded here), so
this measures stability of the recipe with this loss, not final accuracy.

    python benchmarks/encoder_learning_rate.py --backbone resnet50 --input_size 96x128 --num_images 48
Smoke run:
    python benchmarks/encoder_learning_rate.py --backbone tiny --input_size 32x48 --num_images 16 --epochs 2
"""

import dataclasses
import math
import os
import tempfile

from absl import app, flags

from keras_emlnet import cli

flags.DEFINE_string("backbone", "resnet50", "Registry backbone, or 'tiny' (test backbone).")
flags.DEFINE_list("learning_rates", ["0.1", "0.01"], "Initial learning rates to compare.")
flags.DEFINE_string("input_size", "96x128", "Model input size HxW.")
flags.DEFINE_integer("num_images", 48, "Generated SALICON images (half train, a quarter val).", lower_bound=8)
flags.DEFINE_integer("epochs", 4, "Epochs per run.", lower_bound=1)
flags.DEFINE_integer("batch_size", 8, "Batch size (the paper's 8).", lower_bound=1)
flags.DEFINE_integer("decay_epoch", 3, "0-based epoch of the x0.1 drop (the recipe's 5 of 10, scaled down).")
flags.DEFINE_string("out", None, "Folder for the runs (default: a temporary folder).")

FLAGS = flags.FLAGS


def _non_finite(values):
    return sum(1 for value in values if not math.isfinite(value))


def main(argv):
    del argv
    from keras_emlnet import testing
    from keras_emlnet.data import generate_dataset
    from keras_emlnet.training import encoder_stage

    height, width = cli.parse_size(FLAGS.input_size, "input_size")
    out = FLAGS.out or tempfile.mkdtemp(prefix="encoder_lr_")
    data_dir = os.path.join(out, "salicon")
    if not os.path.isdir(data_dir):
        generate_dataset("salicon", data_dir, FLAGS.num_images, seed=0, image_size=(height, width))
    backbone = testing.tiny_backbone_spec("tiny") if FLAGS.backbone == "tiny" else FLAGS.backbone
    histories = {}
    for rate in FLAGS.learning_rates:
        config = dataclasses.replace(
            encoder_stage.ENCODER_RECIPE, learning_rate=float(rate), epochs=FLAGS.epochs,
            batch_size=FLAGS.batch_size, lr_decay_epochs=(FLAGS.decay_epoch,), input_size=(height, width),
        )
        result = encoder_stage.train_encoder(backbone, "salicon", data_dir, config, os.path.join(out, f"lr{rate}"),
                                             weights=None)
        histories[rate] = result.history

    print(f"{FLAGS.backbone} at {height}x{width}, {FLAGS.num_images} generated images, batch {FLAGS.batch_size}")
    header = "epoch " + " ".join(f"{'loss@' + r:>12} {'val@' + r:>12}" for r in FLAGS.learning_rates)
    print(header)
    for epoch in range(FLAGS.epochs):
        cells = []
        for rate in FLAGS.learning_rates:
            history = histories[rate]
            loss = history["loss"][epoch] if epoch < len(history["loss"]) else float("nan")
            val = history["val_loss"][epoch] if epoch < len(history["val_loss"]) else float("nan")
            cells.append(f"{loss:>12.4f} {val:>12.4f}")
        print(f"{epoch:>5} " + " ".join(cells))
    for rate in FLAGS.learning_rates:
        history = histories[rate]
        print(f"lr {rate}: non-finite train/val losses {_non_finite(history['loss'])}/{_non_finite(history['val_loss'])}, "
              f"final val NSS {history['val_nss'][-1]:.3f}, CC {history['val_cc'][-1]:.3f}, "
              f"best val loss {min(history['val_loss']):.4f}")


if __name__ == "__main__":
    app.run(main)
