"""Stage one of EML-NET (§3.1–3.2): train one saliency encoder on its own.

Each backbone is trained separately, with the EML loss, so that memory is
bounded by the largest single CNN rather than by all of them together
(`benchmarks/encoder_memory.py` measures the difference). `python -m
train.encoder` is a thin CLI over `train_encoder`.
"""

import os

import keras

from keras_emlnet import atomic_files
from keras_emlnet import data as data_lib
from keras_emlnet.models.backbones import get_backbone
from keras_emlnet.models.encoder import build_encoder
from keras_emlnet.training import runtime
from keras_emlnet.training.config import TrainConfig
from keras_emlnet.training.fit import SALIENCY_METRICS, check_resumable, fit_saliency_model

# The paper's encoder recipe: SGD momentum 0.9, weight decay 1e-4, batch 8,
# 10 epochs, learning rate x0.1 "after five epochs" = from 0-based epoch 5
# (the released train_resnet.py: `lr = args.lr * 0.1 ** (epoch // 5)`),
# input 480x640. The initial rate is the released code's 0.01, not the
# paper's 0.1 (WORKSPACE.md).
ENCODER_RECIPE = TrainConfig(
    epochs=10, batch_size=8, learning_rate=0.01, lr_decay_epochs=(5,), input_size=(480, 640)
)
ENCODER_FILE = "encoder.keras"
# `train_encoder(weights=PRETRAINED)`: the backbone's `default_weights` (the
# paper's: ImageNet for nasnet/resnet50, Places365 for densenet161).
PRETRAINED = "pretrained"
# BatchNorm momentum while training on saliency: PyTorch's default momentum 0.1
# (the released code's BatchNorm2d) is Keras momentum 0.9; Keras NASNet builds
# 0.9997 and DenseNet 0.99, whose moving statistics would barely move in 10
# epochs, and the frozen extractor later normalises with them.
BATCHNORM_MOMENTUM = 0.9
BAD_SAMPLES_FILE = "bad_samples.json"


def set_batchnorm_momentum(model, momentum=BATCHNORM_MOMENTUM):
    """Sets `momentum` on every BatchNormalization layer of `model` (nested ones too); returns the count."""
    count = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = float(momentum)
            count += 1
    return count


def resolve_weights(spec, weights):
    """`weights` as `build_encoder` takes it: PRETRAINED -> the spec's default, "none"/None -> None (random)."""
    if weights == PRETRAINED:
        return spec.default_weights
    return None if weights in (None, "none") else weights


def train_encoder(backbone, dataset, data_dir, config, workdir, *, weights=PRETRAINED, skip_bad=False,
                  callbacks=(), verbose=0):
    """Trains `build_encoder(backbone)` on `dataset` and saves `encoder.keras`.

    Trains on the train split (shuffled, augmented by the pipeline) and
    validates on the val split every epoch, with `EMLLoss` and the NSS, CC,
    KLD and SIM metrics (`fit_saliency_model`). Resumable: see
    `keras_emlnet.training.fit`.

    Args:
        backbone: registry name ("nasnet", "densenet161", "resnet50") or a
            `BackboneSpec`.
        dataset: "salicon", "mit1003" or "cat2000".
        data_dir: the dataset's root folder.
        config: a TrainConfig (`ENCODER_RECIPE` with changes).
        workdir: the run's folder.
        weights: the backbone's initial weights: `PRETRAINED` (default: the
            backbone's `default_weights`, the paper's pretrained ones), None or
            "none" (random), a named source such as "imagenet", or a file path.
        skip_bad: report and skip corrupt samples; the skipped files are
            listed in `<workdir>/bad_samples.json` ({path: problem}).
        callbacks: extra Keras callbacks.
        verbose: Keras `fit` verbosity.

    Returns:
        The `FitResult`; `final_model_path` is `<workdir>/encoder.keras`.

    Raises:
        ValueError: unknown backbone (the message lists the registry), bad
            settings, or a workdir that holds a run with other settings.
    """
    spec = get_backbone(backbone)  # fails before any data is read
    weights = resolve_weights(spec, weights)
    workdir = os.path.abspath(workdir)
    # A resumed run overwrites every weight from its backup: it does not load
    # the pretrained file (which an offline machine may no longer have).
    resuming = os.path.isfile(os.path.join(workdir, "backup", "state.json"))
    named = weights is None or weights in spec.weight_sources
    if not named and not resuming and not os.path.isfile(weights):
        raise ValueError(
            f"weights {weights!r} is neither a named source of backbone {spec.name!r} "
            f"({sorted(spec.weight_sources)}) nor an existing file"
        )

    def model_fn():
        encoder = build_encoder(spec, weights=None if resuming else weights, input_size=config.input_size,
                                seed=config.seed)
        set_batchnorm_momentum(encoder)
        return encoder

    run_settings = {
        "stage": "encoder",
        "backbone": spec.name,
        "weights": weights if named else os.path.abspath(weights),
        "dataset": dataset,
        "data_dir": os.path.abspath(data_dir),
        "skip_bad": bool(skip_bad),
        "batchnorm_momentum": BATCHNORM_MOMENTUM,
        "loss": "EMLLoss",
        "metrics": [metric.__name__ for metric in SALIENCY_METRICS],
    }
    check_resumable(workdir, config, run_settings)  # before reading any data
    runtime.make_strategy(config.distribution)  # a multi-worker strategy must come before any TF work
    report = data_lib.BadDataReport()
    train_data, val_data = data_lib.build_train_val(dataset, data_dir, config, skip_bad=skip_bad, report=report)
    result = fit_saliency_model(model_fn, train_data, val_data, config, workdir, run_settings=run_settings,
                                final_model_name=ENCODER_FILE, callbacks=callbacks, verbose=verbose)
    if report.count and result.is_chief:
        # Next to the model: which files this run left out, and why.
        atomic_files.write_json_atomic(os.path.join(workdir, BAD_SAMPLES_FILE), report.problems)
    return result
