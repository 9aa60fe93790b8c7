"""Seeded train/val splits for datasets that ship without one (MIT1003, CAT2000).

The split depends only on the sorted file list and a fixed seed, never on the
training seed, so every run (encoders, decoder, evaluation) sees the same
validation images.
"""

import numpy as np

SPLIT_SEED = 0  # fixed: changing it changes which images are held out


def holdout_count(total, val_fraction):
    """Validation size: round(total * fraction), at least 1 when total >= 2."""
    count = int(round(total * val_fraction))
    return min(max(count, 1 if total >= 2 else 0), max(total - 1, 0))


def split_indices(total, num_val, seed=SPLIT_SEED):
    """(train, val) sorted index arrays; `num_val` drawn with a seeded permutation."""
    order = np.random.default_rng(seed).permutation(total)
    return np.sort(order[num_val:]), np.sort(order[:num_val])


def stratified_split_indices(categories, val_fraction, seed=SPLIT_SEED):
    """(train, val) index arrays holding out `val_fraction` of each category.

    Each category with at least 2 samples gives at least 1; if that still
    leaves the validation set empty, one sample of the largest category goes.
    """
    categories = np.asarray(categories)
    rng = np.random.default_rng(seed)
    names = sorted(set(categories.tolist()))
    val = []
    for name in names:  # sorted: the draw order is reproducible
        members = np.flatnonzero(categories == name)
        count = holdout_count(len(members), val_fraction)
        val.extend(rng.permutation(members)[:count].tolist())
    if not val and len(categories) >= 2:
        largest = max(names, key=lambda n: (np.sum(categories == n), n))
        val.append(int(rng.choice(np.flatnonzero(categories == largest))))
    val = np.sort(np.asarray(val, dtype=np.int64))
    train = np.setdiff1d(np.arange(len(categories)), val)
    return train, val
