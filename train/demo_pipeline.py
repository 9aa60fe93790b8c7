"""The `make demo` pipeline: EML-NET end to end on generated data, all outputs in one folder.

Every stage is a call into the library; this module only orders the calls,
times them and records what ran:

1. data      `keras_emlnet.data.generate.generate_dataset`: a small SALICON-format dataset
2. encoders  `keras_emlnet.encoder_training.train_encoder`, one run per backbone, from
             random initialisation (pretrained weights cannot be fetched offline)
3. decoder   `keras_emlnet.decoder_training.train_decoder` over the frozen encoders
4. evaluate  `keras_emlnet.evaluation.evaluate` on the val split, beside the center bias
5. export    `serving.export.export_saliency_model`: a versioned SavedModel
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
import glob
import logging
import os
import shutil
import time
from typing import Optional

from keras_emlnet import io_utils

_LOG = logging.getLogger(__name__)
DATASET = "salicon"
MODEL_NAME = "emlnet"
EXPORT_VERSION = 1
CONFIG_FILE = "config.json"
# Sigma of the released EML-NET code's blur (5 px at 480x640), scaled to the demo's input height.
PAPER_BLUR_SIGMA_AT_480 = 5.0


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
        summary: the evaluation's per-row means (evaluation_tables.summarize).
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
        marker = os.path.join(out, CONFIG_FILE)
        if not (os.path.isfile(marker) and '"demo"' in open(marker, encoding="utf-8").read()):
            raise FileExistsError(f"{out} exists and is not a previous demo's output folder; choose another --out")
        shutil.rmtree(out)
    os.makedirs(out, exist_ok=True)
    return out


def generate_data(config, data_dir):
    from keras_emlnet.data.generate import generate_dataset

    written = generate_dataset(DATASET, data_dir, config.num_images, seed=config.seed, image_size=config.image_size)
    _LOG.info("wrote %s images (%s) to %s", DATASET, written["files"], data_dir)


def train_encoders(config, data_dir, runs_dir, callbacks):
    """Trains one encoder per backbone; returns their `.keras` paths."""
    from keras_emlnet import encoder_training

    recipe = dataclasses.replace(
        encoder_training.ENCODER_RECIPE, epochs=1, batch_size=config.batch_size, input_size=config.input_size,
        steps_per_epoch=config.encoder_steps, max_steps=config.encoder_steps,
        validation_steps=config.validation_steps, seed=config.seed,
    )
    paths = []
    for backbone, name in zip(config.backbones, config.backbone_names()):
        _LOG.info("encoder %s: random initialisation (pretrained ImageNet/Places365 weights cannot be fetched "
                  "on this machine; see README 'Reproducing the paper'), %d steps of batch %d at %dx%d",
                  name, config.encoder_steps, config.batch_size, *config.input_size)
        result = encoder_training.train_encoder(
            backbone, DATASET, data_dir, recipe, os.path.join(runs_dir, name), callbacks=callbacks)
        paths.append(result.final_model_path)
    return paths


def train_decoder(config, data_dir, encoder_paths, workdir, callbacks):
    """Trains the decoder over the encoders; returns the `emlnet.keras` path."""
    from keras_emlnet import decoder_training

    recipe = dataclasses.replace(
        decoder_training.DECODER_RECIPE, epochs=1, batch_size=config.batch_size, input_size=config.input_size,
        steps_per_epoch=config.decoder_steps, max_steps=config.decoder_steps,
        validation_steps=config.validation_steps, seed=config.seed,
    )
    blur_sigma = PAPER_BLUR_SIGMA_AT_480 * config.input_size[0] / 480.0
    result = decoder_training.train_decoder(
        encoder_paths, DATASET, data_dir, recipe, workdir, blur_sigma=blur_sigma, callbacks=callbacks)
    return result.final_model_path


def load_emlnet(path):
    """Loads the trained `emlnet.keras` (once: evaluation and export share it)."""
    import importlib

    import keras

    # Every module whose layers an EMLNet holds must be imported (registered) before loading.
    for module in ("keras_emlnet.emlnet", "keras_emlnet.extractor", "keras_emlnet.encoder"):
        importlib.import_module(module)
    return keras.saving.load_model(path, compile=False)


def evaluate_model(config, model_path, data_dir, eval_dir):
    """Scores the model and the center bias on the val split; writes the tables.

    Returns:
        (the loaded model, the per-row summary, the table as text).
    """
    from keras_emlnet import evaluation, evaluation_tables
    from keras_emlnet.predictor import predictor_from_keras_model
    from keras_emlnet.progress import ThroughputProgress

    eval_config = evaluation.EvalConfig(
        dataset=DATASET, data_dir=data_dir, split="val", model_name="EML-NET (demo)", seed=config.seed,
        batch_size=config.batch_size,
    )
    model = load_emlnet(model_path)
    predictor = predictor_from_keras_model(model, source=model_path)
    results = evaluation.evaluate(
        predictor, eval_config, make_progress=lambda total: ThroughputProgress(total, verbose=2).add)
    evaluation_tables.write_results(
        eval_dir, results.summary, per_image=results.per_image,
        info={"dataset": DATASET, "split": "val", "images": results.summary[0]["images"]},
        config={**dataclasses.asdict(eval_config), **predictor.config()},
    )
    return model, results.summary, evaluation_tables.format_text(results.summary)


def export_model(model, model_path, export_base):
    """Exports version EXPORT_VERSION of the model; returns the version folder."""
    from serving.export import ExportConfig, export_saliency_model

    version_dir, record = export_saliency_model(
        model, ExportConfig(model=model_path, export_base=export_base, version=EXPORT_VERSION, model_name=MODEL_NAME))
    _LOG.info("exported %s (max |SavedModel - Keras| = %.3g)", version_dir, record["parity"]["max_abs_diff"])
    return version_dir


def pick_test_images(data_dir, count):
    """The first `count` generated test images (never seen in training or evaluation)."""
    paths = sorted(glob.glob(os.path.join(data_dir, "images", "test", "*.jpg")))
    if len(paths) < count:
        raise ValueError(f"{data_dir}/images/test holds {len(paths)} images, the demo scores {count}")
    return paths[:count]


def serve_and_score(config, export_base, images, overlays_dir, log_path, *, on_server_started=None):
    """Starts the local server, scores `images` over gRPC, stops the server (also on failure).

    Returns:
        {image: [map png, overlay png]}.

    Raises:
        RuntimeError: an image the server could not score (named).
    """
    from serving.client import ClientConfig, run_client
    from train.demo_server import LocalServer

    server = LocalServer(export_base, MODEL_NAME, log_path, start_timeout_s=config.server_start_timeout_s)
    try:
        server.start()
        _LOG.info("server pid %d serving %s: gRPC %s, REST 127.0.0.1:%d (log %s)",
                  server.pid, MODEL_NAME, server.grpc_address, server.rest_port, log_path)
        if on_server_started is not None:
            on_server_started(server)
        written, failed = run_client(ClientConfig(
            server=server.grpc_address, model_name=MODEL_NAME, images=tuple(images), out=overlays_dir))
    finally:
        code = server.stop()
        if server.pid is not None:
            _LOG.info("server pid %d stopped (exit code %s)", server.pid, code)
    if failed:
        raise RuntimeError(f"the server could not score {failed}")
    return written


def run_demo(config: DemoConfig, *, training_callbacks=(), on_server_started=None) -> DemoResult:
    """Runs every stage in order; see the module docstring.

    `config.json` in the output folder is rewritten after every stage with
    the stage times, and at the end with the status ("ok", or "failed" with
    the failing stage and error) — a failure is recorded before it is raised.

    Args:
        config: DemoConfig.
        training_callbacks: extra Keras callbacks for every training stage
            (the CLI passes a per-step progress logger).
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
        io_utils.write_json_atomic(os.path.join(out, CONFIG_FILE), record)
        return value

    io_utils.write_json_atomic(os.path.join(out, CONFIG_FILE), record)
    try:
        run_stage("data", generate_data, config, data_dir)
        encoder_paths = run_stage("encoders", train_encoders, config, data_dir, runs, training_callbacks)
        model_path = run_stage("decoder", train_decoder, config, data_dir, encoder_paths,
                               os.path.join(runs, MODEL_NAME), training_callbacks)
        model, result.summary, result.table = run_stage(
            "evaluate", evaluate_model, config, model_path, data_dir, os.path.join(out, "eval"))
        _LOG.info("evaluation on the %s val split (original resolution):\n%s", DATASET, result.table)
        version_dir = run_stage("export", export_model, model, model_path, export_base)
        images = pick_test_images(data_dir, config.client_images)
        result.scored = run_stage(
            "serve", serve_and_score, config, export_base, images, os.path.join(out, "overlays"),
            os.path.join(out, "server.log"), on_server_started=on_server_started)
    except BaseException as error:
        record.update(status="failed", failed_stage=stage, error=f"{type(error).__name__}: {error}",
                      total_seconds=round(time.monotonic() - started, 1))
        io_utils.write_json_atomic(os.path.join(out, CONFIG_FILE), record)
        raise
    result.paths = {
        "data": data_dir, "encoders": encoder_paths, "emlnet": model_path, "eval": os.path.join(out, "eval"),
        "export": version_dir, "overlays": os.path.join(out, "overlays"), "server_log": os.path.join(out, "server.log"),
    }
    record.update(status="ok", total_seconds=round(time.monotonic() - started, 1), paths=result.paths,
                  evaluation=result.summary, scored=result.scored)
    io_utils.write_json_atomic(os.path.join(out, CONFIG_FILE), record)
    return result
