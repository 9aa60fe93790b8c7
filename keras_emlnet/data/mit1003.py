"""MIT1003 (Judd et al., 2009) as its users have it on disk.

    <data_dir>/ALLSTIMULI/<name>.jpeg                   varying sizes (max side 1024)
    <data_dir>/ALLFIXATIONMAPS/<name>_fixMap.jpg        density map, image size
    <data_dir>/ALLFIXATIONMAPS/<name>_fixPts.jpg        binary fixation map (JPEG)

No official split: the paper holds out 100 of the 1003 images; we draw them
with a fixed seed (splits.SPLIT_SEED) and keep the proportion 100/1003 (at
least 1) for other sizes. Images are padded to 4:3 then resized (paper).
"""

import os

from keras_emlnet.data import records, splits

MODE = "pad_to_4_3"
SPLITS = ("train", "val", "all")
VAL_FRACTION = 100 / 1003
IMAGE_EXTENSIONS = (".jpeg", ".jpg")


def list_samples(data_dir, split, *, skip_bad=False, report=None):
    """Lists the split's samples (paths only), checking partner files exist.

    Args:
        data_dir: folder holding ALLSTIMULI/ and ALLFIXATIONMAPS/.
        split: "train" (903 of 1003), "val" (100 of 1003) or "all".
        skip_bad: report and leave out samples with a missing partner file.
        report: a records.BadDataReport to record left-out samples in.

    Returns:
        A list of records.SampleRecord, sorted by name.
    """
    if split not in SPLITS:
        raise ValueError(f"MIT1003 split must be one of {SPLITS}, got {split!r}")
    image_dir = os.path.join(data_dir, "ALLSTIMULI")
    map_dir = os.path.join(data_dir, "ALLFIXATIONMAPS")
    filenames = records.list_files(image_dir, IMAGE_EXTENSIONS)
    # The split is drawn over every stimulus before any is dropped as bad, so
    # a bad file never moves another image between train and val.
    if split != "all":
        train, val = splits.split_indices(
            len(filenames), splits.holdout_count(len(filenames), VAL_FRACTION)
        )
        filenames = [filenames[i] for i in (train if split == "train" else val)]
    samples = []
    for filename in filenames:
        name = os.path.splitext(filename)[0]
        record = records.SampleRecord(
            name=name,
            image_path=os.path.join(image_dir, filename),
            density_path=os.path.join(map_dir, name + "_fixMap.jpg"),
            fixation_path=os.path.join(map_dir, name + "_fixPts.jpg"),
        )
        if records.require_files(record, skip_bad=skip_bad, report=report):
            samples.append(record)
    return samples


def read_fixations(path, image_size):
    """0-based integer (rows, cols) of the fixations in a *_fixPts.jpg map."""
    binary = records.load_grey(path, image_size) > records.BINARY_JPEG_THRESHOLD
    return records.binary_points(path, binary, image_size)
