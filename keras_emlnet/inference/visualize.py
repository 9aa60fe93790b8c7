"""Saliency maps as pictures: 8-bit grey maps, a jet colormap and heatmap overlays.

NumPy only (no matplotlib, no TensorFlow), so scoring and serving clients can
write pictures cheaply. Shared by `serving.batch_score` and the serving client.
"""

import numpy as np

from keras_emlnet.models.geometry import bilinear_resize

# Overlay strength where the map is at its maximum; where it is 0 the image
# shows through unchanged, so low-saliency regions stay readable.
DEFAULT_OVERLAY_ALPHA = 0.6


def minmax_normalize(saliency_map):
    """Rescales a map to [0, 1] (float64); a constant map becomes all zeros.

    Raises:
        ValueError: if the map holds NaN or inf values.
    """
    saliency_map = np.asarray(saliency_map, dtype=np.float64)
    if not np.all(np.isfinite(saliency_map)):
        raise ValueError("saliency map holds NaN or inf values")
    if saliency_map.size == 0:
        return saliency_map.copy()
    low, high = saliency_map.min(), saliency_map.max()
    if high <= low:
        return np.zeros_like(saliency_map)
    return (saliency_map - low) / (high - low)


def map_to_uint8(saliency_map):
    """A 2-D map → uint8 (h, w) grey image, min-max normalised to 0–255 (rounded)."""
    saliency_map = np.asarray(saliency_map)
    if saliency_map.ndim == 3 and saliency_map.shape[-1] == 1:
        saliency_map = saliency_map[..., 0]
    if saliency_map.ndim != 2:
        raise ValueError(f"expected a 2-D map, got shape {saliency_map.shape}")
    return np.rint(minmax_normalize(saliency_map) * 255.0).astype(np.uint8)


def jet_colormap(values):
    """Values in [0, 1] (any shape) → uint8 RGB (..., 3), MATLAB/matplotlib 'jet'.

    Formula:
        red = clip(1.5 - |4v - 3|, 0, 1), green = clip(1.5 - |4v - 2|, 0, 1),
        blue = clip(1.5 - |4v - 1|, 0, 1)
    """
    v = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)[..., None]
    centres = np.array([3.0, 2.0, 1.0])
    rgb = np.clip(1.5 - np.abs(4.0 * v - centres), 0.0, 1.0)
    return np.rint(rgb * 255.0).astype(np.uint8)


def overlay(image, saliency_map, *, alpha=DEFAULT_OVERLAY_ALPHA):
    """Blends a jet heatmap of `saliency_map` over `image`.

    The map is min-max normalised and resized (bilinear) to the image size if
    needed; each pixel blends with weight `alpha * map`.

    Formula:
        out = (1 - alpha * m) * image + alpha * m * jet(m),  m = minmax(map)

    Args:
        image: uint8 (h, w, 3) RGB (or (h, w) grey).
        saliency_map: 2-D map (or (h', w', 1)) of any size and scale.
        alpha: overlay weight at the map's maximum, in [0, 1].

    Returns:
        uint8 (h, w, 3) RGB.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an (h, w, 3) image, got shape {image.shape}")
    saliency_map = np.asarray(saliency_map, dtype=np.float32)
    if saliency_map.ndim == 3 and saliency_map.shape[-1] == 1:
        saliency_map = saliency_map[..., 0]
    if saliency_map.ndim != 2:
        raise ValueError(f"expected a 2-D map, got shape {saliency_map.shape}")
    if saliency_map.shape != image.shape[:2]:
        saliency_map = bilinear_resize(saliency_map, image.shape[:2])
    normalized = minmax_normalize(saliency_map)
    weight = alpha * normalized[..., None]
    blended = (1.0 - weight) * image.astype(np.float64) + weight * jet_colormap(normalized)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)
