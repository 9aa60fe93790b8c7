"""The input side of batch scoring: the tf.distribute strategy and the image pipeline.

tf.data reads and decodes files in parallel and maps each image into the model
frame (`tf_image_to_model`); files TF cannot decode are dropped with
`ignore_errors()` (a decode error inside a graph cannot be caught per element)
and `describe_unreadable` gives the reason afterwards. Batches are padded to
the global batch size so every replica of a MirroredStrategy gets a full,
static-shape share; metadata travels as int32 tensors, never strings.

Before a file is decoded, the size its header declares
(`image_files.tf_image_size`) is checked against the pixel limit, so a
decompression bomb fails like any undecodable file (a 1.1 MB PNG of
20000x20000 took 14 GB before, issue 19); a JPEG's EXIF orientation is
applied, so maps come out upright, as image viewers show the image.
"""

import re

import numpy as np

from keras_emlnet import image_files


def make_strategy():
    """MirroredStrategy over every local GPU when there are several, else the default (one GPU or CPU)."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy([device.name for device in gpus])
    return tf.distribute.get_strategy()


def strategy_devices(strategy):
    """The device names a strategy computes on (the default strategy: GPU 0 if any, else the CPU)."""
    import tensorflow as tf

    try:
        return list(strategy.extended.worker_devices)
    except RuntimeError:  # the default strategy does not list its device
        gpus = tf.config.list_logical_devices("GPU")
        return [gpus[0].name if gpus else tf.config.list_logical_devices("CPU")[0].name]


def image_dataset(sources, input_size, resize_mode, global_batch_size, *, max_image_pixels=None):
    """tf.data of (index int32 (B,), original_size int32 (B, 2), image float32 (B, H, W, 3)).

    Files that cannot be read or decoded, or whose header declares more than
    `max_image_pixels` (None: `image_files.max_image_pixels()`; 0: no limit),
    are dropped (`ignore_errors`); the caller finds them as the indices that
    never come out. EXIF orientation is applied: `original_size` is the
    upright size. Every batch is padded to `global_batch_size` with index -1,
    so each replica of a strategy gets a full, static-shape share.
    """
    import tensorflow as tf

    height, width = (int(v) for v in input_size)
    limit = image_files.max_image_pixels(max_image_pixels)

    def load(index, path):
        image, original_size = decode_for_model(tf.io.read_file(path), (height, width), resize_mode,
                                                max_image_pixels=limit or 0)
        return index, original_size, image

    def pad(index, original_size, images):
        missing = global_batch_size - tf.shape(index)[0]
        index = tf.concat([index, -tf.ones([missing], tf.int32)], 0)
        original_size = tf.concat([original_size, tf.ones([missing, 2], tf.int32)], 0)
        images = tf.concat([images, tf.zeros([missing, height, width, 3])], 0)
        return (
            tf.ensure_shape(index, [global_batch_size]),
            tf.ensure_shape(original_size, [global_batch_size, 2]),
            tf.ensure_shape(images, [global_batch_size, height, width, 3]),
        )

    indices = np.arange(len(sources), dtype=np.int32)
    dataset = tf.data.Dataset.from_tensor_slices((indices, list(sources)))
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.ignore_errors()
    dataset = dataset.batch(global_batch_size).map(pad).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return dataset.with_options(options)


def decode_for_model(data, input_size, resize_mode, *, max_image_pixels=None):
    """Encoded image bytes (scalar string tensor) → (float32 (H, W, 3) image in the model
    frame, int32 (2,) upright original size); graph-safe. The one decode of batch scoring,
    shared with the Beam pipeline (serving/beam).

    The size the header declares is checked against `max_image_pixels` (None:
    `image_files.max_image_pixels()`, 0: no limit) before decoding (an
    InvalidArgumentError, like an undecodable file), a GIF is cut to its first
    frame (`image_files.tf_gif_first_frame`), and a JPEG's EXIF orientation is
    applied.
    """
    import tensorflow as tf

    from keras_emlnet.models.geometry import tf_image_to_model

    limit = image_files.max_image_pixels(max_image_pixels)
    if limit is not None:
        size = tf.cast(image_files.tf_image_size(data), tf.int64)
        check = tf.debugging.assert_less_equal(
            size[0] * size[1], tf.constant(limit, tf.int64),
            message=f"image declares more pixels than the limit of {limit}")
        with tf.control_dependencies([check]):
            data = tf.identity(data)
    data = image_files.tf_gif_first_frame(data)  # decode_image would decode every frame of an animation
    image = tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)
    image.set_shape([None, None, 3])
    image = image_files.tf_apply_orientation(image, image_files.tf_exif_orientation(data))
    original_size = tf.shape(image, out_type=tf.int32)[:2]
    return tf_image_to_model(image, tuple(int(v) for v in input_size), resize_mode), original_size


def explain_undecodable(data, *, name=None, max_image_pixels=None):
    """Why encoded bytes were not decoded: over the pixel limit (read from the header, never
    decoded), or TensorFlow's decode error; None if they decode."""
    import tensorflow as tf

    try:
        image_files.read_header(bytes(data), name=name, limit=max_image_pixels)
    except image_files.ImageTooLargeError as error:
        return str(error)
    except Exception:  # noqa: BLE001 - PIL cannot read it either: TF's reason below
        pass
    try:
        tf.io.decode_image(data, channels=3, expand_animations=False)
    except (tf.errors.OpError, OSError, ValueError) as error:
        return decode_error_message(error)
    return None


def describe_unreadable(path, *, max_image_pixels=None):
    """Why `path` was dropped: over the pixel limit (from its header), or TensorFlow's decode error."""
    import tensorflow as tf

    try:
        image_files.read_header(path, limit=max_image_pixels)
    except image_files.ImageTooLargeError as error:
        return str(error)
    except Exception:  # noqa: BLE001 - PIL cannot read it either: TF's reason below
        pass
    try:
        tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    except (tf.errors.OpError, OSError, ValueError) as error:
        return decode_error_message(error)
    return "dropped by the input pipeline (decodes on retry)"


def decode_error_message(error):
    """A TensorFlow decode error's first line, without TF's graph decorations."""
    lines = (getattr(error, "message", None) or str(error)).strip().splitlines()
    # Drop TF's "{{function_node ...}}" prefix and " [Op:DecodeImage]" tail.
    message = re.sub(r"\{\{function_node[^}]*\}\}\s*", "", lines[0] if lines else "")
    message = re.sub(r"\s*\[Op:\w+\].*$", "", message)
    return message or type(error).__name__
