"""Synthetic scenes whose fixations depend on their content.

Each scene has a textured background and a few items people look at, each with
a weight: objects (weight grows with their contrast to the background), a
face-like pattern (strong, peaking at the eyes) and text-like strokes
(medium). Fixations are drawn from a mixture of that content map and a centre
bias, then jittered per observer. Items sit anywhere in the frame, so a model
that looks at the image beats the centre-bias baseline.
"""

import dataclasses

import numpy as np
import scipy.ndimage

from keras_emlnet.models import geometry

CENTER_BIAS_WEIGHT = 0.25  # share of fixations drawn from the centre prior
CENTER_BIAS_SIGMA = 0.25  # centre Gaussian sigma, in fractions of (h, w)
FACE_WEIGHT = 3.0
TEXT_WEIGHT = 1.5
OBJECT_WEIGHT = 1.0  # multiplied by the object's contrast (0–1)
OBSERVER_NOISE = 0.01  # per-fixation jitter sigma, in fractions of the diagonal
DENSITY_SIGMA = 0.03  # density-map blur sigma, in fractions of the diagonal


@dataclasses.dataclass
class Scene:
    """image uint8 (h, w, 3); content float64 (h, w), the map people follow."""

    image: np.ndarray
    content: np.ndarray


def render_scene(rng, size):
    """Draws one scene of `size` (h, w)."""
    h, w = size
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    rows, cols = rows / h, cols / w  # unit coordinates
    base = rng.uniform(60, 190, size=3)
    tilt = rng.uniform(-40, 40, size=3)
    image = base + tilt * (rows[..., None] - 0.5) + rng.normal(0, 6, (h, w, 3))
    content = np.zeros((h, w))
    for _ in range(int(rng.integers(2, 5))):
        content += _draw_object(rng, image, rows, cols)
    if rng.random() < 0.7:
        content += _draw_face(rng, image, rows, cols, h / w)
    if rng.random() < 0.6:
        content += _draw_text(rng, image, rows, cols)
    return Scene(np.clip(image, 0, 255).astype(np.uint8), content)


def _blob(rows, cols, r0, c0, sr, sc):
    return np.exp(-0.5 * (((rows - r0) / sr) ** 2 + ((cols - c0) / sc) ** 2))


def _draw_object(rng, image, rows, cols):
    r0, c0 = rng.uniform(0.1, 0.9, size=2)
    rr, rc = rng.uniform(0.04, 0.12, size=2)
    inside = ((rows - r0) / rr) ** 2 + ((cols - c0) / rc) ** 2 <= 1
    if rng.random() < 0.5:  # a rectangle instead of an ellipse
        inside = (np.abs(rows - r0) <= rr) & (np.abs(cols - c0) <= rc)
    background = image[inside].mean(axis=0) if inside.any() else np.full(3, 128.0)
    contrast = rng.uniform(0.1, 1.0)
    direction = rng.normal(size=3)
    color = background + contrast * 120 * direction / np.linalg.norm(direction)
    image[inside] = np.clip(color, 0, 255)
    return OBJECT_WEIGHT * contrast * _blob(rows, cols, r0, c0, rr, rc)


def _draw_face(rng, image, rows, cols, aspect):
    r0, c0 = rng.uniform(0.2, 0.8, size=2)
    half_h = rng.uniform(0.08, 0.15)
    half_w = half_h * 0.75 * aspect  # round on screen whatever the frame
    oval = ((rows - r0) / half_h) ** 2 + ((cols - c0) / half_w) ** 2 <= 1
    image[oval] = (224, 172, 140)
    eye_r = r0 - 0.3 * half_h
    content = np.zeros(rows.shape)
    for side in (-1, 1):
        eye_c = c0 + side * 0.4 * half_w
        eye = ((rows - eye_r) / (0.12 * half_h)) ** 2 + ((cols - eye_c) / (0.15 * half_w)) ** 2 <= 1
        image[eye] = (30, 25, 25)
        content += _blob(rows, cols, eye_r, eye_c, 0.3 * half_h, 0.3 * half_w)
    mouth = (np.abs(rows - (r0 + 0.45 * half_h)) <= 0.06 * half_h) & (np.abs(cols - c0) <= 0.35 * half_w)
    image[mouth] = (150, 40, 40)
    content += 0.5 * _blob(rows, cols, r0 + 0.45 * half_h, c0, 0.3 * half_h, 0.5 * half_w)
    return FACE_WEIGHT * content / content.max()


def _draw_text(rng, image, rows, cols):
    r0, c0 = rng.uniform(0.15, 0.85, size=2)
    half_h, half_w = rng.uniform(0.05, 0.1), rng.uniform(0.1, 0.2)
    patch = (np.abs(rows - r0) <= half_h) & (np.abs(cols - c0) <= half_w)
    image[patch] = 235
    line_count = int(rng.integers(2, 4))
    for line in range(line_count):
        line_r = r0 - half_h + (line + 0.5) * 2 * half_h / line_count
        in_line = np.abs(rows - line_r) <= 0.25 * half_h / line_count
        strokes = np.sin(cols * rng.uniform(150, 300) + rng.uniform(0, 6)) > 0.2
        image[patch & in_line & strokes] = 20
    return TEXT_WEIGHT * _blob(rows, cols, r0, c0, half_h, half_w)


def fixation_prior(content):
    """Probability (h, w) of a fixation: content map mixed with a centre bias."""
    h, w = content.shape
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    center = _blob(rows / h, cols / w, 0.5, 0.5, CENTER_BIAS_SIGMA, CENTER_BIAS_SIGMA)
    content_share = content / content.sum() if content.sum() > 0 else center / center.sum()
    return (1 - CENTER_BIAS_WEIGHT) * content_share + CENTER_BIAS_WEIGHT * center / center.sum()


def sample_observers(rng, prior, num_observers, fixations_per_observer):
    """Per observer, an (n, 2) float array of 0-based (row, col) fixations.

    Each observer's fixations are drawn from `prior` and jittered by observer
    noise, then clipped to the image (real datasets drop fixations outside).
    """
    h, w = prior.shape
    cdf = np.cumsum(prior.ravel())  # built once: sampling is a binary search
    cdf /= cdf[-1]
    noise = OBSERVER_NOISE * np.hypot(h, w)
    observers = []
    for _ in range(num_observers):
        count = max(1, int(rng.poisson(fixations_per_observer)))
        index = np.minimum(np.searchsorted(cdf, rng.random(count), side="right"), cdf.size - 1)
        points = np.stack([index // w, index % w], axis=1).astype(np.float64)
        points += rng.normal(0, noise, points.shape)
        points = np.clip(np.rint(points), 0, [h - 1, w - 1])
        observers.append(points)
    return observers


def density_map(points, size):
    """Blurred fixation histogram (h, w) scaled to a 0–255 uint8 map.

    The blur is wide (DENSITY_SIGMA of the diagonal), so it is computed on a
    grid coarser by up to sigma / 8 and resized back: same map, far faster.
    """
    h, w = size
    sigma = DENSITY_SIGMA * np.hypot(h, w)
    factor = max(1, int(sigma // 8))
    coarse = np.zeros((-(-h // factor), -(-w // factor)))
    np.add.at(coarse, (points[:, 0].astype(int) // factor, points[:, 1].astype(int) // factor), 1.0)
    blurred = scipy.ndimage.gaussian_filter(coarse, sigma / factor)
    if factor > 1:
        blurred = geometry.bilinear_resize(blurred, size)
    return np.clip(np.rint(255 * blurred / blurred.max()), 0, 255).astype(np.uint8)
