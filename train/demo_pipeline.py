"""The `make demo` pipeline: EML-NET end to end on generated data, all outputs in one folder.

Every stage is one call into the library (`train/demo_stages.py`, one function
per stage); this module only orders the calls, times them and records what ran:

1. data      `keras_emlnet.data.generate_dataset`: a small SALICON-format dataset
2. encoders  `keras_emlnet.training.encoder_stage.train_encoder`, one run per backbone, from
             random initialisation (pretrained weights cannot be fetched offline)
3. decoder   `keras_emlnet.training.decoder_stage.train_decoder` over the frozen encoders
4. evaluate  `keras_emlnet.evaluation.evaluate.evaluate` on the val split, beside the center bias
5. export    `serving.export.export.export_saliency_model`: a versioned SavedModel
6. serve     `serving.server` in a child process on 127.0.0.1 (`train.demo_server`),
             test images scored through `serving.client` over gRPC: maps and overlays

Layout of `out`:

    config.json              the DemoConfig, then stage times, status and results
    data/salicon/            the generated dataset (images/, maps/, fixations/)
    runs/<backbone>/         each encoder's training run (encoder.keras, config.json, ...)
    runs/emlnet/             the decoder's training run (emlnet.keras, ...)
    eval/                    results.md/.csv/.json and the evaluation's config.json
    exports/emlnet/1/        the SavedModel (+ warmup requests, config.json)
    server.log               the server's log
    overlays/                <image>_saliency.png and <image>_overlay.png per scored image

The demo's sizes are far below the paper's (inputs 480x640, 10 + 5 epochs on
10,000 images, pretrained backbones): it proves the wiring on a CPU in
minutes; it does not reproduce the paper's numbers.
"""

import dataclasses
import json
import logging
import os
import shutil
import time

from keras_emlnet import atomic_files
from train import demo_stages as stages
from train.demo_stages import DATASET, MODEL_NAME

_LOG = logging.getLogger(__name__)
CONFIG_FILE = "config.json"


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """What the demo runs (recorded in `<out>/config.json`).

    Attributes:
        out: the output folder (created; a previous demo's folder is replaced).
        backbones: registry names (or `BackboneSpec`s) of the encoders.
        num_images: generated images: half train, a quarter val, a quarter test.
        image_size: (h, w) of the generated images (SALICON's are 480x640).
        input_size: (H, W) model input size of encoders and decoder.
        batch_size: training batch size of every stage.
        encoder_steps: optimizer steps per encoder (one epoch).
        decoder_steps: optimizer steps of the decoder (one epoch).
        validation_steps: validation batches after each training epoch.
        client_images: test images scored through the server.
        seed: seeds data generation, initialisation, data order and metrics.
        server_start_timeout_s: longest wait for the server to serve the model.
    """

    out: str = "demo_output"
    backbones: tuple = ("nasnet", "densenet161")
    num_images: int = 24
    image_size: tuple = (480, 640)
    input_size: tuple = (96, 128)
    batch_size: int = 4
    encoder_steps: int = 3
    decoder_steps: int = 6
    validation_steps: int = 1
    client_images: int = 3
    seed: int = 0
    server_start_timeout_s: float = 600.0

    def __post_init__(self):
        for name in ("image_size", "input_size", "backbones"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("num_images", "batch_size", "encoder_steps", "decoder_steps", "validation_steps",
                     "client_images"):
            if getattr(self, name) < 1:
                raise ValueError(f"DemoConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.num_images < 4:
            raise ValueError(f"DemoConfig.num_images must be >= 4 (train, val and test splits), got {self.num_images}")
        if len(self.backbones) < 1:
            raise ValueError("DemoConfig.backbones needs at least one backbone")

    def backbone_names(self):
        """Registry names (a BackboneSpec's `name`), in order."""
        return [getattr(b, "name", b) for b in self.backbones]

    def to_dict(self):
        values = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        values["backbones"] = self.backbone_names()
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


@dataclasses.dataclass
class DemoResult:
    """What a demo run produced.

    Attributes:
        out: the output folder (absolute).
        seconds: {stage: wall-clock seconds}, in stage order.
        table: the evaluation table as aligned text.
        summary: the evaluation's per-row means (keras_emlnet.evaluation.tables.summarize).
        paths: {what: path} of the main outputs.
        scored: {test image: [map png, overlay png]} written by the client.
    """

    out: str
    seconds: dict = dataclasses.field(default_factory=dict)
    table: str = ""
    summary: list = dataclasses.field(default_factory=list)
    paths: dict = dataclasses.field(default_factory=dict)
    scored: dict = dataclasses.field(default_factory=dict)


def prepare_output_dir(out):
    """Creates `out`; a previous demo's folder (it has the demo's config.json) is emptied first.

    Raises:
        FileExistsError: `out` exists, is not empty and is not a demo folder
            (nothing is deleted).
    """
    out = os.path.abspath(os.fspath(out))
    if os.path.isdir(out) and os.listdir(out):
        if not _is_demo_folder(out):
            raise FileExistsError(f"{out} exists and is not a previous demo's output folder; choose another --out")
        shutil.rmtree(out)
    os.makedirs(out, exist_ok=True)
    return out


def _is_demo_folder(out):
    try:
        with open(os.path.join(out, CONFIG_FILE), encoding="utf-8") as f:
            return "demo" in json.load(f)
    except (OSError, ValueError, TypeError):
        return False


def run_demo(config: DemoConfig, *, training_callbacks=(), verbose=0, on_server_started=None) -> DemoResult:
    """Runs every stage in order; see the module docstring.

    `config.json` in the output folder is rewritten after every stage with
    the stage times, and at the end with the status ("ok", or "failed" with
    the failing stage and error) — a failure is recorded before it is raised.

    Args:
        config: DemoConfig.
        training_callbacks: extra Keras callbacks for every training stage
            (the CLI passes a per-step progress logger in logs).
        verbose: 1 = Keras's per-step progress bars (training, evaluation);
            2 = a line per evaluation (training lines come from
            `training_callbacks`); 0 = neither. Above 0 the export logs its
            stages with their seconds.
        on_server_started: called with the running `LocalServer` (tests).

    Raises:
        FileExistsError: `config.out` is a non-demo folder.
        Whatever a stage raises.
    """
    out = prepare_output_dir(config.out)
    result = DemoResult(out=out)
    data_dir = os.path.join(out, "data", DATASET)
    runs = os.path.join(out, "runs")
    export_base = os.path.join(out, "exports", MODEL_NAME)
    record = {"demo": "keras-emlnet end to end", "config": config.to_dict(), "seconds": result.seconds,
              "status": "running"}
    started = time.monotonic()
    stage = None

    def run_stage(name, function, *args, **kwargs):
        nonlocal stage
        stage = name
        _LOG.info("=== stage %d/6: %s", len(result.seconds) + 1, name)
        begin = time.monotonic()
        value = function(*args, **kwargs)
        result.seconds[name] = round(time.monotonic() - begin, 1)
        _LOG.info("=== %s done in %.0f s (%.0f s in all)", name, result.seconds[name], time.monotonic() - started)
        atomic_files.write_json_atomic(os.path.join(out, CONFIG_FILE), record)
        return value

    atomic_files.write_json_atomic(os.path.join(out, CONFIG_FILE), record)
    try:
        run_stage("data", stages.generate_data, config, data_dir)
        encoder_paths = run_stage("encoders", stages.train_encoders, config, data_dir, runs, training_callbacks,
                                  verbose=verbose)
        model_path = run_stage("decoder", stages.train_decoder, config, data_dir, encoder_paths,
                               os.path.join(runs, MODEL_NAME), training_callbacks, verbose=verbose)
        model, result.summary, result.table = run_stage(
            "evaluate", stages.evaluate_model, config, model_path, data_dir, os.path.join(out, "eval"),
            verbose=verbose)
        _LOG.info("evaluation on the %s val split (original resolution):\n%s", DATASET, result.table)
        version_dir = run_stage("export", stages.export_model, model, model_path, export_base,
                                verbose=verbose)
        images = stages.pick_test_images(data_dir, config.client_images)
        result.scored = run_stage(
            "serve", stages.serve_and_score, config, export_base, images, os.path.join(out, "overlays"),
            os.path.join(out, "server.log"), on_server_started=on_server_started)
    except BaseException as error:
        record.update(status="failed", failed_stage=stage, error=f"{type(error).__name__}: {error}",
                      total_seconds=round(time.monotonic() - started, 1))
        atomic_files.write_json_atomic(os.path.join(out, CONFIG_FILE), record)
        raise
    result.paths = {
        "data": data_dir, "encoders": encoder_paths, "emlnet": model_path, "eval": os.path.join(out, "eval"),
        "export": version_dir, "overlays": os.path.join(out, "overlays"), "server_log": os.path.join(out, "server.log"),
    }
    record.update(status="ok", total_seconds=round(time.monotonic() - started, 1), paths=result.paths,
                  evaluation=result.summary, scored=result.scored)
    atomic_files.write_json_atomic(os.path.join(out, CONFIG_FILE), record)
    return result
