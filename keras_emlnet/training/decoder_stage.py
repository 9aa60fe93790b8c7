"""Stage two of EML-NET (§3.3): train the decoder over frozen, trained encoders.

The trained encoders (`.keras` files from `train.encoder`) are loaded, joined
into the frozen feature extractor, and only the decoder's 1x1 convs are
trained (13,543 weights for NASNet + DenseNet-161). Adding an encoder later is
the same call with one more path: the encoders are never retrained.

What is fitted is `EMLNet.training_model()`: the same extractor and decoder
returning the raw decoder map, because the EML loss normalises by itself and
must not see a min-max'd or blurred map. The final `emlnet.keras` is the
EMLNet over the trained decoder with the inference post-processing
(`output_mode`, `blur_sigma`) and the dataset's `resize_mode`; the
checkpoints in `checkpoints/` are raw-mode EMLNets.
`python -m train.decoder` is a thin CLI over `train_decoder`.
"""

import os

import keras

from keras_emlnet import atomic_files
from keras_emlnet import data as data_lib
from keras_emlnet.data.pipeline import get_reader
from keras_emlnet.models import postprocess
from keras_emlnet.models.emlnet import EMLNet, build_emlnet
from keras_emlnet.models.saving import load_model
from keras_emlnet.training import runtime
from keras_emlnet.training.config import TrainConfig
from keras_emlnet.training.fit import SALIENCY_METRICS, fit_saliency_model

# The paper's decoder recipe: batch 32, 5 epochs, learning rate x0.1 "at the
# third epoch" = 0-based epoch 3 (epochs 3 and 4 run at 0.1x: the released code
# counts drops as `epoch // decay_epoch`, 0-based), SGD momentum 0.9, weight
# decay 1e-4, input 480x640. The rate 0.01 is the released train_decoder.py's
# effective one: `--lr` defaults to 1e-1 and `args.lr *= 0.1` when the EML
# loss is used (SenJia/EML-NET-Saliency; the paper gives no decoder rate).
DECODER_RECIPE = TrainConfig(
    epochs=5, batch_size=32, learning_rate=0.01, lr_decay_epochs=(3,), input_size=(480, 640)
)
EMLNET_FILE = "emlnet.keras"


def load_encoders(paths, *, input_size=None):
    """Loads trained encoders from `.keras` files, in order, with `keras_emlnet.load_model`.

    Call it where the encoders' variables must be created (inside a
    tf.distribute strategy's scope, e.g. in a `fit` model_fn).

    Args:
        paths: the encoder files.
        input_size: (H, W) every encoder must take (they are built for a
            static size), or None to accept any.

    Returns:
        The encoders (`SaliencyEncoder`s).

    Raises:
        FileNotFoundError: a path that does not exist (named).
        ValueError: no paths, a file that is not a loadable Keras model
            (named), or encoders whose input size is not `input_size` (the
            files and sizes named).
    """
    paths = [os.fspath(path) for path in paths]
    if not paths:
        raise ValueError("at least one encoder file is needed, got none")
    encoders = [load_model(path) for path in paths]
    if input_size is not None:
        # input_shape: a SaliencyEncoder's input_size, and as right for a plain
        # functional encoder saved before encoders carried their metadata.
        sizes = {path: tuple(encoder.input_shape[1:3]) for path, encoder in zip(paths, encoders)}
        wrong = {path: size for path, size in sizes.items() if size != tuple(input_size)}
        if wrong:
            raise ValueError(
                f"the encoders take {wrong} images but the decoder is trained at input_size "
                f"{tuple(input_size)}; pass --input_size equal to the encoders' (they were built for a static size)"
            )
    return encoders


def build_stage_emlnet(encoders, *, resize_mode, seed):
    """An EMLNet over `encoders` with a seeded decoder, in the run's precision.

    Called in `fit`'s policy and strategy scopes. Under mixed precision the
    extractor is rebuilt in the mixed policy (loaded encoders keep the float32
    policy they were saved with): it is nearly all of the compute (the
    decoder has ~1e4 weights).
    """
    policy = keras.mixed_precision.global_policy().name
    return build_emlnet(encoders, resize_mode=resize_mode, seed=seed,
                        dtype_policy=policy if policy != "float32" else None)


def train_decoder(encoder_paths, dataset, data_dir, config, workdir, *, output_mode=postprocess.MINMAX,
                  blur_sigma=None, skip_bad=False, callbacks=(), verbose=0):
    """Trains the decoder of an EMLNet over trained encoders; saves `emlnet.keras`.

    Trains on the train split and validates on the val split every epoch
    with `EMLLoss` and the NSS, CC, KLD and SIM metrics (`fit_saliency_model`).
    Resumable: see `keras_emlnet.training.fit` (the encoder paths are part of
    the recorded settings, so a rerun with another set of encoders needs a
    new workdir).

    Args:
        encoder_paths: `.keras` files of trained encoders (same input size,
            equal to `config.input_size`; distinct backbones).
        dataset: "salicon", "mit1003" or "cat2000"; also sets the saved
            model's `resize_mode` (MIT1003 pads to 4:3).
        data_dir: the dataset's root folder.
        config: a TrainConfig (`DECODER_RECIPE` with changes).
        workdir: the run's folder.
        output_mode, blur_sigma: the saved EMLNet's post-processing.
        skip_bad: report and skip corrupt samples.
        callbacks: extra Keras callbacks.
        verbose: Keras `fit` verbosity.

    Returns:
        The `FitResult`; `final_model_path` is `<workdir>/emlnet.keras` and
        `model` the trained (raw-mode) EMLNet.

    Raises:
        FileNotFoundError, ValueError: missing or unloadable encoder files
            (named), encoders whose input size is not `config.input_size`,
            bad settings, or a workdir holding a run with other settings.
    """
    postprocess.check_output_mode(output_mode, allow_raw=False)
    resize_mode = get_reader(dataset).MODE
    encoder_paths = [os.path.abspath(os.fspath(path)) for path in encoder_paths]
    # Fail on missing files before any data is read. The encoders themselves
    # are loaded once, in model_fn, because under a tf.distribute strategy
    # their variables must be created inside strategy.scope() (loading NASNet
    # takes ~30 s); their input sizes are checked there.
    if not encoder_paths:
        raise ValueError("train_decoder needs at least one encoder file, got none")
    missing = [path for path in encoder_paths if not os.path.isfile(path)]
    if missing:
        raise FileNotFoundError(f"encoder files {missing} do not exist")

    def model_fn():
        encoders = load_encoders(encoder_paths, input_size=config.input_size)
        return build_stage_emlnet(encoders, resize_mode=resize_mode, seed=config.seed).training_model()

    runtime.make_strategy(config.distribution)  # a multi-worker strategy must come before any TF work
    train_data, val_data = data_lib.build_train_val(dataset, data_dir, config, skip_bad=skip_bad)
    run_settings = {
        "stage": "decoder",
        "encoders": encoder_paths,
        "dataset": dataset,
        "data_dir": os.path.abspath(data_dir),
        "skip_bad": bool(skip_bad),
        "resize_mode": resize_mode,
        "output_mode": output_mode,
        "blur_sigma": blur_sigma,
        "loss": "EMLLoss",
        "metrics": [metric.__name__ for metric in SALIENCY_METRICS],
    }
    return fit_decoder(model_fn, train_data, val_data, config, workdir, run_settings=run_settings,
                       resize_mode=resize_mode, output_mode=output_mode, blur_sigma=blur_sigma,
                       callbacks=callbacks, verbose=verbose)


def fit_decoder(model_fn, train_data, val_data, config, workdir, *, run_settings, resize_mode, output_mode,
                blur_sigma, callbacks=(), verbose=0):
    """Fits a raw-mode EMLNet (`fit_saliency_model`), then saves the inference model as `emlnet.keras`.

    Args:
        model_fn, train_data, val_data, config, workdir, run_settings,
            callbacks, verbose: as for `fit_saliency_model`; `model_fn`
            returns an `EMLNet.training_model()`.
        resize_mode, output_mode, blur_sigma: the saved EMLNet's geometry and
            post-processing (`save_inference_model`).

    Returns:
        The FitResult; `final_model_path` is `<workdir>/emlnet.keras`.
    """
    result = fit_saliency_model(model_fn, train_data, val_data, config, workdir, run_settings=run_settings,
                                final_model_name=EMLNET_FILE, callbacks=callbacks, verbose=verbose)
    if result.is_chief:  # the other workers of a multi-worker run leave the run folder to the chief
        save_inference_model(result.final_model_path, resize_mode=resize_mode, output_mode=output_mode,
                             blur_sigma=blur_sigma)
    return result


def save_inference_model(path, *, resize_mode, output_mode, blur_sigma):
    """Replaces the raw-mode EMLNet `fit` saved at `path` by the inference model.

    `fit` saves the (float32) training model, whose output is the raw decoder
    map; users get the EMLNet over the same extractor and decoder weights with
    the inference post-processing. Written atomically.

    Args:
        path: the `.keras` file `fit` wrote (overwritten).
        resize_mode: the dataset's geometry ("resize" or "pad_to_4_3").
        output_mode, blur_sigma: the saved model's post-processing.

    Returns:
        The inference EMLNet that was saved.
    """
    trained = load_model(path)
    final = EMLNet(
        trained.extractor,
        trained.decoder,
        resize_mode=resize_mode,
        output_mode=output_mode,
        blur_sigma=blur_sigma,
        name="emlnet",
    )
    with atomic_files.atomic_path(path) as tmp:
        final.save(tmp)
    return final
