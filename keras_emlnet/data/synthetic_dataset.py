"""Writes a small synthetic dataset in the real on-disk format of SALICON, MIT1003 or CAT2000.

`generate_dataset` is what `python -m keras_emlnet.data.generate` runs.
Scenes and fixations come from `synthetic` (fixations follow image content
plus a centre bias, so learning is measurable). Every file is written
atomically and `<out>/config.json` records the options used.
"""

import io
import os

import numpy as np

from keras_emlnet import atomic_files
from keras_emlnet.data import cat2000, synthetic

DEFAULT_IMAGE_SIZE = {"salicon": (480, 640), "mit1003": (768, 1024), "cat2000": (1080, 1920)}
DEFAULT_OBSERVERS = {"salicon": 16, "mit1003": 15, "cat2000": 18}
FIXATIONS_PER_OBSERVER = 8
MIT1003_MIN_SIDE_FRACTION = 405 / 1024  # real MIT1003: max side 1024, other 405–1024
JPEG_QUALITY = 90


def generate_dataset(dataset, out_dir, num_images, *, seed=0, image_size=None,
                     num_observers=None, num_categories=None):
    """Writes `num_images` synthetic samples of `dataset` under `out_dir`.

    Args:
        dataset: "salicon", "mit1003" or "cat2000".
        out_dir: destination folder (the dataset's root as unzipped).
        num_images: total number of stimuli.
        seed: seeds every random choice; same seed, same files.
        image_size: (h, w) override of the real size (SALICON 480×640,
            CAT2000 1080×1920; for MIT1003 the largest size, sides then vary
            down to 405/1024 of it) — small sizes keep tests fast.
        num_observers: observers per image (default: as in the real dataset,
            16 for SALICON).
        num_categories: CAT2000 only: how many of the 20 categories to fill
            (default min(20, max(1, num_images // 3))).

    Returns:
        The configuration dict written to `<out_dir>/config.json`.
    """
    if dataset not in DEFAULT_IMAGE_SIZE:
        raise ValueError(f"dataset must be one of {sorted(DEFAULT_IMAGE_SIZE)}, got {dataset!r}")
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    config = {
        "dataset": dataset,
        "num_images": int(num_images),
        "seed": int(seed),
        "image_size": [int(v) for v in (image_size or DEFAULT_IMAGE_SIZE[dataset])],
        "num_observers": int(num_observers or DEFAULT_OBSERVERS[dataset]),
        "fixations_per_observer": FIXATIONS_PER_OBSERVER,
    }
    if dataset == "cat2000":
        config["num_categories"] = int(num_categories or min(20, max(1, num_images // 3)))
    rng = np.random.default_rng(seed)
    writer = {"salicon": _write_salicon, "mit1003": _write_mit1003, "cat2000": _write_cat2000}[dataset]
    config["files"] = writer(rng, out_dir, config)
    atomic_files.write_json_atomic(os.path.join(out_dir, "config.json"), config)
    return config


def _scene_and_fixations(rng, size, config):
    scene = synthetic.render_scene(rng, size)
    observers = synthetic.sample_observers(
        rng, synthetic.fixation_prior(scene.content), config["num_observers"],
        FIXATIONS_PER_OBSERVER,
    )
    return scene, observers


def _write_salicon(rng, out_dir, config):
    n = config["num_images"]
    num_test = n // 4
    num_val = max(1, n // 4) if n >= 2 else 0
    counts = {"train": n - num_val - num_test, "val": num_val, "test": num_test}
    size = tuple(config["image_size"])
    ids = rng.choice(600_000, size=n, replace=False)
    written = 0
    for split, count in counts.items():
        for coco_id in ids[written : written + count]:
            name = f"COCO_{split}2014_{coco_id:012d}"
            scene, observers = _scene_and_fixations(rng, size, config)
            _write_image(os.path.join(out_dir, "images", split, name + ".jpg"), scene.image)
            if split == "test":
                continue
            density = synthetic.density_map(np.concatenate(observers), size)
            _write_image(os.path.join(out_dir, "maps", split, name + ".png"), density)
            _write_mat(os.path.join(out_dir, "fixations", split, name + ".mat"),
                       _salicon_mat(rng, name, size, observers))
        written += count
    return counts


def _salicon_mat(rng, name, size, observers):
    """The LSUN 2017 structure: image, resolution, gaze(N,1){location,timestamp,fixations}."""
    gaze = np.empty((len(observers), 1), dtype=[("location", "O"), ("timestamp", "O"), ("fixations", "O")])
    for i, points in enumerate(observers):
        xy = points[:, ::-1] + 1  # 0-based (row, col) -> 1-based (x, y)
        # A mouse trace: a few jittered samples around each fixation.
        location = np.repeat(xy, 3, axis=0) + rng.normal(0, 1.5, (3 * len(xy), 2))
        location = np.clip(np.rint(location), 1, [size[1], size[0]])
        timestamp = np.cumsum(rng.integers(5, 40, size=(len(location), 1)), axis=0)
        gaze[i, 0] = (location, timestamp.astype(np.float64), xy)
    return {"image": name, "resolution": np.array([size], dtype=np.float64), "gaze": gaze}


def _write_mit1003(rng, out_dir, config):
    longest = max(config["image_size"])
    for index in range(config["num_images"]):
        short = int(rng.integers(int(np.ceil(MIT1003_MIN_SIDE_FRACTION * longest)), longest + 1))
        size = (short, longest) if rng.random() < 0.7 else (longest, short)
        name = f"isynthetic_{index:05d}"
        scene, observers = _scene_and_fixations(rng, size, config)
        points = np.concatenate(observers).astype(int)
        fix_pts = np.zeros(size, np.uint8)
        fix_pts[points[:, 0], points[:, 1]] = 255
        _write_image(os.path.join(out_dir, "ALLSTIMULI", name + ".jpeg"), scene.image)
        maps = os.path.join(out_dir, "ALLFIXATIONMAPS")
        _write_image(os.path.join(maps, name + "_fixMap.jpg"), synthetic.density_map(points, size))
        _write_image(os.path.join(maps, name + "_fixPts.jpg"), fix_pts)
    return {"all": config["num_images"]}


def _write_cat2000(rng, out_dir, config):
    size = tuple(config["image_size"])
    categories = cat2000.CATEGORIES[: config["num_categories"]]
    root = os.path.join(out_dir, "trainSet")
    counts = dict.fromkeys(categories, 0)
    for index in range(config["num_images"]):
        category = categories[index % len(categories)]
        counts[category] += 1
        name = f"{counts[category]:03d}"
        scene, observers = _scene_and_fixations(rng, size, config)
        image = _category_style(rng, category, scene.image)
        if category == "Inverted":  # upside down: so are the fixations
            observers = [np.column_stack([size[0] - 1 - p[:, 0], p[:, 1]]) for p in observers]
        points = np.concatenate(observers).astype(int)
        fix_locs = np.zeros(size, dtype=bool)
        fix_locs[points[:, 0], points[:, 1]] = True
        _write_image(os.path.join(root, "Stimuli", category, name + ".jpg"), image)
        _write_image(os.path.join(root, "FIXATIONMAPS", category, name + ".jpg"),
                     synthetic.density_map(points, size))
        _write_mat(os.path.join(root, "FIXATIONLOCS", category, name + ".mat"), {"fixLocs": fix_locs})
    return counts


def _category_style(rng, category, image):
    if category == "BlackWhite":  # written as a one-channel JPEG, as grey images often are
        return np.rint(image @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
    if category == "Inverted":
        return image[::-1]
    if category == "Noisy":
        return np.clip(image + rng.normal(0, 30, image.shape), 0, 255).astype(np.uint8)
    return image


def _write_image(path, array):
    from PIL import Image

    image = Image.fromarray(array)
    buffer = io.BytesIO()
    if path.endswith(".png"):
        image.save(buffer, format="PNG")
    else:
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    atomic_files.write_bytes_atomic(path, buffer.getvalue())


def _write_mat(path, contents):
    import scipy.io

    with atomic_files.atomic_path(path) as tmp:
        scipy.io.savemat(tmp, contents, do_compression=True)  # as MATLAB's default v7
