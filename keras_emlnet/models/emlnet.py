"""EMLNet: the frozen feature extractor and the decoder as one Keras model.

`EMLNet(extractor, decoder)` takes RGB 0-255 images (B, H, W, 3) at its model
size `input_size` and returns (B, H, W, 1) float32 maps in its `output_mode`
("minmax" | "probability" | "log_density"), blurred first when `blur_sigma`
(pixels at the model size) is set. `predict_map(image)` maps an image of any
size through the geometry (`resize_mode`) and back.

Training: the loss (EMLLoss) must see the decoder's raw map, not a normalised
or blurred one, so the decoder is trained through `emlnet.training_model()`: an
EMLNet over the SAME extractor and decoder objects with output_mode "raw" and
no blur. Fitting it updates this model's decoder (the extractor is frozen).
Calling `fit` on an EMLNet in a normalising mode is allowed by Keras but
trains on post-processed maps; use `training_model()`.

The extractor is always called with training=False, whatever the caller's
flag: a functional model forwards the caller's flag to every inner layer.

Saved as `.keras`: `get_config` serialises the extractor and decoder (their
full functional configs) and the post-processing arguments, so
`keras_emlnet.load_model(path)` rebuilds an EMLNet with its attributes and
`predict_map`, without custom_objects. Importing this module registers every
class a saved EMLNet holds (through the extractor module it builds with:
`StopGradient`, and the encoder layers the extractor wraps), so even a bare
`keras.saving.load_model` works after it.
"""

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_emlnet.models import geometry
from keras_emlnet.models import postprocess
from keras_emlnet.models.decoder import build_decoder
from keras_emlnet.models.extractor import build_feature_extractor, tap_shapes


@keras.saving.register_keras_serializable(package="keras_emlnet")
class EMLNet(keras.Model):
    """EML-NET saliency model: frozen multi-encoder extractor + trained decoder.

    Args:
        extractor: the model from `build_feature_extractor` (static input
            (H, W, 3), dict of tap outputs).
        decoder: the model from `build_decoder` over the extractor's taps,
            returning (B, H, W, 1).
        resize_mode: how `predict_map` fits an image into the model size:
            "resize" (SALICON, CAT2000) or "pad_to_4_3" (MIT1003).
        output_mode: "minmax", "probability" or "log_density" ("raw" is the
            decoder's unnormalised map, for training).
        blur_sigma: Gaussian blur sigma in pixels at the model size, applied
            to the raw map before normalising; None for no blur. (The released
            EML-NET code blurs with sigma 5 at 480x640.)
        **kwargs: base model arguments (name, ...).
    """

    def __init__(
        self,
        extractor: keras.Model,
        decoder: keras.Model,
        *,
        resize_mode: str = "resize",
        output_mode: str = "minmax",
        blur_sigma: float | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if resize_mode not in geometry.MODES:
            raise ValueError(f"resize_mode must be one of {geometry.MODES}, got {resize_mode!r}")
        postprocess.check_output_mode(output_mode)
        if blur_sigma is not None:
            blur_sigma = float(blur_sigma)
            postprocess.gaussian_kernel_1d(blur_sigma)  # validates sigma > 0
        input_shape = tuple(extractor.input_shape[1:])
        if len(input_shape) != 3 or None in input_shape:
            raise ValueError(f"the extractor needs a static input shape (H, W, 3), got {input_shape}")
        decoder_shape = tuple(decoder.output_shape[1:3])
        if decoder_shape != input_shape[:2]:
            raise ValueError(
                f"the decoder returns {decoder_shape} maps but the extractor takes {input_shape[:2]} images; "
                "build the decoder with the extractor's input_size"
            )
        self.extractor = extractor
        self.decoder = decoder
        self.resize_mode = resize_mode
        self.output_mode = output_mode
        self.blur_sigma = blur_sigma
        self.input_size = input_shape[:2]
        self.build((None,) + input_shape)

    def build(self, input_shape):
        # Both parts are built functional models; nothing to create here.
        self.built = True

    def call(self, images, training=None):
        features = self.extractor(images, training=False)
        maps = self.decoder(features, training=training)
        maps = keras.ops.cast(maps, "float32")
        if self.blur_sigma is not None:
            maps = postprocess.gaussian_blur(maps, self.blur_sigma)
        return postprocess.apply_output_mode(maps, self.output_mode)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:3]) + (1,)

    def training_model(self):
        """Returns a new EMLNet over this extractor and decoder that outputs the raw map.

        Fit that one (the loss sees the unnormalised, unblurred decoder
        output); the weights it trains are this model's decoder weights. Not
        cached on `self`: an attribute would be tracked and saved twice.
        """
        return EMLNet(
            self.extractor,
            self.decoder,
            resize_mode=self.resize_mode,
            output_mode=postprocess.RAW,
            blur_sigma=None,
            name=f"{self.name}_training",
        )

    def predict_map(self, image):
        """Predicts the saliency map of one image of any size, at that size.

        Args:
            image: NumPy (h, w, 3) RGB, uint8 or float in [0, 255].

        Returns:
            (h, w) float32 NumPy map in `output_mode`.

        Raises:
            ValueError: if `image` is not an (h, w, 3) array.
        """
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[-1] != 3 or min(image.shape[:2]) < 1:
            raise ValueError(f"predict_map needs one RGB image of shape (h, w, 3), got shape {image.shape}")
        model_image = geometry.tf_image_to_model(image, self.input_size, self.resize_mode)
        maps = self.predict_on_batch(model_image[tf.newaxis])
        original = postprocess.tf_to_original_size(
            maps[0], image.shape[:2], self.resize_mode, self.output_mode
        )
        return original.numpy()[..., 0]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "extractor": keras.saving.serialize_keras_object(self.extractor),
                "decoder": keras.saving.serialize_keras_object(self.decoder),
                "resize_mode": self.resize_mode,
                "output_mode": self.output_mode,
                "blur_sigma": self.blur_sigma,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["extractor"] = keras.saving.deserialize_keras_object(config["extractor"])
        config["decoder"] = keras.saving.deserialize_keras_object(config["decoder"])
        return cls(**config)


def build_emlnet(encoders: Sequence[keras.Model], *, resize_mode: str = "resize", output_mode: str = "minmax",
                 blur_sigma: float | None = None, name: str = "emlnet", seed: int = 0,
                 dtype_policy: str | None = None) -> EMLNet:
    """Builds an EMLNet over trained encoders with a freshly initialised decoder.

    Args:
        encoders: trained encoders (same input shape, distinct prefixes).
        resize_mode, output_mode, blur_sigma: see `EMLNet`.
        name: model name; the decoder is `<name>_decoder`.
        seed: seeds the decoder's initial weights.
        dtype_policy: passed to `build_feature_extractor` (None: the
            encoders' own policies; e.g. "mixed_bfloat16" for loaded float32
            encoders in a mixed-precision run).
    """
    extractor = build_feature_extractor(encoders, name=f"{name}_extractor", dtype_policy=dtype_policy)
    decoder = build_decoder(
        tap_shapes(extractor), extractor.input_shape[1:3], name=f"{name}_decoder", seed=seed
    )
    return EMLNet(
        extractor,
        decoder,
        resize_mode=resize_mode,
        output_mode=output_mode,
        blur_sigma=blur_sigma,
        name=name,
    )
