"""`python -m keras_emlnet.convert_released`: the authors' released EML-NET checkpoints → one `.keras` EMLNet.

    python -m keras_emlnet.convert_released --imagenet res_imagenet.pth --places res_places.pth \\
        --decoder res_decoder.pth --out emlnet_resnet50.keras [--encoders_dir DIR]

Writes OUT (an EMLNet at 480x640 that `keras_emlnet.load_model`, serving.export,
serving.batch_score and train.evaluate take; `predict_map` gives
eval_combined.py's map) and `OUT.json` (inputs and their SHA-256); with
--encoders_dir also `imagenet_encoder.keras` and `places_encoder.keras` there,
for `train.decoder --encoders`. Needs torch to read the checkpoints (never
runs code from them); the converted model does not. See
`keras_emlnet.models.released_weights` (the library this command calls).
"""

from absl import app, flags, logging

from keras_emlnet.models.released_weights import convert_released

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS):
    """Defines --imagenet, --places, --decoder, --out (required) and --encoders_dir."""
    flags.DEFINE_string("imagenet", None, "The released ImageNet encoder checkpoint (res_imagenet.pth).",
                        flag_values=flag_values)
    flags.DEFINE_string("places", None, "The released Places365 encoder checkpoint (res_places.pth).",
                        flag_values=flag_values)
    flags.DEFINE_string("decoder", None, "The released decoder checkpoint (res_decoder.pth).",
                        flag_values=flag_values)
    flags.DEFINE_string("out", None, "The .keras file to write (an EMLNet).", flag_values=flag_values)
    flags.DEFINE_string("encoders_dir", None, "Also write the two converted encoders here as "
                        "imagenet_encoder.keras and places_encoder.keras.", flag_values=flag_values)
    flags.mark_flags_as_required(["imagenet", "places", "decoder", "out"], flag_values=flag_values)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        model = convert_released(FLAGS.imagenet, FLAGS.places, FLAGS.decoder, FLAGS.out,
                                 encoders_dir=FLAGS.encoders_dir)
    except (ImportError, ValueError, FileNotFoundError) as error:  # no torch, bad files: named
        raise app.UsageError(str(error)) from None
    logging.info("wrote %s (EMLNet %dx%d, blur %s, %s)%s", FLAGS.out, *model.input_size, model.blur_sigma,
                 model.output_mode, f" and the encoders in {FLAGS.encoders_dir}" if FLAGS.encoders_dir else "")


if __name__ == "__main__":
    define_flags()
    app.run(main)
