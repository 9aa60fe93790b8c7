"""Baseline saliency maps for evaluation tables: a center-bias Gaussian and a folder of maps.

The center bias is the classic reference row of the MIT benchmark: one
Gaussian at the image centre, stretched to the image's aspect ratio. It also
serves as the baseline map of information gain (IG), as in the benchmark, so
its own IG row is 0 by construction.

A folder of maps (another model's published maps, say) is looked up by image
name: `<folder>/<category>/<name>.<ext>` first (CAT2000 layout), then
`<folder>/<name>.<ext>`, for ext in MAP_EXTENSIONS. Maps may have any size:
the metrics resize them to the ground truth's size, as the benchmark does.
"""

import os

import numpy as np

# Gaussian sigma as a fraction of the image height (rows) and width (columns).
DEFAULT_CENTER_BIAS_SIGMA = 0.25
MAP_EXTENSIONS = (".png", ".jpg", ".jpeg", ".npy", ".bmp")


def center_bias_map(shape, *, sigma_fraction=DEFAULT_CENTER_BIAS_SIGMA):
    """A centred Gaussian (h, w) map, float64, peak 1.

    Formula:
        g(r, c) = exp(-((r - r0)^2 / (2 (s h)^2) + (c - c0)^2 / (2 (s w)^2)))
        r0 = (h - 1) / 2, c0 = (w - 1) / 2, s = sigma_fraction

    Args:
        shape: (h, w).
        sigma_fraction: sigma as a fraction of the height (rows) and width (columns).
    """
    height, width = (int(v) for v in shape)
    if height < 1 or width < 1:
        raise ValueError(f"shape must be positive, got {shape}")
    if not sigma_fraction > 0:
        raise ValueError(f"sigma_fraction must be > 0, got {sigma_fraction}")
    rows = (np.arange(height) - (height - 1) / 2.0) / (sigma_fraction * height)
    cols = (np.arange(width) - (width - 1) / 2.0) / (sigma_fraction * width)
    return np.exp(-0.5 * (rows[:, None] ** 2 + cols[None, :] ** 2))


def find_map(folder, name, category=None):
    """Path of the map for image `name` in `folder` (see module docstring).

    Raises:
        FileNotFoundError: naming every path tried.
    """
    stem = os.path.splitext(name)[0]
    places = [os.path.join(folder, category)] if category else []
    places.append(folder)
    tried = []
    for place in places:
        for extension in MAP_EXTENSIONS:
            path = os.path.join(place, stem + extension)
            if os.path.isfile(path):
                return path
            tried.append(path)
    raise FileNotFoundError(f"no baseline map for {name!r}; tried {', '.join(tried)}")


def load_map(path):
    """A 2-D float64 map from a .npy file or an image (colour images are converted to grey).

    Raises:
        ValueError: naming the file if it is not a 2-D map or not finite.
    """
    if path.endswith(".npy"):
        saliency_map = np.load(path, allow_pickle=False)
    else:
        from PIL import Image

        from keras_emlnet import image_files

        try:
            image_files.read_header(path)  # the pixel limit, before decoding (a map has no EXIF turn)
            with Image.open(path) as image:
                saliency_map = np.asarray(image.convert("F"))
        except image_files.ImageTooLargeError:
            raise
        except (OSError, SyntaxError, ValueError) as error:
            raise ValueError(f"{path}: cannot read the map: {error}") from error
    saliency_map = np.asarray(saliency_map, dtype=np.float64)
    if saliency_map.ndim == 3 and saliency_map.shape[-1] == 1:
        saliency_map = saliency_map[..., 0]
    if saliency_map.ndim != 2:
        raise ValueError(f"{path}: expected a 2-D map, got shape {saliency_map.shape}")
    if not np.all(np.isfinite(saliency_map)):
        raise ValueError(f"{path}: map holds NaN or inf values")
    return saliency_map


class FolderMaps:
    """Maps from a folder, looked up by image name (and category).

    Args:
        folder: the folder; must exist.
    """

    def __init__(self, folder):
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"baseline maps folder {folder!r} does not exist")
        self.folder = folder

    def __call__(self, name, category=None):
        return load_map(find_map(self.folder, name, category))
