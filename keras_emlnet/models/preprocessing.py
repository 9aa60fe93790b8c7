"""The backbone's own input preprocessing, as a layer inside the encoder.

Every encoder takes RGB values in [0, 255]; each backbone was pretrained on
inputs scaled its own way, so the scaling lives in the model (a SavedModel or
`.keras` file then needs no matching client-side code).

Modes (the names keras.applications uses):
- "tf": x / 127.5 - 1 (NASNet, Inception, MobileNet).
- "torch": (x / 255 - mean) / std with the ImageNet mean and std; the CSAIL
  Places365 PyTorch models were trained with the same values.
- "caffe": RGB -> BGR, then subtract the ImageNet BGR mean (ResNet50, VGG).
- "none": identity (backbones that scale their own input).
"""

import keras
from keras import ops

# torchvision's ImageNet statistics (RGB, on the [0, 1] scale); the CSAIL
# Places365 training script normalises with the same numbers.
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)
# Caffe ImageNet mean, BGR order, on the [0, 255] scale.
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)

PREPROCESSING_MODES = ("tf", "torch", "caffe", "none")


@keras.saving.register_keras_serializable(package="keras_emlnet")
class BackbonePreprocessing(keras.layers.Layer):
    """Maps RGB values in [0, 255] to the input scale a backbone was trained on.

    Formula:
    ```
    tf:     y = x / 127.5 - 1
    torch:  y = (x / 255 - TORCH_MEAN) / TORCH_STD
    caffe:  y = x[..., ::-1] - CAFFE_BGR_MEAN
    none:   y = x
    ```

    Args:
        mode: one of "tf", "torch", "caffe", "none".
        **kwargs: base layer arguments (name, dtype, ...).
    """

    def __init__(self, mode, **kwargs):
        super().__init__(**kwargs)
        if mode not in PREPROCESSING_MODES:
            raise ValueError(
                f"BackbonePreprocessing mode must be one of {PREPROCESSING_MODES}, got {mode!r}"
            )
        self.mode = mode

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            mean = ops.convert_to_tensor(TORCH_MEAN, dtype=self.compute_dtype)
            std = ops.convert_to_tensor(TORCH_STD, dtype=self.compute_dtype)
            return (x / 255.0 - mean) / std
        if self.mode == "caffe":
            mean = ops.convert_to_tensor(CAFFE_BGR_MEAN, dtype=self.compute_dtype)
            return ops.flip(x, axis=-1) - mean
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["mode"] = self.mode
        return config
