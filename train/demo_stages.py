"""The demo's stages: one function per stage, each a call into the library (see demo_pipeline)."""

import dataclasses
import glob
import logging
import os

_LOG = logging.getLogger(__name__)
DATASET = "salicon"
MODEL_NAME = "emlnet"
EXPORT_VERSION = 1


def generate_data(config, data_dir):
    """Writes `config.num_images` synthetic SALICON-format images to `data_dir`."""
    from keras_emlnet.data import generate_dataset

    written = generate_dataset(DATASET, data_dir, config.num_images, seed=config.seed, image_size=config.image_size)
    _LOG.info("wrote %s images (%s) to %s", DATASET, written["files"], data_dir)


def train_encoders(config, data_dir, runs_dir, callbacks, *, verbose=0):
    """Trains one encoder per backbone; returns their `.keras` paths (verbose 1: Keras's bar)."""
    from keras_emlnet.training import encoder_stage

    recipe = dataclasses.replace(
        encoder_stage.ENCODER_RECIPE, epochs=1, batch_size=config.batch_size, input_size=config.input_size,
        steps_per_epoch=config.encoder_steps, max_steps=config.encoder_steps,
        validation_steps=config.validation_steps, seed=config.seed,
    )
    paths = []
    for backbone, name in zip(config.backbones, config.backbone_names()):
        _LOG.info("encoder %s: random initialisation (pretrained ImageNet/Places365 weights cannot be fetched "
                  "on this machine; see README 'Reproducing the paper'), %d steps of batch %d at %dx%d",
                  name, config.encoder_steps, config.batch_size, *config.input_size)
        result = encoder_stage.train_encoder(
            backbone, DATASET, data_dir, recipe, os.path.join(runs_dir, name), weights=None, callbacks=callbacks,
            verbose=_fit_verbosity(verbose))
        paths.append(result.final_model_path)
    return paths


def train_decoder(config, data_dir, encoder_paths, workdir, callbacks, *, verbose=0):
    """Trains the decoder over the encoders; returns the `emlnet.keras` path (verbose 1: Keras's bar)."""
    from keras_emlnet.models import postprocess
    from keras_emlnet.training import decoder_stage

    recipe = dataclasses.replace(
        decoder_stage.DECODER_RECIPE, epochs=1, batch_size=config.batch_size, input_size=config.input_size,
        steps_per_epoch=config.decoder_steps, max_steps=config.decoder_steps,
        validation_steps=config.validation_steps, seed=config.seed,
    )
    blur_sigma = postprocess.paper_blur_sigma(config.input_size)  # the released code's 5 px at 480x640
    result = decoder_stage.train_decoder(
        encoder_paths, DATASET, data_dir, recipe, workdir, blur_sigma=blur_sigma, callbacks=callbacks,
        verbose=_fit_verbosity(verbose))
    return result.final_model_path


def evaluate_model(config, model_path, data_dir, eval_dir, *, verbose=2):
    """Scores the model and the center bias on the val split; writes the tables.

    Returns:
        (the loaded model, the per-row summary, the table as text).
    """
    from keras_emlnet.evaluation import evaluate as evaluation
    from keras_emlnet.inference.predictor import predictor_from_keras_model
    from keras_emlnet.inference.progress import ThroughputProgress
    from keras_emlnet.models.saving import load_model

    eval_config = evaluation.EvalConfig(
        dataset=DATASET, data_dir=data_dir, split="val", model_name="EML-NET (demo)", seed=config.seed,
        batch_size=config.batch_size,
    )
    model = load_model(model_path)  # once: the export stage reuses it
    predictor = predictor_from_keras_model(model, source=model_path)
    written = evaluation.evaluate_and_write(
        predictor, eval_config, eval_dir, make_progress=lambda total: ThroughputProgress(total, verbose=verbose).add)
    return model, written.results.summary, written.text


def export_model(model, model_path, export_base, *, verbose=0):
    """Exports version EXPORT_VERSION of the model; returns the version folder (verbose > 0: stage logs)."""
    from serving.export.export import ExportConfig, export_saliency_model

    version_dir, record = export_saliency_model(
        model, ExportConfig(model=model_path, export_base=export_base, version=EXPORT_VERSION, model_name=MODEL_NAME),
        log=_LOG.info if verbose else None)
    _LOG.info("exported %s (max |SavedModel - Keras| = %.3g)", version_dir, record["parity"]["max_abs_diff"])
    return version_dir


def _fit_verbosity(verbose):
    # Only the per-step bar comes from Keras: the demo's log lines (one per
    # step, a few steps per stage) come from the CLI's StepLogger callback.
    return 1 if verbose == 1 else 0


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
    from serving.client.client import ClientConfig, run_client
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
