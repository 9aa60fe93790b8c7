"""Batch scoring as an Apache Beam pipeline: the library behind `python -m serving.beam_score`.

    image jobs (planned on the launcher: names, resume; written to `beam_score_plan.jsonl`
      in the output folder and read back with ReadFromText, which splits it across workers
      and keeps a million paths out of the job graph)
      → Reshuffle (spread over workers)
      → DecodeForModel (Beam filesystems read + TF decode + geometry; unreadable → dead letter)
      → RunInference(KeyedModelHandler(SaliencyModelHandler)) (model-frame batch → maps at
        the original size; a failing batch → dead letter)
      → WriteOutputs (serving.batch's encodings, written through Beam's filesystems;
        an unsafe name → dead letter)
      → summary (count scored + dead letters) written once, from inside the pipeline

The same files as `serving.batch_score`: maps (PNG/NPY), overlays,
`batch_score_summary.json` and `batch_score_config.json`. The pipeline holds no
runner-specific code, so DirectRunner, DataflowRunner, FlinkRunner and
SparkRunner run it unchanged; the summary is written by the pipeline itself, so
it exists even when the launcher does not wait for the job.
"""

import dataclasses
import time

import apache_beam as beam
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

from serving.batch import files as batch_files
from serving.batch import scoring as batch_scoring
from serving.beam import files as beam_files
from serving.beam.model_handler import ModelInput, SaliencyModelHandler

DEAD_LETTER = "dead_letter"
PLAN_FILE = "beam_score_plan.jsonl"


@dataclasses.dataclass(frozen=True)
class BeamScoreConfig:
    """Settings of one Beam scoring run (recorded in its config file).

    Attributes:
        model: `.keras` file or SavedModel folder (local, gs://, s3://).
        images: folder (recursive) or glob pattern (local, gs://, s3://).
        out: output folder (local, gs://, s3://).
        format: "png", "npy" or "both" (as serving.batch_score).
        overlays: also write `<name>_overlay.jpg`.
        batch_size: images per model call on a worker.
        precision: "auto" (decided on each worker: bfloat16 only where its
            hardware computes it faster), "float32", "bfloat16" or "float16"
            (reduced ones: `.keras` models only), as serving.batch_score.
    """

    model: str
    images: str
    out: str
    format: str = "png"
    overlays: bool = False
    batch_size: int = 8
    precision: str = "auto"

    def __post_init__(self):
        self.score_config  # validates format and batch_size as serving.batch_score does

    @property
    def score_config(self):
        """The same settings as serving.batch_score's ScoreConfig (file names, suffixes)."""
        return batch_scoring.ScoreConfig(
            model=self.model, images=self.images, out=self.out, format=self.format,
            overlays=self.overlays, batch_size=self.batch_size, precision=self.precision,
        )

    @property
    def suffixes(self):
        return self.score_config.suffixes


@dataclasses.dataclass(frozen=True)
class ScoringPlan:
    """What the launcher decided before the pipeline starts.

    Attributes:
        pending: (source, name) pairs still to score.
        already_done: images whose outputs all exist (skipped: resume).
        rejected: failure dicts for inputs with no safe output name.
        images: inputs found.
    """

    pending: list
    already_done: int
    rejected: list
    images: int


def plan_run(config):
    """Discovers the images (output folder excluded), names them, and skips finished ones."""
    entries = beam_files.plan_entries(config.images, exclude_dir=config.out)
    jobs = [e for e in entries if isinstance(e, batch_files.ImageJob)]
    rejected = [
        {"source": e.source, "error": e.reason} for e in entries if isinstance(e, batch_files.Rejected)
    ]
    existing = beam_files.existing_files(config.out)

    def done(job):
        try:
            return all(
                beam_files.exists_in(existing, beam_files.output_path(config.out, job.name, suffix))
                for suffix in config.suffixes.values()
            )
        except batch_files.UnsafeNameError:
            return False  # WriteOutputs reports it

    pending = [(job.source, job.name) for job in jobs if not done(job)]
    return ScoringPlan(pending, len(jobs) - len(pending), rejected, len(entries))


class DecodeForModel(beam.DoFn):
    """(source, name) → ((source, name), ModelInput); an unreadable file → the dead letter output."""

    def __init__(self, input_size, resize_mode):
        self._input_size = tuple(int(v) for v in input_size)
        self._resize_mode = resize_mode

    def setup(self):
        import tensorflow as tf

        from serving.batch.pipeline import decode_for_model

        @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
        def decode(data):
            return decode_for_model(data, self._input_size, self._resize_mode)

        self._decode = decode

    def process(self, job):
        import tensorflow as tf
        from apache_beam.io.filesystem import BeamIOError

        from serving.batch.pipeline import decode_error_message, explain_undecodable

        source, name = job
        errors = (tf.errors.OpError, OSError, ValueError, BeamIOError)
        data = None
        try:
            data = beam_files.read_bytes(source)
            image, original_size = self._decode(tf.constant(data))
        except errors as error:
            message = None
            if data is not None:  # the header's pixel count, else the eager decoder's own message
                message = explain_undecodable(data, name=source)  # (a graph's is generic)
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTER, {"source": source, "error": message or decode_error_message(error)}
            )
            return
        yield (source, name), ModelInput(image.numpy(), tuple(int(v) for v in original_size.numpy()))


class WriteOutputs(beam.DoFn):
    """((source, name), map) → source once its files exist; an unsafe name → the dead letter output."""

    def __init__(self, out, suffixes, output_mode):
        self._out = out
        self._suffixes = dict(suffixes)
        self._output_mode = output_mode

    def process(self, element):
        from keras_emlnet import image_files

        (source, name), saliency_map = element

        def read_image():
            # Header checked before decoding, EXIF applied, as batch scoring's overlays (issue 19).
            try:
                return image_files.decode_rgb(beam_files.read_bytes(source), name=source)
            except image_files.ImageTooLargeError:
                raise
            except (OSError, ValueError, SyntaxError) as error:
                raise batch_scoring.UnreadableImageError(
                    f"cannot read the image for its overlay: {error}") from error

        try:
            paths = {
                kind: beam_files.output_path(self._out, name, suffix)
                for kind, suffix in self._suffixes.items()
            }
            encoded = batch_scoring.encode_outputs(paths, saliency_map, self._output_mode, read_image)
            for kind, data in encoded.items():
                beam_files.write_bytes(paths[kind], data)
        except (batch_files.UnsafeNameError, image_files.ImageTooLargeError,
                batch_scoring.UnreadableImageError) as error:
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, {"source": source, "error": str(error)})
            return
        yield source


def plan_path(out):
    """`<out>/beam_score_plan.jsonl`: one {"source", "name"} line per image this run scores."""
    return beam_files.output_path(out, PLAN_FILE[: -len(".jsonl")], ".jsonl")


def write_plan(out, pending):
    import json

    lines = "".join(json.dumps({"source": s, "name": n}) + "\n" for s, n in pending)
    beam_files.write_bytes(plan_path(out), lines.encode("utf-8"))


def _job_from_line(line):
    import json

    job = json.loads(line)
    return job["source"], job["name"]


def _failed_batch(failure):
    """RunInference's failed_inferences element → one dead letter per image of the batch.

    The element is (batch of ((source, name), ModelInput), error), where Beam 2.77 gives the
    error as (type, repr, traceback lines) rather than the exception itself.
    """
    batch, error = failure
    message = error[1] if isinstance(error, tuple) and len(error) > 1 else repr(error)
    for item in batch:
        key = item[0] if isinstance(item, tuple) else None
        source = key[0] if isinstance(key, tuple) else str(key)
        yield {"source": source, "error": f"inference failed: {message}"}


class _WriteSummary(beam.DoFn):
    def __init__(self, path, static):
        self._path = path
        self._static = static

    def process(self, unused, scored, failed):
        summary = dict(self._static)
        elapsed = time.time() - summary.pop("start_time")
        summary["scored"] = scored
        summary["failed"] = summary["failed"] + sorted(failed, key=lambda f: f["source"])
        summary["failed_count"] = len(summary["failed"])
        summary["interrupted"] = False
        summary["elapsed_s"] = round(elapsed, 3)
        summary["images_per_s"] = round(scored / elapsed, 3) if elapsed > 0 else 0.0
        beam_files.write_json(self._path, summary)
        yield summary


def build_pipeline(pipeline, config, plan, model_info, *, runner, start_time):
    """Adds the scoring transforms to `pipeline`; returns the PCollection of the one summary dict.

    Args:
        pipeline: a beam.Pipeline.
        config: BeamScoreConfig.
        plan: ScoringPlan from `plan_run`.
        model_info: the model's `SaliencyPredictor.config()` (input_size,
            resize_mode, output_mode) read by the launcher.
        runner: the runner's name, recorded in the summary.
        start_time: time.time() when the run started (for elapsed_s).
    """
    handler = KeyedModelHandler(
        SaliencyModelHandler(config.model, precision=config.precision, batch_size=config.batch_size)
    )
    jobs = (
        pipeline
        | "ReadPlan" >> beam.io.ReadFromText(plan_path(config.out))
        | "ParsePlan" >> beam.Map(_job_from_line)
        | "Spread" >> beam.Reshuffle()
    )
    decoded = jobs | "Decode" >> beam.ParDo(
        DecodeForModel(model_info["input_size"], model_info["resize_mode"])
    ).with_outputs(DEAD_LETTER, main="images")
    maps, inference_dlq = decoded.images | "RunInference" >> RunInference(
        handler
    ).with_exception_handling()
    written = maps | "Write" >> beam.ParDo(
        WriteOutputs(config.out, config.suffixes, model_info["output_mode"])
    ).with_outputs(DEAD_LETTER, main="written")
    failed_inference = inference_dlq.failed_inferences | "FailedBatches" >> beam.FlatMap(_failed_batch)
    dead_letters = (
        (decoded[DEAD_LETTER], failed_inference, written[DEAD_LETTER])
        | "DeadLetters" >> beam.Flatten()
    )
    scored = written.written | "CountScored" >> beam.combiners.Count.Globally()
    failed = dead_letters | "ListDeadLetters" >> beam.combiners.ToList()
    static = {
        "images": plan.images,
        "already_done": plan.already_done,
        "failed": list(plan.rejected),
        "runner": runner,
        "start_time": start_time,
    }
    summary_file = batch_scoring.summary_path(config.out, 0, 1)
    return (
        pipeline
        | "Once" >> beam.Create([None])
        | "Summary" >> beam.ParDo(
            _WriteSummary(summary_file, static),
            scored=beam.pvalue.AsSingleton(scored),
            failed=beam.pvalue.AsSingleton(failed),
        )
    )


def run(config, pipeline_args=(), *, logger=None):
    """Scores the collection with Beam; returns the summary dict it also writes.

    Args:
        config: BeamScoreConfig.
        pipeline_args: Beam pipeline options as command-line strings
            (`--runner=DataflowRunner`, `--direct_num_workers=2`, ...).
        logger: optional callable(str) for notable events.

    The launcher loads the model once (for its input size, geometry and output
    mode, recorded in the config file), plans the run, then runs the pipeline
    and waits for it. If the pipeline fails, the summary says "interrupted": true.

    Raises:
        FileNotFoundError: if no images match, or the model is not found.
    """
    import tempfile

    import tensorflow as tf
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    from keras_emlnet.inference.predictor import load_predictor

    start_time = time.time()
    log = logger or (lambda message: None)
    options = PipelineOptions(list(pipeline_args))
    runner = options.view_as(StandardOptions).runner or "DirectRunner"
    with tempfile.TemporaryDirectory(prefix="emlnet-model-") as cache:
        predictor = load_predictor(
            beam_files.localize_model(config.model, cache), precision=config.precision
        )
        model_info = {**predictor.config(), "model": config.model}
        del predictor
    plan = plan_run(config)
    write_plan(config.out, plan.pending)
    beam_files.write_json(
        batch_scoring.config_path(config.out, 0, 1),
        {
            **dataclasses.asdict(config),
            **model_info,
            "runner": runner,
            "pipeline_options": options.get_all_options(drop_default=True),
            "tensorflow": tf.__version__,
            "apache_beam": beam.__version__,
        },
    )
    for failure in plan.rejected:
        log(f"skipped {failure['source']}: {failure['error']}")
    log(f"{len(plan.pending)} images to score, {plan.already_done} already done, runner {runner}")
    try:
        with beam.Pipeline(options=options) as pipeline:
            build_pipeline(pipeline, config, plan, model_info, runner=runner, start_time=start_time)
    except BaseException as error:
        beam_files.write_json(
            batch_scoring.summary_path(config.out, 0, 1),
            {
                "images": plan.images, "already_done": plan.already_done, "scored": None,
                "failed": plan.rejected, "failed_count": len(plan.rejected), "interrupted": True,
                "runner": runner, "error": f"{type(error).__name__}: {error}",
                "elapsed_s": round(time.time() - start_time, 3),
            },
        )
        raise
    summary = read_summary(config.out)
    for failure in summary["failed"][len(plan.rejected):]:
        log(f"dead letter {failure['source']}: {failure['error']}")
    return summary


def read_summary(out):
    """The summary a finished run wrote (local or remote `out`)."""
    import json

    return json.loads(beam_files.read_bytes(batch_scoring.summary_path(out, 0, 1)))
