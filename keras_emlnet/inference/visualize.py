"""Saliency maps as pictures: 8-bit grey maps, the viridis colormap and heatmap overlays.

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


def viridis_colormap(values):
    """Values in [0, 1] (any shape) → uint8 RGB (..., 3), matplotlib's 'viridis'.

    Viridis is perceptually uniform and its lightness rises monotonically from
    dark purple (0) to yellow (1), so brighter always means more salient (jet's
    bright yellow-green middle does not). Matplotlib's 256-entry table sampled
    at 33 evenly spaced points (8 bits each), linearly interpolated: every
    value is within 2/255 of matplotlib's table.
    """
    v = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
    rgb = np.stack([np.interp(v, _VIRIDIS_POSITIONS, _VIRIDIS_KNOTS[:, c]) for c in range(3)], -1)
    return np.rint(rgb).astype(np.uint8)


def overlay_opacity(normalized, *, alpha=DEFAULT_OVERLAY_ALPHA):
    """The overlay's opacity per pixel: `alpha * m` for a min-max map `m` in [0, 1].

    0 where nothing is salient (the photo shows unchanged), rising linearly to
    `alpha` at the map's maximum.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return alpha * np.clip(np.asarray(normalized, dtype=np.float64), 0.0, 1.0)


def overlay(image, saliency_map, *, alpha=DEFAULT_OVERLAY_ALPHA):
    """Blends a viridis heatmap of `saliency_map` over `image`, opacity rising with saliency.

    The map is min-max normalised and resized (bilinear) to the image size if
    needed; each pixel blends with opacity `alpha * map` (`overlay_opacity`),
    so the photo stays visible where nothing is salient.

    Formula:
        out = (1 - alpha * m) * image + alpha * m * viridis(m),  m = minmax(map)

    Args:
        image: uint8 (h, w, 3) RGB (or (h, w) grey).
        saliency_map: 2-D map (or (h', w', 1)) of any size and scale.
        alpha: opacity at the map's maximum, in [0, 1].

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
    weight = overlay_opacity(normalized, alpha=alpha)[..., None]
    blended = (1.0 - weight) * image.astype(np.float64) + weight * viridis_colormap(normalized)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


# Viridis at 0, 1/32, ..., 1 (matplotlib's table, 8-bit RGB hex).
_VIRIDIS_HEX = (
    "440154 470d60 48186a 482374 472d7b 453681 424086 3f4989 3b528b 375a8d 33638d 2f6a8e 2c728e "
    "297a8e 26818e 23898e 21908c 1f988b 1f9f88 21a685 28ae80 31b57b 3ebc74 4cc26c 5dc963 6ece58 "
    "82d34c 96d83f abdc32 c0df24 d5e21a eae51a fde725"
)
_VIRIDIS_KNOTS = np.array([[int(h[i : i + 2], 16) for i in (0, 2, 4)] for h in _VIRIDIS_HEX.split()], dtype=np.float64)
_VIRIDIS_POSITIONS = np.linspace(0.0, 1.0, len(_VIRIDIS_KNOTS))
