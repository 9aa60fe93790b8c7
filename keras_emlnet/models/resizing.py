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
