"""The dataset readers by name, and one sample decoded the NumPy way.

`get_reader(name)` returns the reader module (`salicon`, `mit1003`,
`cat2000`); `load_sample` decodes one record with it (PIL, scipy), the
reference every other path (the in-graph pipeline, the TFRecord conversion,
evaluation) is checked against.
"""

from keras_emlnet.data import cat2000, mit1003, records, salicon

READERS = {"salicon": salicon, "mit1003": mit1003, "cat2000": cat2000}


def get_reader(dataset):
    """The reader module for "salicon", "mit1003" or "cat2000"."""
    if dataset not in READERS:
        raise ValueError(f"dataset must be one of {sorted(READERS)}, got {dataset!r}")
    return READERS[dataset]


def load_sample(reader, record):
    """Decodes one record: (uint8 image (h,w,3), float64 density (h,w) sum 1, rows, cols).

    Raises:
        records.BadSampleError naming the file and the problem.
    """
    image = records.load_rgb(record.image_path)
    size = image.shape[:2]
    density = records.load_density(record.density_path, size)
    rows, cols = reader.read_fixations(record.fixation_path, size)
    return image, density, rows, cols
