"""inference_process: oneDNN weight caching only in inference-only processes, never over the user's choice."""

from keras_emlnet.inference import inference_process


def test_marks_the_process_unless_the_user_chose(monkeypatch):
    monkeypatch.delenv(inference_process.FROZEN_WEIGHTS_ENV, raising=False)
    assert inference_process.mark_inference_only_process() == "1"
    monkeypatch.setenv(inference_process.FROZEN_WEIGHTS_ENV, "0")
    assert inference_process.mark_inference_only_process() == "0"


def test_only_inference_entry_points_mark_their_process():
    # Training with cached weights would compute with stale filters: the
    # training CLIs and the library must never set the variable.
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[2]
    callers = sorted(str(path.relative_to(root)) for folder in ("keras_emlnet", "train", "serving")
                     for path in (root / folder).rglob("*.py")
                     if "mark_inference_only_process()" in path.read_text(encoding="utf-8")
                     and path.name != "inference_process.py")
    assert callers == ["serving/batch_score.py", "serving/server/__main__.py"]
