"""Fine-tuning a trained EML-NET on MIT1003 or CAT2000 (the paper's protocols).

Source: the workdir of a decoder run (`python -m train.decoder`), whose
config.json records the encoder files it was built over (`run.encoders`), the
post-processing (`run.output_mode`, `run.blur_sigma`), the input size
(`train.input_size`) and the final model (`final_model`, emlnet.keras).

Protocols (paper §4):
- MIT1003: pad each image to 4:3, resize to 480×640 (H×W), 903/100 split
  (the reader's seeded split); CAT2000: resize, 1800/200 split stratified by
  category (the reader's). Evaluation maps predictions back to each image's
  original size (`train.evaluate` does, by the dataset's geometry).
- Stage 1: every encoder is fine-tuned on its own from its trained weights
  with the encoder recipe (`encoder_stage.ENCODER_RECIPE`).
- Stage 2: the decoder, warm-started from the source model's decoder, is
  fine-tuned over the fine-tuned (frozen) encoders with the decoder recipe
  (`decoder_stage.DECODER_RECIPE`).
Both stages run through `fit_saliency_model` (`keras_emlnet.training.fit`),
so each is resumable: rerunning the same command continues where it stopped
(a finished stage is not retrained).

Workdir layout (a decoder-run layout, so the result can itself be `--from`):

    <workdir>/finetune.json                  source, dataset, protocol, stage configs
    <workdir>/encoders/<prefix>/encoder.keras  one fit run per encoder (its tap prefix)
    <workdir>/config.json, backup/, checkpoints/, logs/, history.csv   the decoder run
    <workdir>/emlnet.keras                   the fine-tuned model (inference post-processing)
"""

import dataclasses
import json
import os

from keras_emlnet import atomic_files
from keras_emlnet import data as data_lib
from keras_emlnet.data.pipeline import get_reader
from keras_emlnet.inference.predictor import set_compute_precision
from keras_emlnet.models.extractor import encoder_prefix
from keras_emlnet.models.saving import load_model
from keras_emlnet.training import decoder_stage
from keras_emlnet.training import encoder_stage
from keras_emlnet.training import runtime
from keras_emlnet.training.fit import fit_saliency_model

FINETUNE_DATASETS = ("mit1003", "cat2000")
# `finetune(blur_sigma=SOURCE_BLUR)`: keep the source model's blur.
SOURCE_BLUR = "source"
FINETUNE_RECORD = "finetune.json"
ENCODERS_DIR = "encoders"


@dataclasses.dataclass(frozen=True)
class SourceRun:
    """What a decoder run's workdir says about the model it trained.

    Attributes:
        workdir: the source workdir.
        encoder_paths: trained encoder `.keras` files, in extractor order.
        emlnet_path: the trained EMLNet (its decoder warm-starts stage 2).
        input_size: (H, W) the encoders were built for (static).
        output_mode, blur_sigma: the source model's post-processing (kept
            unless `finetune` is given another blur).
    """

    workdir: str
    encoder_paths: tuple
    emlnet_path: str
    input_size: tuple
    output_mode: str
    blur_sigma: object


def read_source_run(workdir):
    """Reads a decoder run's config.json.

    Raises:
        FileNotFoundError: no config.json, or a listed file is missing (named).
        ValueError: config.json is not a decoder run's (names the missing field).
    """
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--from {workdir!r} has no config.json (expected a train.decoder workdir)")
    with open(path) as f:
        record = json.load(f)
    run, train = record.get("run", {}), record.get("train", {})
    missing = [name for name, value in (("run.encoders", run.get("encoders")),
                                        ("train.input_size", train.get("input_size"))) if not value]
    if missing:
        raise ValueError(f"{path} is not a decoder run's config: no {', '.join(missing)}")
    emlnet_path = os.path.join(workdir, record.get("final_model", decoder_stage.EMLNET_FILE))
    for file in [*run["encoders"], emlnet_path]:
        if not os.path.isfile(file):
            raise FileNotFoundError(f"{path} lists {file!r}, which does not exist")
    return SourceRun(
        workdir=os.path.abspath(workdir),
        encoder_paths=tuple(run["encoders"]),
        emlnet_path=emlnet_path,
        input_size=tuple(int(v) for v in train["input_size"]),
        output_mode=run.get("output_mode", "minmax"),
        blur_sigma=run.get("blur_sigma"),
    )


def protocol(dataset):
    """The paper's protocol for `dataset`: geometry mode, split sizes of the full dataset."""
    if dataset not in FINETUNE_DATASETS:
        raise ValueError(f"fine-tuning dataset must be one of {FINETUNE_DATASETS}, got {dataset!r}")
    reader = get_reader(dataset)
    full = {"mit1003": 1003, "cat2000": 2000}[dataset]
    val = round(full * reader.VAL_FRACTION)
    return {"dataset": dataset, "resize_mode": reader.MODE, "train_images": full - val, "val_images": val}


def finetune(dataset, source_workdir, data_dir, workdir, *, encoder_config, decoder_config,
             blur_sigma=SOURCE_BLUR, skip_bad=False, callbacks=(), verbose=0):
    """Fine-tunes the source run's encoders, then its decoder, on `dataset`.

    Args:
        dataset: "mit1003" or "cat2000".
        source_workdir: a decoder run's workdir (see `read_source_run`).
        data_dir: the dataset's root folder.
        workdir: this run's folder (see the module docstring).
        encoder_config, decoder_config: TrainConfigs of the two stages; their
            input_size must equal the source's.
        blur_sigma: the fine-tuned model's blur (pixels at the model size,
            None for none); `SOURCE_BLUR` keeps the source model's.
        skip_bad: report and skip corrupt samples.
        callbacks: extra Keras callbacks for both stages.
        verbose: Keras `fit` verbosity.

    Returns:
        The decoder stage's `FitResult` (final_model_path:
        `<workdir>/emlnet.keras`).
    """
    runtime.make_strategy(encoder_config.distribution)  # a multi-worker strategy must come before any TF work
    plan = protocol(dataset)
    source = read_source_run(source_workdir)
    if blur_sigma != SOURCE_BLUR:
        source = dataclasses.replace(source, blur_sigma=blur_sigma)
    for name, config in (("encoder", encoder_config), ("decoder", decoder_config)):
        if tuple(config.input_size) != source.input_size:
            raise ValueError(f"the {name} stage's input_size {tuple(config.input_size)} differs from the "
                             f"source encoders' {source.input_size} (static shapes)")
    workdir = os.path.abspath(workdir)
    prefixes = [_encoder_prefix(path) for path in source.encoder_paths]
    atomic_files.write_json_atomic(os.path.join(workdir, FINETUNE_RECORD), {
        "source": dataclasses.asdict(source), "protocol": plan, "data_dir": os.path.abspath(data_dir),
        "encoder_train": encoder_config.to_dict(), "decoder_train": decoder_config.to_dict(),
        "encoders": {p: os.path.join(workdir, ENCODERS_DIR, p) for p in prefixes},
    })
    data = _DataFactory(dataset, data_dir, skip_bad)
    tuned_paths = [
        finetune_encoder(path, data, encoder_config, os.path.join(workdir, ENCODERS_DIR, prefix),
                         callbacks=callbacks, verbose=verbose).final_model_path
        for path, prefix in zip(source.encoder_paths, prefixes)
    ]
    return finetune_decoder(tuned_paths, source, data, decoder_config, workdir,
                            callbacks=callbacks, verbose=verbose)


class _DataFactory:
    """Train/val datasets of one dataset for a stage's TrainConfig."""

    def __init__(self, dataset, data_dir, skip_bad):
        self.dataset, self.data_dir, self.skip_bad = dataset, data_dir, skip_bad

    def __call__(self, config):
        runtime.make_strategy(config.distribution)  # a multi-worker strategy must come before any TF work
        return data_lib.build_train_val(self.dataset, self.data_dir, config, skip_bad=self.skip_bad)

    def settings(self):
        return {"dataset": self.dataset, "data_dir": os.path.abspath(self.data_dir), "skip_bad": bool(self.skip_bad)}


def _encoder_prefix(path):
    """The tap prefix of a trained encoder file: it names the encoder's stage folder.

    The model is loaded for it and dropped at once: its stage loads it again
    inside fit's strategy scope, where its variables must be created (an
    extra load per encoder, ~30 s for NASNet, rather than ~0.5 GB of models
    kept alive through both stages).
    """
    return encoder_prefix(load_model(path))


def finetune_encoder(encoder_path, data, config, workdir, *, callbacks=(), verbose=0):
    """Stage 1 for one encoder: `fit_saliency_model` from its trained weights; saves encoder.keras."""

    def model_fn():
        # Built in fit's scopes; a saved float32 encoder computes in the run's
        # mixed policy once its layers are switched (variables stay float32).
        encoder = decoder_stage.load_encoders([encoder_path], input_size=config.input_size)[0]
        encoder_stage.set_batchnorm_momentum(encoder)  # PyTorch's, as in stage one
        return set_compute_precision(encoder, config.mixed_precision or "float32")

    train_data, val_data = data(config)
    return fit_saliency_model(
        model_fn, train_data, val_data, config, workdir,
        run_settings={"stage": "finetune_encoder", "init_from": os.path.abspath(encoder_path),
                      **data.settings(), "batchnorm_momentum": encoder_stage.BATCHNORM_MOMENTUM, "loss": "EMLLoss"},
        final_model_name=encoder_stage.ENCODER_FILE, callbacks=callbacks, verbose=verbose,
    )


def finetune_decoder(encoder_paths, source, data, config, workdir, *, callbacks=(), verbose=0):
    """Stage 2: the source decoder fine-tuned over `encoder_paths`; saves emlnet.keras.

    Records `run.encoders` like a train.decoder run, so the result can be a
    later `--from`.
    """
    resize_mode = get_reader(data.dataset).MODE

    def model_fn():
        encoders = decoder_stage.load_encoders(encoder_paths, input_size=config.input_size)
        emlnet = decoder_stage.build_stage_emlnet(encoders, resize_mode=resize_mode, seed=config.seed)
        source_decoder = load_model(source.emlnet_path).decoder
        emlnet.decoder.set_weights(source_decoder.get_weights())  # warm start (a resume overwrites it)
        return emlnet.training_model()

    train_data, val_data = data(config)
    return decoder_stage.fit_decoder(
        model_fn, train_data, val_data, config, workdir,
        run_settings={"stage": "finetune_decoder", "encoders": [os.path.abspath(p) for p in encoder_paths],
                      "init_from": source.emlnet_path, **data.settings(), "resize_mode": resize_mode,
                      "output_mode": source.output_mode, "blur_sigma": source.blur_sigma, "loss": "EMLLoss"},
        resize_mode=resize_mode, output_mode=source.output_mode, blur_sigma=source.blur_sigma,
        callbacks=callbacks, verbose=verbose,
    )
