"""keras_emlnet.inference.progress: the images/s rate against a fake clock."""

from keras_emlnet.inference.progress import ThroughputProgress


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
