"""SALICON 2017 (LSUN challenge release) as its users have it on disk.

    <data_dir>/images/{train,val,test}/COCO_<split>2014_<id>.jpg   640×480 RGB
    <data_dir>/maps/{train,val}/COCO_<split>2014_<id>.png          density map
    <data_dir>/fixations/{train,val}/COCO_<split>2014_<id>.mat

Each fixations .mat holds ``image`` (the name), ``resolution`` ([h, w]) and
``gaze``: a struct array with one element per observer, fields ``location``
(mouse samples, (K, 2)), ``timestamp`` ((K, 1)) and ``fixations`` ((M, 2)
fixations inferred from the mouse trace), all in 1-based (x, y) pixels.
We read ``fixations``. The test split has images only.
"""

import os

import numpy as np

from keras_emlnet.data import records

MODE = "resize"
SPLITS = ("train", "val", "test")
IMAGE_EXTENSIONS = (".jpg", ".jpeg")


def list_samples(data_dir, split, *, skip_bad=False, report=None):
    """Lists the split's samples (paths only), checking partner files exist.

    Args:
        data_dir: folder holding images/, maps/ and fixations/.
        split: "train", "val" or "test" (images only).
        skip_bad: report and leave out samples with a missing partner file
            instead of raising.
        report: a records.BadDataReport to record left-out samples in.

    Returns:
        A list of records.SampleRecord, sorted by name.
    """
    if split not in SPLITS:
        raise ValueError(f"SALICON split must be one of {SPLITS}, got {split!r}")
    image_dir = os.path.join(data_dir, "images", split)
    samples = []
    for filename in records.list_files(image_dir, IMAGE_EXTENSIONS):
        name = os.path.splitext(filename)[0]
        record = records.SampleRecord(name=name, image_path=os.path.join(image_dir, filename))
        if split != "test":
            record = records.SampleRecord(
                name=name,
                image_path=record.image_path,
                density_path=os.path.join(data_dir, "maps", split, name + ".png"),
                fixation_path=os.path.join(data_dir, "fixations", split, name + ".mat"),
            )
        if records.require_files(record, skip_bad=skip_bad, report=report):
            samples.append(record)
    return samples


def read_fixations(path, image_size):
    """0-based integer (rows, cols) of all observers' fixations in one .mat file.

    Raises:
        records.BadSampleError: unreadable file, missing ``gaze``/``fixations``
            fields, a ``resolution`` other than `image_size`, or a fixation
            outside the image.
    """
    contents = records.load_mat(path, required=("gaze",))
    gaze = contents["gaze"]
    if gaze.dtype.names is None or "fixations" not in gaze.dtype.names:
        raise records.BadSampleError(
            path, f"'gaze' is not a struct array with a 'fixations' field (fields: {gaze.dtype.names})"
        )
    if "resolution" in contents:
        resolution = tuple(int(v) for v in np.ravel(contents["resolution"])[:2])
        if resolution != tuple(image_size):
            raise records.BadSampleError(
                path, f"resolution {resolution} (h, w) does not match the image's {tuple(image_size)}"
            )
    points = [np.asarray(observer["fixations"], dtype=np.float64) for observer in gaze.ravel()]
    points = [p.reshape(-1, 2) for p in points if p.size]
    if not points:
        raise records.BadSampleError(path, "no fixations")
    xy = np.concatenate(points)
    if not np.isfinite(xy).all():
        raise records.BadSampleError(path, "non-finite fixation coordinates")
    # MATLAB pixels are 1-based (x, y); fractional positions round to their pixel.
    cols = np.rint(xy[:, 0]).astype(np.int64) - 1
    rows = np.rint(xy[:, 1]).astype(np.int64) - 1
    return records.check_points(path, rows, cols, image_size)
