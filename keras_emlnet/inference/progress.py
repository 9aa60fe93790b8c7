"""A progress bar that shows throughput (images/s) for scoring and evaluation loops.

A thin wrapper over `keras.utils.Progbar` (which shows time per step, not a
rate): the rate since the start is passed as a stateful metric so Progbar
displays it as-is instead of averaging it.
"""

import time


class ThroughputProgress:
    """Counts processed items and displays `<unit>/s` beside a Keras progress bar.

    Args:
        total: number of items expected (None if unknown).
        unit: display name of one item, e.g. "image" (the rate shows as
            "images/s").
        verbose: 1 = animated bar, 2 = one line at the end, 0 = silent.
        clock: a callable returning seconds (tests pass a fake clock).
    """

    def __init__(self, total, *, unit="image", verbose=1, clock=time.perf_counter):
        import keras

        self.unit = unit
        self.rate_name = f"{unit}s/s"
        self._clock = clock
        self._start = clock()
        self.done = 0
        self._bar = keras.utils.Progbar(
            total, verbose=verbose, stateful_metrics=[self.rate_name], unit_name=unit
        )

    @property
    def elapsed(self):
        """Seconds since the bar was created."""
        return self._clock() - self._start

    @property
    def rate(self):
        """Items per second since the bar was created (0 before any time passed)."""
        elapsed = self.elapsed
        return self.done / elapsed if elapsed > 0 else 0.0

    def add(self, count, **values):
        """Adds `count` processed items; extra `values` are shown (averaged) too."""
        self.done += int(count)
        shown = [(self.rate_name, self.rate)] + list(values.items())
        self._bar.update(self.done, values=shown)
