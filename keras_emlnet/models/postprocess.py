"""Post-processing of saliency maps: Gaussian blur, output modes, original size.

Output modes (what `EMLNet` returns and what serving and batch scoring write):
- "minmax": (x - min) / (max - min), in [0, 1] (the MIT benchmark's saliency
  map convention; a constant map becomes all zeros).
- "probability": a density that sums to 1 over the map.
- "log_density": log of the "probability" map, so exp(map) sums to 1 (what
  probabilistic benchmarks such as the MIT/Tübingen one score).
- "raw": the decoder's unnormalised non-negative map, unchanged. Used to train
  (the loss normalises by itself), not offered by serving.

The density is floored by mixing in a tiny uniform share (`DENSITY_FLOOR`), so
"log_density" is finite everywhere (a single -inf pixel would make a
log-likelihood score -inf) and "probability" equals exp("log_density").

The blur follows the released EML-NET code (`skimage.filters.gaussian(pred, 5)`
on the 480x640 map before normalising), i.e. `scipy.ndimage.gaussian_filter`
with mode "nearest" and truncate 4.0: sigma is in pixels of the model size.
"""

import numpy as np
import tensorflow as tf

from keras_emlnet.models import geometry

MINMAX = "minmax"
PROBABILITY = "probability"
LOG_DENSITY = "log_density"
RAW = "raw"
OUTPUT_MODES = (MINMAX, PROBABILITY, LOG_DENSITY)
ALL_OUTPUT_MODES = OUTPUT_MODES + (RAW,)

# Share of the density spread uniformly over the map (see the module docstring).
DENSITY_FLOOR = 1e-6
# Kernel radius in sigmas, as scipy.ndimage / skimage.filters.gaussian.
BLUR_TRUNCATE = 4.0
# The released code's blur: sigma 5 px on its 480x640 maps (eval_combined.py post_process).
PAPER_BLUR_SIGMA = 5.0
PAPER_BLUR_INPUT_SIZE = (480, 640)


def paper_blur_sigma(input_size):
    """The paper's blur at model size `input_size`: 5 px at 480x640, scaled with the height."""
    return PAPER_BLUR_SIGMA * float(input_size[0]) / PAPER_BLUR_INPUT_SIZE[0]


def describe(output_mode, blur_sigma, input_size=None):
    """A one-line description of a model's post-processing (evaluation tables say which produced a row)."""
    if not blur_sigma:
        blur = "no blur"
    else:
        at = f" at {input_size[0]}x{input_size[1]}" if input_size is not None else ""
        blur = f"Gaussian blur sigma {float(blur_sigma):.3g} px{at}"
        if input_size is not None and abs(float(blur_sigma) - paper_blur_sigma(input_size)) < 1e-6:
            blur += " (the paper's)"
    return f"{blur}, {output_mode}"


def check_output_mode(output_mode, *, allow_raw=True):
    """Raises ValueError unless `output_mode` is a known mode."""
    modes = ALL_OUTPUT_MODES if allow_raw else OUTPUT_MODES
    if output_mode not in modes:
        raise ValueError(f"output_mode must be one of {modes}, got {output_mode!r}")
    return output_mode


def gaussian_kernel_1d(sigma, truncate=BLUR_TRUNCATE):
    """Normalised 1-D Gaussian weights of radius int(truncate * sigma + 0.5).

    Formula:
    ```
    k[i] = exp(-i**2 / (2 sigma**2)) / sum_j exp(-j**2 / (2 sigma**2)),
    i = -radius .. radius
    ```
    """
    sigma = float(sigma)
    if not sigma > 0:
        raise ValueError(f"blur sigma must be > 0 pixels, got {sigma}")
    radius = int(truncate * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    return (kernel / kernel.sum()).astype(np.float32)


def gaussian_blur(maps, sigma, truncate=BLUR_TRUNCATE):
    """Separable Gaussian blur of (B, H, W, C) maps, edges replicated.

    Matches `scipy.ndimage.gaussian_filter(m, sigma, mode="nearest",
    truncate=truncate)` on each (H, W) map. Works with dynamic H and W.
    """
    maps = tf.convert_to_tensor(maps, tf.float32)
    kernel = tf.constant(gaussian_kernel_1d(sigma, truncate))
    radius = (int(kernel.shape[0]) - 1) // 2
    channels = maps.shape[-1]
    if channels is None:
        raise ValueError("gaussian_blur needs a static channel count")
    for axis in (1, 2):
        size = tf.shape(maps)[axis]
        # "nearest" edges: clip indices, so any radius works, also > size.
        index = tf.clip_by_value(tf.range(-radius, size + radius), 0, size - 1)
        padded = tf.gather(maps, index, axis=axis)
        shape = (-1, 1, 1, 1) if axis == 1 else (1, -1, 1, 1)
        depthwise = tf.tile(tf.reshape(kernel, shape), [1, 1, channels, 1])
        maps = tf.nn.depthwise_conv2d(padded, depthwise, strides=[1, 1, 1, 1], padding="VALID")
    return maps


def apply_output_mode(maps, output_mode):
    """Normalises each (H, W) map of (B, H, W, C) maps for `output_mode`.

    Formula:
    ```
    minmax:      (x - min x) / (max x - min x), 0 where max == min
    probability: p = (1 - F) * relu(x) / sum relu(x) + F / (H W)
                 (uniform where sum relu(x) == 0), F = DENSITY_FLOOR
    log_density: log(p)
    raw:         x
    ```
    """
    check_output_mode(output_mode)
    maps = tf.convert_to_tensor(maps, tf.float32)
    if output_mode == RAW:
        return maps
    if output_mode == MINMAX:
        low = tf.reduce_min(maps, axis=(1, 2), keepdims=True)
        span = tf.reduce_max(maps, axis=(1, 2), keepdims=True) - low
        return tf.math.divide_no_nan(maps - low, span)
    density = _density(maps)
    return density if output_mode == PROBABILITY else tf.math.log(density)


def _density(maps):
    positive = tf.nn.relu(maps)
    total = tf.reduce_sum(positive, axis=(1, 2), keepdims=True)
    pixels = tf.cast(tf.shape(maps)[1] * tf.shape(maps)[2], tf.float32)
    uniform = tf.ones_like(maps) / pixels
    density = tf.where(total > 0, tf.math.divide_no_nan(positive, total), uniform)
    return (1.0 - DENSITY_FLOOR) * density + DENSITY_FLOOR * uniform


def tf_to_original_size(saliency_map, original_size, resize_mode, output_mode):
    """One model-size map (H, W, 1) in `output_mode` → (h, w, 1) at the original size.

    Undoes the geometry (`resize` or `pad_to_4_3`, bilinear) and normalises
    again so the result satisfies its mode at the new size: a "probability"
    map is resized as a density and sums to 1 again over the original image
    (mass on the padding is dropped), a "log_density" map is resized in the
    probability domain, a "minmax" map is stretched to [0, 1] again.
    Graph-safe: `original_size` may be a tensor.

    Args:
        saliency_map: (H, W, 1) map as returned by `EMLNet` (one image).
        original_size: (h, w) of the original image.
        resize_mode: "resize" or "pad_to_4_3", as used to make the model input.
        output_mode: the mode of `saliency_map` (and of the result).

    Returns:
        (h, w, 1) float32 map.
    """
    check_output_mode(output_mode)
    saliency_map = tf.convert_to_tensor(saliency_map, tf.float32)
    if output_mode == LOG_DENSITY:
        saliency_map = tf.exp(saliency_map)
    resized = geometry.tf_map_to_original(saliency_map, original_size, resize_mode)
    if output_mode == RAW:
        return resized
    return apply_output_mode(resized[tf.newaxis], output_mode)[0]
