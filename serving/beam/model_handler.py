"""RunInference's ModelHandler for the project's saliency models.

`SaliencyModelHandler` loads a `.keras` EMLNet or a SavedModel export with
`keras_emlnet.inference.predictor.load_predictor` (a remote model is copied to
the worker first) and turns a batch of model-frame images into maps at each
image's original size, the same two calls `serving.batch_score` makes
(`predictor.predict`, `predictor.to_original`).
"""

import tempfile
import typing

import numpy as np
from apache_beam.ml.inference.base import ModelHandler


class ModelInput(typing.NamedTuple):
    """One decoded image: float32 (H, W, 3) RGB 0-255 at the model size, and its (h, w)."""

    image: np.ndarray
    original_size: tuple


class SaliencyModelHandler(ModelHandler):
    """ModelInput → float32 (h, w) saliency map at the image's original size.

    Args:
        model: `.keras` file or SavedModel folder (local, gs://, s3://).
        precision: compute precision (`.keras` only, see load_predictor).
        batch_size: images per model call (Beam's BatchElements min and max).
    """

    def __init__(self, model, *, precision="auto", batch_size=8):
        super().__init__(min_batch_size=batch_size, max_batch_size=batch_size)
        self._model = model
        self._precision = precision

    def load_model(self):
        import tensorflow as tf

        from keras_emlnet.inference.predictor import load_predictor
        from serving.beam.files import is_local, localize_model

        # Several SDK processes may share one GPU: let each grow into it.
        for gpu in tf.config.list_physical_devices("GPU"):
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError:  # TF already initialised in this process
                pass
        local = self._model
        if not is_local(local):  # copied once per worker process, for the process's lifetime
            local = localize_model(local, tempfile.mkdtemp(prefix="emlnet-model-"))
        return load_predictor(local, precision=self._precision)

    def run_inference(self, batch, model, inference_args=None):
        import tensorflow as tf

        images = tf.constant(np.stack([example.image for example in batch]), tf.float32)
        maps = model.predict(images)
        return [
            model.to_original(maps[i], example.original_size).numpy()[..., 0]
            for i, example in enumerate(batch)
        ]

    def get_num_bytes(self, batch):
        return sum(example.image.nbytes for example in batch)

    def get_metrics_namespace(self):
        return "EMLNetSaliency"
