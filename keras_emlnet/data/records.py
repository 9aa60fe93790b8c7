"""What every dataset reader shares: sample records, bad-data reporting, decoding.

A reader lists :class:`SampleRecord` s (file paths only, cheap); the pipeline
decodes them. Every problem with a sample becomes a :class:`BadSampleError`
naming the file and what is wrong. With ``skip_bad=True`` the problem is
logged as a warning, recorded in a :class:`BadDataReport` and the sample is
left out; nothing is ever skipped silently.
"""

import dataclasses
import logging
import os
import threading

import numpy as np
from PIL import Image

from keras_emlnet import image_files

_LOG = logging.getLogger(__name__)

# fixPts.jpg is a binary map stored as JPEG: compression rings around each
# point, so a pixel counts as a fixation only above half intensity.
BINARY_JPEG_THRESHOLD = 127


class BadSampleError(ValueError):
    """A sample's file is missing, unreadable or inconsistent.

    Attributes:
        path: the offending file.
        problem: what is wrong with it.
    """

    def __init__(self, path, problem):
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class BadDataReport:
    """Counts and describes the samples left out because of bad data.

    Thread-safe (the tf.data pipeline loads samples on several threads). Each
    file is counted once, however many epochs meet it.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._problems = {}

    def add(self, error):
        """Records a :class:`BadSampleError` and logs it as a warning."""
        with self._lock:
            is_new = error.path not in self._problems
            self._problems[error.path] = error.problem
        if is_new:
            _LOG.warning("skipping bad sample: %s", error)

    @property
    def count(self):
        """Number of distinct bad files met so far."""
        with self._lock:
            return len(self._problems)

    @property
    def problems(self):
        """{path: problem} for every bad file met so far."""
        with self._lock:
            return dict(self._problems)

    def __repr__(self):
        return f"BadDataReport(count={self.count})"


def handle_bad(error, *, skip_bad, report):
    """Raises `error`, or records it in `report` when `skip_bad` is set."""
    if not skip_bad:
        raise error
    if report is not None:
        report.add(error)
    else:
        _LOG.warning("skipping bad sample: %s", error)


@dataclasses.dataclass(frozen=True)
class SampleRecord:
    """One sample's files. Paths are strings; `category` is None outside CAT2000.

    Attributes:
        name: the image's stem (e.g. "COCO_train2014_000000000009").
        image_path: the stimulus.
        density_path: the dataset's continuous fixation (density) map, or None
            for splits without ground truth (SALICON test).
        fixation_path: the file holding the fixation locations, or None.
        category: CAT2000 category, else None.
    """

    name: str
    image_path: str
    density_path: str = None
    fixation_path: str = None
    category: str = None


def require_files(record, *, skip_bad, report):
    """True if all of `record`'s files exist; else raises or reports."""
    for path in (record.image_path, record.density_path, record.fixation_path):
        if path is not None and not os.path.isfile(path):
            problem = f"missing file (partner of {os.path.basename(record.image_path)})"
            if path == record.image_path:
                problem = "missing image"
            handle_bad(BadSampleError(path, problem), skip_bad=skip_bad, report=report)
            return False
    return True


def load_rgb(path):
    """Decodes an image file to upright uint8 RGB (h, w, 3) (`image_files.decode_rgb`).

    The pixel limit is checked from the header first and EXIF orientation
    applied; grey images are expanded.
    """
    try:
        return image_files.decode_rgb(path)
    except image_files.ImageTooLargeError as error:
        raise BadSampleError(path, f"too large ({error.pixels:,} pixels > {error.limit:,})") from error
    except (OSError, ValueError, SyntaxError) as error:  # PIL's decode errors
        raise BadSampleError(path, f"unreadable image ({error})") from error


def load_grey(path, expected_size):
    """Decodes a map image (PNG/JPEG) to float64 (h, w) in 0–255, size-checked.

    Maps are pixel grids aligned with their image: no EXIF orientation.
    """
    try:
        header = image_files.read_header(path)
        check_size(path, (header.height, header.width), expected_size)
        with Image.open(path) as image:
            array = np.asarray(image.convert("L"), dtype=np.float64)
    except image_files.ImageTooLargeError as error:
        raise BadSampleError(path, f"too large ({error.pixels:,} pixels > {error.limit:,})") from error
    except (OSError, ValueError, SyntaxError) as error:
        if isinstance(error, BadSampleError):
            raise
        raise BadSampleError(path, f"unreadable image ({error})") from error
    check_size(path, array.shape, expected_size)
    return array


def load_density(path, expected_size):
    """A density map file → float64 (h, w) that sums to 1."""
    density = load_grey(path, expected_size)
    total = density.sum()
    if not total > 0:
        raise BadSampleError(path, "density map is all zero")
    return density / total


def check_size(path, actual, expected):
    if tuple(actual[:2]) != tuple(expected[:2]):
        raise BadSampleError(
            path,
            f"size {actual[0]}x{actual[1]} (h x w) does not match the image's "
            f"{expected[0]}x{expected[1]}",
        )


def check_points(path, rows, cols, image_size):
    """Validates 0-based integer fixation pixels against the image size."""
    h, w = image_size
    if rows.size == 0:
        raise BadSampleError(path, "no fixations")
    outside = (rows < 0) | (rows >= h) | (cols < 0) | (cols >= w)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise BadSampleError(
            path,
            f"{int(outside.sum())} fixation(s) outside the {h}x{w} (h x w) image, "
            f"first at 0-based (row={rows[i]}, col={cols[i]})",
        )
    return rows, cols


def load_mat(path, required):
    """Reads a MATLAB file; raises BadSampleError if a `required` key is missing."""
    import scipy.io

    try:
        contents = scipy.io.loadmat(path)
    except Exception as error:  # scipy raises many types for corrupt files
        raise BadSampleError(path, f"unreadable .mat file ({error})") from error
    missing = [key for key in required if key not in contents]
    if missing:
        found = sorted(k for k in contents if not k.startswith("__"))
        raise BadSampleError(path, f".mat file has no {missing} field (found {found})")
    return contents


def binary_points(path, binary_map, image_size):
    """(rows, cols) of the nonzero pixels of a binary fixation map, size-checked."""
    check_size(path, binary_map.shape, image_size)
    rows, cols = np.nonzero(binary_map)
    return check_points(path, rows.astype(np.int64), cols.astype(np.int64), image_size)


def list_files(directory, extensions):
    """Sorted file names in `directory` with one of `extensions` (lower-case)."""
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"dataset folder not found: {directory}")
    return sorted(
        name
        for name in os.listdir(directory)
        if os.path.splitext(name)[1].lower() in extensions
        and os.path.isfile(os.path.join(directory, name))
    )
