r"""The decoder's fusing conv with and without its NonNeg constraint, side by side on generated data.

    python -m benchmarks.decoder_fuse_constraint [--epochs 10] [--seeds 0,1] [--num_images 64]

Trains two tiny encoders on generated SALICON data (`train_encoder`), then the
decoder over them (`fit_saliency_model`, the decoder recipe at a small size)
three ways, each from the same encoders and seeds:
  nonneg+pos   the project's decoder: fusing conv NonNeg, initialised 1/n_taps
  free+pos     no constraint, same initialisation
  free+glorot  the paper as written: an unconstrained conv, Keras's default init
and prints the last epoch's val loss / NSS / CC / KLD, non-finite losses, the
share of negative pixels in the raw val maps and the fusing weights.
"""

import dataclasses
import os
import tempfile

import keras
import numpy as np
from absl import app, flags

from keras_emlnet import data as data_lib
from keras_emlnet import testing
from keras_emlnet.data import generate_dataset
from keras_emlnet.training import decoder_stage, encoder_stage
from keras_emlnet.training.fit import fit_saliency_model

FLAGS = flags.FLAGS
VARIANTS = ("nonneg+pos", "free+pos", "free+glorot")


def define_flags():
    flags.DEFINE_integer("epochs", 10, "Decoder epochs.")
    flags.DEFINE_list("seeds", ["0", "1"], "Decoder seeds (initialisation and data order).")
    flags.DEFINE_integer("num_images", 64, "Generated SALICON images (half train, a quarter val).")
    flags.DEFINE_string("out", None, "Work folder (default: a temporary one).")


def _decoder_model_fn(encoder_paths, config, variant):
    def model_fn():
        encoders = decoder_stage.load_encoders(encoder_paths, input_size=config.input_size)
        emlnet = decoder_stage.build_stage_emlnet(encoders, resize_mode="resize", seed=config.seed)
        fuse = emlnet.decoder.get_layer(f"{emlnet.decoder.name}_fuse_conv")
        if variant != "nonneg+pos":
            fuse.kernel.constraint = None
        if variant == "free+glorot":
            fuse.kernel.assign(keras.initializers.GlorotUniform(seed=config.seed)(fuse.kernel.shape))
        return emlnet.training_model()
    return model_fn


def main(argv):
    del argv
    out = FLAGS.out or tempfile.mkdtemp(prefix="fuse_constraint_")
    data_dir = os.path.join(out, "salicon")
    generate_dataset("salicon", data_dir, FLAGS.num_images, seed=0, image_size=(120, 160))
    input_size = (64, 96)
    encoder_config = dataclasses.replace(encoder_stage.ENCODER_RECIPE, epochs=3, batch_size=4,
                                         lr_decay_epochs=(2,), input_size=input_size)
    encoder_paths = []
    for index, prefix in enumerate(("tiny_a", "tiny_b")):
        result = encoder_stage.train_encoder(testing.tiny_backbone_spec(prefix, seed=index), "salicon", data_dir,
                                             encoder_config, os.path.join(out, prefix), weights=None)
        encoder_paths.append(result.final_model_path)

    rows = []
    for seed in (int(s) for s in FLAGS.seeds):
        config = dataclasses.replace(decoder_stage.DECODER_RECIPE, epochs=FLAGS.epochs, batch_size=4,
                                     lr_decay_epochs=(max(1, FLAGS.epochs * 3 // 5),), input_size=input_size,
                                     seed=seed)
        train_data, val_data = data_lib.build_train_val("salicon", data_dir, config)
        for variant in VARIANTS:
            result = fit_saliency_model(_decoder_model_fn(encoder_paths, config, variant), train_data, val_data,
                                        config, os.path.join(out, f"decoder_{variant}_{seed}"),
                                        run_settings={"variant": variant}, final_model_name="emlnet.keras")
            history = result.history
            raw = np.concatenate([result.model.predict(x, verbose=0) for x, _ in val_data])
            fuse = result.model.decoder.get_layer(f"{result.model.decoder.name}_fuse_conv").kernel.numpy().ravel()
            rows.append((variant, seed, history["val_loss"][-1], history["val_nss"][-1], history["val_cc"][-1],
                         history["val_kld"][-1], int(np.sum(~np.isfinite(history["loss"]))),
                         float(np.mean(raw < 0)), np.round(fuse, 3).tolist()))

    print(f"decoder over 2 tiny encoders, {FLAGS.num_images} generated SALICON images at {input_size}, "
          f"{FLAGS.epochs} epochs, batch 4, lr 0.01")
    print(f"{'variant':<12} {'seed':>4} {'val_loss':>9} {'val_nss':>8} {'val_cc':>7} {'val_kld':>8} "
          f"{'nonfinite':>9} {'neg px':>7}  fuse weights")
    for variant, seed, loss, nss, cc, kld, bad, negative, fuse in rows:
        print(f"{variant:<12} {seed:>4} {loss:>9.4f} {nss:>8.4f} {cc:>7.4f} {kld:>8.4f} {bad:>9d} "
              f"{negative:>7.3f}  {fuse}")
    for variant in VARIANTS:
        mine = [row for row in rows if row[0] == variant]
        print(f"mean {variant:<12} val_loss {np.mean([r[2] for r in mine]):.4f}  "
              f"val_nss {np.mean([r[3] for r in mine]):.4f}  val_cc {np.mean([r[4] for r in mine]):.4f}  "
              f"val_kld {np.mean([r[5] for r in mine]):.4f}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
