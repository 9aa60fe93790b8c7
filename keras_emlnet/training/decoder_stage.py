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

import json
import os
import zipfile

import keras

from keras_emlnet import data as data_lib
from keras_emlnet import atomic_files as io_utils
from keras_emlnet.metrics import keras as keras_metrics
from keras_emlnet.models import postprocess
from keras_emlnet.training import fit as training
from keras_emlnet.models import taps as taps_lib
from keras_emlnet.data.pipeline import get_reader
from keras_emlnet.models.emlnet import EMLNet, build_emlnet
from keras_emlnet.losses import EMLLoss

# The paper's decoder recipe: batch 32, 5 epochs, learning rate x0.1 at epoch
# 3 (0-based: epochs 3 and 4 run at 0.1x), SGD momentum 0.9, weight decay
# 1e-4, input 480x640. The initial rate 0.1 is the released train_decoder.py
# default (SenJia/EML-NET-Saliency).
DECODER_RECIPE = training.TrainConfig(
    epochs=5, batch_size=32, learning_rate=0.1, lr_decay_epochs=(3,), input_size=(480, 640)
)
EMLNET_FILE = "emlnet.keras"
EVAL_METRICS = (keras_metrics.NSS, keras_metrics.CC, keras_metrics.KLD, keras_metrics.SIM)


def load_encoders(paths):
    """Loads trained encoders from `.keras` files, in order.

    Raises:
        FileNotFoundError: a path that does not exist (named).
        ValueError: a file that is not a loadable Keras model (named).
    """
    # Importing the encoder module registers its custom layers for loading.
    import keras_emlnet.models.encoder  # noqa: F401

    encoders = []
    for path in paths:
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"encoder file {path!r} does not exist")
        try:
            encoders.append(keras.saving.load_model(path, compile=False))
        except Exception as error:  # Keras raises several types; name the file in one.
            raise ValueError(f"cannot load encoder {path}: {error}") from error
    if not encoders:
        raise ValueError("train_decoder needs at least one encoder file, got none")
    return encoders


def train_decoder(encoder_paths, dataset, data_dir, config, workdir, *, output_mode=postprocess.MINMAX,
                  blur_sigma=None, skip_bad=False, callbacks=(), verbose=0):
    """Trains the decoder of an EMLNet over trained encoders; saves `emlnet.keras`.

    Trains on the train split and validates on the val split every epoch
    with `EMLLoss` and the NSS, CC, KLD and SIM metrics. Resumable: see
    `training.fit` (the encoder paths are part of the recorded settings, so a
    rerun with another set of encoders needs a new workdir).

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
        The `training.FitResult`; `final_model_path` is `<workdir>/emlnet.keras`
        and `model` the trained (raw-mode) EMLNet.

    Raises:
        FileNotFoundError, ValueError: missing or unloadable encoder files
            (named), encoders whose input size is not `config.input_size`,
            bad settings, or a workdir holding a run with other settings.
    """
    postprocess.check_output_mode(output_mode, allow_raw=False)
    resize_mode = get_reader(dataset).MODE
    encoder_paths = [os.path.abspath(os.fspath(path)) for path in encoder_paths]
    # Fail on bad files and sizes before any data is read. The sizes come from
    # each archive's config.json: the encoders are loaded once, in model_fn,
    # because under a tf.distribute strategy their variables must be created
    # inside strategy.scope() (loading NASNet takes ~30 s).
    _check_input_sizes({path: read_encoder_input_size(path) for path in encoder_paths}, config.input_size)

    def model_fn():
        # Loaded inside fit's policy and strategy scopes. Under mixed
        # precision the extractor is rebuilt in the mixed policy: it is
        # nearly all of the compute (the decoder has ~1e4 weights).
        encoders = load_encoders(encoder_paths)
        # The loaded models' own shapes (config.json may not state one).
        _check_input_sizes({path: tuple(encoder.input_shape[1:3]) for path, encoder in zip(encoder_paths, encoders)},
                           config.input_size)
        policy = keras.mixed_precision.global_policy().name
        emlnet = build_emlnet(
            encoders,
            resize_mode=resize_mode,
            seed=config.seed,
            dtype_policy=policy if policy != "float32" else None,
        )
        return emlnet.training_model()

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
        "metrics": [metric.__name__ for metric in EVAL_METRICS],
    }
    result = training.fit(
        model_fn,
        train_data,
        val_data,
        config,
        workdir,
        loss=EMLLoss(),
        metrics=EVAL_METRICS,
        run_settings=run_settings,
        final_model_name=EMLNET_FILE,
        callbacks=callbacks,
        verbose=verbose,
    )
    save_inference_model(result.final_model_path, resize_mode=resize_mode, output_mode=output_mode,
                         blur_sigma=blur_sigma)
    return result


def save_inference_model(path, *, resize_mode, output_mode, blur_sigma):
    """Replaces the raw-mode EMLNet `training.fit` saved at `path` by the inference model.

    `fit` saves the (float32) training model, whose output is the raw decoder
    map; users get the EMLNet over the same extractor and decoder weights with
    the inference post-processing. Written atomically.

    Args:
        path: the `.keras` file `training.fit` wrote (overwritten).
        resize_mode: the dataset's geometry ("resize" or "pad_to_4_3").
        output_mode, blur_sigma: the saved model's post-processing.

    Returns:
        The inference EMLNet that was saved.
    """
    trained = keras.saving.load_model(path, compile=False)
    final = EMLNet(
        trained.extractor,
        trained.decoder,
        resize_mode=resize_mode,
        output_mode=output_mode,
        blur_sigma=blur_sigma,
        name="emlnet",
    )
    with io_utils.atomic_path(path) as tmp:
        final.save(tmp)
    return final


def _functional_config(path):
    """The inner config of a `.keras` file's functional model (config.json), or None if not functional.

    Raises:
        FileNotFoundError: a path that does not exist (named).
        ValueError: a file that is not a `.keras` archive (named).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"encoder file {path!r} does not exist")
    try:
        with zipfile.ZipFile(path) as archive:
            model_config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
        raise ValueError(f"cannot load encoder {path}: not a .keras archive ({error})") from error
    inner = model_config.get("config") if isinstance(model_config, dict) else None
    if not isinstance(inner, dict) or "input_layers" not in inner or "layers" not in inner:
        return None
    return inner


def read_encoder_input_size(path):
    """(H, W) of the images an encoder `.keras` file takes, from its config.json, without loading it.

    Returns:
        The size, or None when the config does not state it (a model that is
        not functional: its size is checked once loaded).

    Raises:
        FileNotFoundError: a path that does not exist (named).
        ValueError: a file that is not a `.keras` archive (named).
    """
    inner = _functional_config(path)
    if inner is None:
        return None
    inputs = inner["input_layers"]
    # One input is saved as [name, node, tensor]; several as a list of those.
    if len(inputs) == 1 and isinstance(inputs[0], list):
        inputs = inputs[0]
    if len(inputs) != 3 or not isinstance(inputs[0], str):
        return None
    for layer in inner["layers"]:
        if layer.get("name") == inputs[0]:
            shape = layer.get("config", {}).get("batch_shape")
            return tuple(shape[1:3]) if shape and len(shape) == 4 else None
    return None


def read_encoder_prefix(path):
    """The tap prefix of an encoder `.keras` file (`extractor.encoder_prefix`), without loading it.

    Returns:
        The prefix its tap layers share, or None when the config does not show
        exactly one (load the model and ask `encoder_prefix`).

    Raises:
        FileNotFoundError, ValueError: as `read_encoder_input_size`.
    """
    inner = _functional_config(path)
    if inner is None:
        return None
    parsed = (taps_lib.parse_tap_layer_name(str(layer.get("name", ""))) for layer in inner["layers"])
    prefixes = {name[0] for name in parsed if name is not None}
    return prefixes.pop() if len(prefixes) == 1 else None


def _check_input_sizes(sizes, input_size):
    if not sizes:
        raise ValueError("train_decoder needs at least one encoder file, got none")
    wrong = {path: size for path, size in sizes.items() if size is not None and size != tuple(input_size)}
    if wrong:
        raise ValueError(
            f"the encoders take {wrong} images but the decoder is trained at input_size {tuple(input_size)}; "
            "pass --input_size equal to the encoders' (they were built for a static size)"
        )
