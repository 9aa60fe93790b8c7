"""Line-by-line NumPy ports of the MIT benchmark's MATLAB metrics, as test references.

Deliberately plain (loops, full temporaries, MATLAB's order of operations) and written from
code_forMetrics/*.m directly, independent of keras_emlnet.metrics' vectorised, blockwise code.
Inputs must already have the ground truth's size (imresize is tested on its own).
"""

import numpy as np
import scipy.ndimage

EPS = np.finfo(float).eps


def colon(limit, step):
    """MATLAB's 0:step:limit (MathWorks' published colonop algorithm)."""
    n = int(np.floor(limit / step + 0.5))
    tol = 2 * EPS * limit
    if n * step - limit > tol:
        n -= 1
    last = n * step
    if last - limit > -tol:
        last = limit
    out = np.zeros(n + 1)
    for k in range(n // 2 + 1):
        out[k] = k * step
        out[n - k] = last - k * step
    if n % 2 == 0:
        out[n // 2] = last / 2
    return out


def trapz(x, y):
    return sum((x[i + 1] - x[i]) * (y[i + 1] + y[i]) / 2 for i in range(len(x) - 1))


def auc_judd(sal, fix, noise=None):
    if noise is not None:
        sal = sal + noise / 10000000
    s = (sal - sal.min()) / (sal.max() - sal.min())
    S, F = s.ravel(), fix.ravel()
    Sth = S[F > 0]
    n_fix, n_pix = len(Sth), len(S)
    tp, fp = [0.0], [0.0]
    for i, thresh in enumerate(np.sort(Sth)[::-1], start=1):
        above = np.sum(S >= thresh)
        tp.append(i / n_fix)
        fp.append((above - i) / (n_pix - n_fix))
    return trapz(fp + [1.0], tp + [1.0])


def split_auc(positives, negatives, step):
    """One random split of AUC_Borji.m / AUC_shuffled.m."""
    thresholds = colon(max(positives.max(), negatives.max()), step)[::-1]
    tp = [0.0] + [np.sum(positives >= t) / len(positives) for t in thresholds] + [1.0]
    fp = [0.0] + [np.sum(negatives >= t) / len(negatives) for t in thresholds] + [1.0]
    return trapz(fp, tp)


def normalized_for_auc(sal):
    return ((sal - sal.min()) / (sal.max() - sal.min())).ravel()


def nss(sal, fix):
    z = (sal - sal.mean()) / sal.std(ddof=1)
    return z[fix.astype(bool)].mean()


def cc(sal, den):
    a = (sal - sal.mean()) / sal.std(ddof=1)
    b = (den - den.mean()) / den.std(ddof=1)
    a, b = a - a.mean(), b - b.mean()  # corr2
    return np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b))


def kld(sal, den):
    p = sal / sal.sum() if sal.any() else sal
    q = den / den.sum() if den.any() else den
    return np.sum(q * np.log(EPS + q / (p + EPS)))


def sim(sal, den):
    maps = []
    for m in (sal, den):
        if m.any():
            m = (m - m.min()) / (m.max() - m.min())
            m = m / m.sum()
        maps.append(m)
    return np.sum(np.minimum(*maps))


def info_gain(sal, fix, base):
    p = (sal.ravel() - sal.min()) / (sal.max() - sal.min())
    b = (base.ravel() - base.min()) / (base.max() - base.min())
    p, b = p / p.sum(), b / b.sum()
    locs = fix.ravel().astype(bool)
    return np.mean(np.log2(EPS + p[locs]) - np.log2(EPS + b[locs]))


def example_maps(shape):
    """Smooth saliency, binary fixations, blurred density, other fixations, a baseline."""
    rng = np.random.default_rng(0)
    saliency = scipy.ndimage.gaussian_filter(rng.random(shape), 2.0)
    fixations = np.zeros(shape)
    fixations[rng.integers(0, shape[0], 20), rng.integers(0, shape[1], 20)] = 1
    density = scipy.ndimage.gaussian_filter(fixations, 2.0)
    others = np.zeros(shape)
    others[rng.integers(0, shape[0], 60), rng.integers(0, shape[1], 60)] = 1
    baseline = scipy.ndimage.gaussian_filter(others, 4.0) + 1e-3
    return {"sal": saliency, "fix": fixations, "den": density, "oth": others, "base": baseline}
