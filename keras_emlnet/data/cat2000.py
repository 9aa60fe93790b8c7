"""CAT2000 training set (Borji & Itti, 2015) as its users have it on disk.

    <data_dir>/[trainSet/]Stimuli/<Category>/<NNN>.jpg        1920×1080 RGB
    <data_dir>/[trainSet/]FIXATIONMAPS/<Category>/<NNN>.jpg   density map
    <data_dir>/[trainSet/]FIXATIONLOCS/<Category>/<NNN>.mat   ``fixLocs``: binary
                                                              (h, w) map

20 categories of 100 images. The release also has Stimuli/<Category>/Output/
folders; only images directly in a category folder are stimuli. No official
split: 1800/200, stratified by category (10 % of each), fixed seed.
"""

import os

from keras_emlnet.data import records, splits

MODE = "resize"
SPLITS = ("train", "val", "all")
VAL_FRACTION = 200 / 2000
IMAGE_EXTENSIONS = (".jpg", ".jpeg")
CATEGORIES = (
    "Action", "Affective", "Art", "BlackWhite", "Cartoon", "Fractal", "Indoor",
    "Inverted", "Jumbled", "LineDrawing", "LowResolution", "Noisy", "Object",
    "OutdoorManMade", "OutdoorNatural", "Pattern", "Random", "Satelite",
    "Sketch", "Social",
)  # the release's folder names (sic "Satelite")


def dataset_root(data_dir):
    """The folder holding Stimuli/: `data_dir` itself or its trainSet/."""
    nested = os.path.join(data_dir, "trainSet")
    return nested if os.path.isdir(os.path.join(nested, "Stimuli")) else data_dir


def list_samples(data_dir, split, *, skip_bad=False, report=None):
    """Lists the split's samples (paths only), checking partner files exist.

    Args:
        data_dir: the unzipped release (holding trainSet/) or trainSet/ itself.
        split: "train" (1800 of 2000), "val" (200 of 2000) or "all".
        skip_bad: report and leave out samples with a missing partner file.
        report: a records.BadDataReport to record left-out samples in.

    Returns:
        A list of records.SampleRecord (category set), sorted by category, name.
    """
    if split not in SPLITS:
        raise ValueError(f"CAT2000 split must be one of {SPLITS}, got {split!r}")
    root = dataset_root(data_dir)
    stimuli = os.path.join(root, "Stimuli")
    if not os.path.isdir(stimuli):
        raise FileNotFoundError(f"dataset folder not found: {stimuli}")
    candidates = []
    for category in sorted(os.listdir(stimuli)):
        if os.path.isdir(os.path.join(stimuli, category)):
            for filename in records.list_files(os.path.join(stimuli, category), IMAGE_EXTENSIONS):
                candidates.append((category, filename))
    if split != "all":
        train, val = splits.stratified_split_indices([c for c, _ in candidates], VAL_FRACTION)
        candidates = [candidates[i] for i in (train if split == "train" else val)]
    samples = []
    for category, filename in candidates:
        name = os.path.splitext(filename)[0]
        record = records.SampleRecord(
            name=name,
            category=category,
            image_path=os.path.join(stimuli, category, filename),
            density_path=os.path.join(root, "FIXATIONMAPS", category, filename),
            fixation_path=os.path.join(root, "FIXATIONLOCS", category, name + ".mat"),
        )
        if records.require_files(record, skip_bad=skip_bad, report=report):
            samples.append(record)
    return samples


def read_fixations(path, image_size):
    """0-based integer (rows, cols) of the nonzero pixels of ``fixLocs``."""
    contents = records.load_mat(path, required=("fixLocs",))
    fix_locs = contents["fixLocs"]
    if fix_locs.ndim != 2 or fix_locs.dtype.kind not in "biuf":
        raise records.BadSampleError(
            path, f"'fixLocs' is not a 2-D numeric map (dtype {fix_locs.dtype}, shape {fix_locs.shape})"
        )
    return records.binary_points(path, fix_locs != 0, image_size)
