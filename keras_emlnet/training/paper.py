"""The paper's SALICON experiments (Table 1) as one resumable run, behind `python -m train.paper`.

Stages, in order; each is one library call, and each is *finished* when its
`stage.json` exists (written atomically after the stage's final output):

    data                  --smoke only: `keras_emlnet.data.generate_dataset`, a tiny SALICON folder
    encoder_<backbone>    `encoder_stage.train_encoder`, each backbone on its own (§3.1-3.2)
    decoder_<experiment>  `decoder_stage.train_decoder` over the experiment's frozen encoders (§3.3):
                          densenet161, nasnet (Table 1 rows 1-2) and combined = both (row 3)
    evaluate_<experiment> `evaluation.evaluate.evaluate_and_write` on the SALICON val split
    results               results.md / results.json: our rows beside the paper's Table 1 rows,
                          the settings and time of every stage

A rerun of the same command skips finished stages and resumes an unfinished
training stage from its last finished epoch (`training.fit` backups). The
run's settings are recorded in `<workdir>/paper.json`; a rerun with other
settings (other than the experiments, which may be added) is refused.

Layout of the workdir:

    paper.json                       settings, experiments requested
    data/salicon/                    (--smoke) the generated dataset
    encoders/<backbone>/             an encoder run (encoder.keras, config.json, backup/, ..., stage.json)
    decoders/<experiment>/           a decoder run (emlnet.keras, ..., stage.json)
    eval/<experiment>/               results.md/.csv/.json of one model beside the center bias, stage.json
    results.md, results.json         the Table 1 comparison
"""

import dataclasses
import datetime
import json
import logging
import os
import time

from keras_emlnet import atomic_files
from keras_emlnet.evaluation import paper_results
from keras_emlnet.models import postprocess
from keras_emlnet.training import decoder_stage, encoder_stage
from keras_emlnet.training.config import ConfigMismatchError, TrainConfig

_LOG = logging.getLogger(__name__)

DATASET = "salicon"
# Experiment -> the backbones its decoder combines, in extractor order ("NasNet + DenseNet").
EXPERIMENTS = {"densenet161": ("densenet161",), "nasnet": ("nasnet",), "combined": ("nasnet", "densenet161")}
EXPERIMENT_LABELS = {"densenet161": "DenseNet", "nasnet": "NasNet", "combined": "NasNet + DenseNet"}
# Table 1 of the paper (SALICON val). "AUC" is the SALICON benchmark's AUC-Judd.
TABLE1_COLUMNS = (("nss", "NSS"), ("cc", "CC"), ("auc_judd", "AUC"), ("auc_shuffled", "sAUC"), ("kld", "KLD"),
                  ("sim", "SIM"))
# The paper's Table 1 row of each experiment (defined once, in evaluation.paper_results).
PAPER_ROW_OF_EXPERIMENT = {"densenet161": "DenseNet", "nasnet": "NasNet", "combined": "NasNet+DenseNet"}
PAPER_TABLE1 = {
    experiment: paper_results.SALICON_VAL[row] for experiment, row in PAPER_ROW_OF_EXPERIMENT.items()
}
STAGE_FILE = "stage.json"
PLAN_FILE = "paper.json"
RESULTS_FILE = "results.md"
RESULTS_JSON = "results.json"
# --smoke: the same stages at the smallest sizes that still train every backbone
# (DenseNet-161 from scratch turns to NaN below 64x64, WORKSPACE.md "demo sizes").
SMOKE_INPUT_SIZE = (64, 96)
SMOKE_IMAGES = 16  # 8 train, 4 val, 4 test
SMOKE_IMAGE_SIZE = (120, 160)


@dataclasses.dataclass(frozen=True)
class PaperConfig:
    """What `run_paper` runs (recorded in `<workdir>/paper.json`).

    Attributes:
        data_dir: the SALICON root (with --smoke: where the generated one is
            written; None: `<workdir>/data/salicon`).
        workdir: the run's folder.
        experiments: names from `EXPERIMENTS`, in order.
        smoke: generated data, smallest sizes, random initialisation.
        encoder, decoder: the stages' TrainConfigs (the paper's recipes).
        weights: encoders' initial weights (`encoder_stage.PRETRAINED`; None
            in smoke runs: no pretrained file can be fetched offline).
        blur_sigma: the models' blur (the paper's 5 px at 480x640, scaled).
        eval_limit: evaluate only the first images of the val split (smoke).
        eval_batch_size: images per model call in evaluation.
        seed: seeds data generation (smoke) and evaluation draws.
    """

    data_dir: str
    workdir: str
    experiments: tuple = tuple(EXPERIMENTS)
    smoke: bool = False
    encoder: TrainConfig = encoder_stage.ENCODER_RECIPE
    decoder: TrainConfig = decoder_stage.DECODER_RECIPE
    weights: object = encoder_stage.PRETRAINED
    blur_sigma: object = postprocess.paper_blur_sigma(decoder_stage.DECODER_RECIPE.input_size)
    eval_limit: object = None
    eval_batch_size: int = 8
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "experiments", tuple(self.experiments))
        unknown = [name for name in self.experiments if name not in EXPERIMENTS]
        if unknown or not self.experiments:
            raise ValueError(f"experiments must be a non-empty subset of {list(EXPERIMENTS)}, got {list(self.experiments)}")
        if self.encoder.input_size != self.decoder.input_size:
            raise ValueError(f"encoder and decoder input sizes differ: {self.encoder.input_size} vs "
                             f"{self.decoder.input_size} (encoders are built for a static size)")
        if self.data_dir is None and not self.smoke:
            raise ValueError("data_dir is needed (the SALICON root) unless smoke")

    def backbones(self):
        """The backbones the experiments need, each trained once, in first-use order."""
        names = []
        for experiment in self.experiments:
            names += [b for b in EXPERIMENTS[experiment] if b not in names]
        return names

    def settings(self):
        """Everything but the experiments, JSON-ready: a rerun must match it."""
        values = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        values.pop("experiments")
        values["encoder"], values["decoder"] = self.encoder.to_dict(), self.decoder.to_dict()
        values["data_dir"] = os.path.abspath(self.data_dir) if self.data_dir else None
        values["workdir"] = os.path.abspath(self.workdir)
        return values


def paper_config(data_dir, workdir, *, experiments=tuple(EXPERIMENTS), smoke=False, mixed_precision=None):
    """The paper's protocol (or its --smoke miniature) as a PaperConfig."""
    encoder, decoder = encoder_stage.ENCODER_RECIPE, decoder_stage.DECODER_RECIPE
    extra = {}
    if smoke:
        # Two epochs of one step each, so a kill can land mid-stage after an epoch backup.
        tiny = dict(epochs=2, steps_per_epoch=1, validation_steps=1, batch_size=2, lr_decay_epochs=(1,),
                    input_size=SMOKE_INPUT_SIZE)
        encoder = dataclasses.replace(encoder, **tiny)
        decoder = dataclasses.replace(decoder, **tiny)
        extra = dict(weights=None, eval_limit=4, eval_batch_size=2)
    encoder = dataclasses.replace(encoder, mixed_precision=mixed_precision)
    decoder = dataclasses.replace(decoder, mixed_precision=mixed_precision)
    return PaperConfig(data_dir=data_dir, workdir=workdir, experiments=tuple(experiments), smoke=smoke,
                       encoder=encoder, decoder=decoder, blur_sigma=postprocess.paper_blur_sigma(decoder.input_size),
                       **extra)


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage: its name, folder, and the call that runs it (returns {output: path or value})."""

    name: str
    folder: str
    run: object
    settings: dict


def stage_status(folder):
    """The stage's `stage.json` record if it finished, else None."""
    path = os.path.join(folder, STAGE_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def data_dir_of(config):
    """The SALICON folder the stages read."""
    if config.data_dir is not None:
        return os.path.abspath(config.data_dir)
    return os.path.join(os.path.abspath(config.workdir), "data", DATASET)


def plan_stages(config, *, callbacks=()):
    """The stage graph of `config`, in run order (a stage only reads earlier stages' outputs)."""
    workdir = os.path.abspath(config.workdir)
    data_dir = data_dir_of(config)
    stages = []
    if config.smoke:
        stages.append(Stage("data", os.path.join(workdir, "data"), lambda: _generate(config, data_dir),
                            {"dataset": DATASET, "num_images": SMOKE_IMAGES, "image_size": list(SMOKE_IMAGE_SIZE),
                             "seed": config.seed, "out": data_dir}))
    encoder_files = {}
    for backbone in config.backbones():
        folder = os.path.join(workdir, "encoders", backbone)
        encoder_files[backbone] = os.path.join(folder, encoder_stage.ENCODER_FILE)
        stages.append(Stage(
            f"encoder_{backbone}", folder,
            lambda backbone=backbone, folder=folder: _train_encoder(config, backbone, data_dir, folder, callbacks),
            {"backbone": backbone, "weights": config.weights, "train": config.encoder.to_dict()}))
    for experiment in config.experiments:
        folder = os.path.join(workdir, "decoders", experiment)
        paths = [encoder_files[b] for b in EXPERIMENTS[experiment]]
        stages.append(Stage(
            f"decoder_{experiment}", folder,
            lambda paths=paths, folder=folder: _train_decoder(config, paths, data_dir, folder, callbacks),
            {"encoders": list(EXPERIMENTS[experiment]), "blur_sigma": config.blur_sigma,
             "train": config.decoder.to_dict()}))
        eval_folder = os.path.join(workdir, "eval", experiment)
        model = os.path.join(folder, decoder_stage.EMLNET_FILE)
        stages.append(Stage(
            f"evaluate_{experiment}", eval_folder,
            lambda experiment=experiment, model=model, eval_folder=eval_folder:
                _evaluate(config, experiment, model, data_dir, eval_folder),
            {"split": "val", "limit": config.eval_limit, "batch_size": config.eval_batch_size, "seed": config.seed}))
    return stages


def run_paper(config, *, callbacks=()):
    """Runs every unfinished stage of `config` in order, then writes results.md; see the module docstring.

    Args:
        config: a PaperConfig (`paper_config`).
        callbacks: extra Keras callbacks for the training stages.

    Returns:
        {"results": results.md path, "json": results.json path, "stages": {name: record}}.

    Raises:
        ConfigMismatchError: the workdir holds a paper run with other settings.
        Whatever a stage raises (e.g. FileNotFoundError for missing pretrained weights).
    """
    workdir = os.path.abspath(config.workdir)
    os.makedirs(workdir, exist_ok=True)
    _record_plan(config, workdir)
    records = {}
    for stage in plan_stages(config, callbacks=callbacks):
        record = stage_status(stage.folder)
        if record is not None:
            _LOG.info("stage %s: finished earlier (%.0f s), skipped", stage.name, record["seconds"])
        else:
            _LOG.info("stage %s: running (%s)", stage.name, stage.folder)
            begin = time.monotonic()
            outputs = stage.run()
            record = {"stage": stage.name, "seconds": round(time.monotonic() - begin, 1), "settings": stage.settings,
                      "outputs": outputs,
                      "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
            os.makedirs(stage.folder, exist_ok=True)
            atomic_files.write_json_atomic(os.path.join(stage.folder, STAGE_FILE), record)  # finished
            _LOG.info("stage %s: done in %.0f s", stage.name, record["seconds"])
        records[stage.name] = record
    return write_paper_results(config, records)


def _record_plan(config, workdir):
    path = os.path.join(workdir, PLAN_FILE)
    settings = json.loads(json.dumps(config.settings(), default=atomic_files._json_default))
    experiments = list(config.experiments)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            recorded = json.load(f)
        differences = [f"{key}: recorded {recorded['settings'].get(key)!r}, now {settings.get(key)!r}"
                       for key in sorted(set(settings) | set(recorded["settings"]))
                       if recorded["settings"].get(key) != settings.get(key)]
        if differences:
            raise ConfigMismatchError(
                f"{workdir} holds a paper run with other settings ({'; '.join(differences)}); rerun the recorded "
                f"command (see {path}) or use a new --workdir. Only --experiments may change.")
        experiments = list(dict.fromkeys(recorded["experiments"] + experiments))
    atomic_files.write_json_atomic(path, {"settings": settings, "experiments": experiments})


def _generate(config, data_dir):
    from keras_emlnet.data import generate_dataset

    generate_dataset(DATASET, data_dir, SMOKE_IMAGES, seed=config.seed, image_size=SMOKE_IMAGE_SIZE)
    return {"data_dir": data_dir}


def _train_encoder(config, backbone, data_dir, folder, callbacks):
    if config.weights is None:
        _LOG.info("encoder %s: random initialisation (a smoke run cannot fetch pretrained weights offline)", backbone)
    result = encoder_stage.train_encoder(backbone, DATASET, data_dir, config.encoder, folder, weights=config.weights,
                                         callbacks=callbacks)
    return {"model": result.final_model_path, "resumed_from_epoch": result.initial_epoch, "steps": result.steps}


def _train_decoder(config, encoder_paths, data_dir, folder, callbacks):
    result = decoder_stage.train_decoder(encoder_paths, DATASET, data_dir, config.decoder, folder,
                                         blur_sigma=config.blur_sigma, callbacks=callbacks)
    return {"model": result.final_model_path, "resumed_from_epoch": result.initial_epoch, "steps": result.steps}


def _evaluate(config, experiment, model_path, data_dir, out_dir):
    from keras_emlnet.evaluation import evaluate as evaluation
    from keras_emlnet.inference.predictor import load_predictor

    eval_config = evaluation.EvalConfig(
        dataset=DATASET, data_dir=data_dir, split="val", model_name=f"EML-NET {EXPERIMENT_LABELS[experiment]}",
        seed=config.seed, limit=config.eval_limit, batch_size=config.eval_batch_size)
    written = evaluation.evaluate_and_write(load_predictor(model_path), eval_config, out_dir)
    return {"results": written.paths["json"], "rows": written.results.summary}


def _fmt(value):
    return "nan" if value is None or value != value else f"{value:.3f}"


def format_results(config, records):
    """results.md: our rows beside the paper's Table 1 rows, then every stage's settings and time."""
    header = "| experiment | source | " + " | ".join(h for _, h in TABLE1_COLUMNS) + " | post-processing |"
    lines = ["# EML-NET on SALICON val: Table 1 reproduced", ""]
    if config.smoke:
        lines += ["**Smoke run**: generated data, the smallest sizes, random initialisation (no pretrained weights "
                  "offline). It checks the stages run and resume; its numbers are not comparable to the paper's.", ""]
    lines += [header, "|---|---|" + "---:|" * len(TABLE1_COLUMNS) + "---|"]
    for experiment in config.experiments:
        label = EXPERIMENT_LABELS[experiment]
        rows = records[f"evaluate_{experiment}"]["outputs"]["rows"]
        ours = rows[0]
        postprocessing = _postprocessing_of(records[f"evaluate_{experiment}"])
        lines.append(f"| {label} | ours ({ours['images']} images) | "
                     + " | ".join(_fmt(ours[key]) for key, _ in TABLE1_COLUMNS) + f" | {postprocessing} |")
        lines.append(f"| {label} | paper | " + " | ".join(_fmt(PAPER_TABLE1[experiment][key])
                                                       for key, _ in TABLE1_COLUMNS) + " | Gaussian blur sigma 5 px at 480x640 |")
    center = records[f"evaluate_{config.experiments[0]}"]["outputs"]["rows"][1]
    lines.append(f"| center bias | ours ({center['images']} images) | "
                 + " | ".join(_fmt(center[key]) for key, _ in TABLE1_COLUMNS) + " | none |")
    lines += ["", "KLD: lower is better; the other columns: higher is better. AUC is AUC-Judd. Ours: means over "
              "images at the original resolution (keras_emlnet.evaluation); every metric of every row is in "
              "eval/<experiment>/results.md.", "", "## Stages", "",
              "| stage | seconds | resumed from epoch | settings |", "|---|---:|---:|---|"]
    total = 0.0
    for name, record in records.items():
        total += record["seconds"]
        resumed = record["outputs"].get("resumed_from_epoch", "") if isinstance(record.get("outputs"), dict) else ""
        lines.append(f"| {name} | {record['seconds']:.1f} | {resumed} | {_settings_text(record['settings'])} |")
    lines += ["", f"Total: {total:.0f} s of stage time (each stage's time is the run that finished it; a killed "
              "attempt's time is not counted).", ""]
    return "\n".join(lines)


def _settings_text(settings, prefix=""):
    """`key=value` pairs (nested dicts flattened as `train.epochs`), unset (None) values left out."""
    parts = []
    for key, value in sorted(settings.items()):
        if isinstance(value, dict):
            parts.append(_settings_text(value, f"{prefix}{key}."))
        elif value is not None:
            parts.append(f"{prefix}{key}={json.dumps(value)}")
    return ", ".join(part for part in parts if part)


def _postprocessing_of(record):
    with open(record["outputs"]["results"], encoding="utf-8") as f:
        described = json.load(f).get("postprocessing", {})
    return next(iter(described.values()), "unknown")


def write_paper_results(config, records):
    """Writes results.md and results.json (atomically); returns their paths and the stage records."""
    workdir = os.path.abspath(config.workdir)
    paths = {"results": os.path.join(workdir, RESULTS_FILE), "json": os.path.join(workdir, RESULTS_JSON)}
    rows = {experiment: {"ours": records[f"evaluate_{experiment}"]["outputs"]["rows"][0],
                         "paper": PAPER_TABLE1[experiment]} for experiment in config.experiments}
    atomic_files.write_text_atomic(paths["results"], format_results(config, records))
    atomic_files.write_json_atomic(paths["json"], {"smoke": config.smoke, "rows": rows,
                                                   "stages": list(records.values()),  # in run order
                                                   "settings": config.settings()})
    return {**paths, "stages": records}
