"""Bilinear resize of a map to the spatial size of a reference tensor."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_emlnet")
class BilinearResizeLike(keras.layers.Layer):
    """Resizes `inputs` (B, h, w, C) bilinearly to the (H, W) of `reference`.

    The size is read from the reference at run time, so the layer works for
    static and dynamic input shapes alike (half-pixel centres, no antialias:
    `keras.ops.image.resize`'s bilinear mode).

    Args:
        **kwargs: base layer arguments (name, dtype, ...). Pass
            `dtype="float32"` to get a float32 output under a mixed-precision
            policy.
    """

    def call(self, inputs, reference):
        shape = ops.shape(reference)
        resized = ops.image.resize(
            ops.cast(inputs, self.compute_dtype),
            (shape[1], shape[2]),
            interpolation="bilinear",
            antialias=False,
        )
        return resized

    def compute_output_shape(self, inputs_shape, reference_shape):
        return (inputs_shape[0], reference_shape[1], reference_shape[2], inputs_shape[3])

    def get_config(self):
        # No arguments beyond the base layer's (name, dtype, trainable).
        return super().get_config()


@keras.saving.register_keras_serializable(package="keras_emlnet")
class TorchNearestResize(keras.layers.Layer):
    """Nearest-neighbour resize with PyTorch's `F.interpolate(mode="nearest")` indexing.

    Source index = min(floor(dst * float32(in / out)), in - 1), in float32 as
    PyTorch computes it (no half-pixel offset). `keras.layers.Resizing` /
    `tf.image.resize` nearest use half-pixel centres, floor((dst + 0.5) * in /
    out), which picks other pixels whenever out / in is not a whole number
    (e.g. every 2x downsampling); they agree for integer upsampling factors.
    The target is `size` (H, W) or, when called with a `reference`, the
    reference's (H, W) read at run time.

    Args:
        size: static (H, W), or None to take the size of `reference`.
        **kwargs: base layer arguments (name, dtype, ...).
    """

    def __init__(self, size=None, **kwargs):
        super().__init__(**kwargs)
        if size is not None:
            size = tuple(int(dim) for dim in size)
            if len(size) != 2 or min(size) < 1:
                raise ValueError(f"size must be (H, W) with positive sizes, got {size}")
        self.size = size

    def call(self, inputs, reference=None):
        if reference is None:
            if self.size is None:
                raise ValueError(f"{self.name}: no size and no reference tensor to resize to")
            height, width = self.size
        else:
            shape = ops.shape(reference)
            height, width = shape[1], shape[2]
        inputs = ops.cast(inputs, self.compute_dtype)
        in_shape = ops.shape(inputs)
        rows = _torch_nearest_index(height, in_shape[1])
        cols = _torch_nearest_index(width, in_shape[2])
        return ops.take(ops.take(inputs, rows, axis=1), cols, axis=2)

    def compute_output_shape(self, inputs_shape, reference_shape=None):
        size = self.size if reference_shape is None else tuple(reference_shape[1:3])
        return (inputs_shape[0], size[0], size[1], inputs_shape[3])

    def get_config(self):
        config = super().get_config()
        config["size"] = None if self.size is None else list(self.size)
        return config


def _torch_nearest_index(out_size, in_size):
    # PyTorch's nearest_idx: scale = (float)in / out; floorf(dst * scale), clamped.
    scale = ops.cast(in_size, "float32") / ops.cast(out_size, "float32")
    index = ops.floor(ops.cast(ops.arange(out_size), "float32") * scale)
    return ops.minimum(ops.cast(index, "int32"), ops.cast(in_size, "int32") - 1)
