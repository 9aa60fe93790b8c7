"""keras_emlnet.inference.progress: the images/s rate and the stage log against a fake clock."""

import pytest

from keras_emlnet.inference.progress import StageLog, ThroughputProgress


def test_rate_is_items_over_elapsed_time():
    now = [10.0]
    progress = ThroughputProgress(10, unit="image", verbose=0, clock=lambda: now[0])
    assert progress.rate == 0.0
    now[0] = 12.0
    progress.add(4)
    assert progress.done == 4
    assert progress.rate == 2.0
    assert progress.rate_name == "images/s"
    now[0] = 14.0
    progress.add(6)
    assert progress.rate == 2.5
    assert progress.elapsed == 4.0


def test_stage_log_reports_each_stage_with_its_seconds_and_the_total():
    now = [100.0]
    messages = []
    stages = StageLog(messages.append, clock=lambda: now[0])
    with stages.stage("saving"):
        now[0] = 102.5
    now[0] = 103.0  # time between stages counts in the total only
    with stages.stage("checking"):
        now[0] = 104.25
    assert messages == ["saving ...", "saving: 2.5 s (total 2.5 s)",
                        "checking ...", "checking: 1.2 s (total 4.2 s)"]
    assert stages.seconds == {"saving": 2.5, "checking": 1.25}


def test_stage_log_reports_a_failed_stage_and_reraises():
    now = [0.0]
    messages = []
    stages = StageLog(messages.append, clock=lambda: now[0])
    with pytest.raises(RuntimeError, match="boom"):
        with stages.stage("saving"):
            now[0] = 3.0
            raise RuntimeError("boom")
    assert messages == ["saving ...", "saving: failed after 3.0 s"]
    assert stages.seconds == {}
    with StageLog(None).stage("silent"):  # no log: nothing to call
        pass
