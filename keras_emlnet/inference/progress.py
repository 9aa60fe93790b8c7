"""Progress for long runs: a throughput bar for scoring loops, timed stage logs.

`ThroughputProgress` is a thin wrapper over `keras.utils.Progbar` (which
shows time per step, not a rate): the rate since the start is passed as a
stateful metric so Progbar displays it as-is instead of averaging it.
`StageLog` reports the stages of a run that has no steps to count (the
SavedModel export) with their elapsed times, through a callable the caller
passes (library code never prints).
"""

import contextlib
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


class StageLog:
    """Reports named stages as they start and end, with elapsed and total seconds.

    Args:
        log: callable taking one message (e.g. absl's `logging.info`); None
            = silent.
        clock: a callable returning seconds (tests pass a fake clock).

    Use:
        stages = StageLog(logging.info)
        with stages.stage("saving the SavedModel"):
            ...
    logs "saving the SavedModel ..." then "saving the SavedModel: 12.3 s
    (total 14.0 s)"; a stage that raises logs "...: failed after 1.2 s".
    """

    def __init__(self, log=None, *, clock=time.perf_counter):
        self._log = log
        self._clock = clock
        self._start = clock()
        self.seconds = {}  # stage name -> seconds, for the stages that finished

    @property
    def elapsed(self):
        """Seconds since the StageLog was created."""
        return self._clock() - self._start

    def _emit(self, message):
        if self._log is not None:
            self._log(message)

    @contextlib.contextmanager
    def stage(self, name):
        """Context manager timing stage `name` (logged at its start and its end)."""
        self._emit(f"{name} ...")
        start = self._clock()
        try:
            yield
        except BaseException:
            self._emit(f"{name}: failed after {self._clock() - start:.1f} s")
            raise
        self.seconds[name] = seconds = self._clock() - start
        self._emit(f"{name}: {seconds:.1f} s (total {self.elapsed:.1f} s)")
