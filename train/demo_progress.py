"""The demo's progress log: a Keras callback logging every training step and validation."""

import keras
from absl import logging


class StepLogger(keras.callbacks.Callback):
    """Logs every training step and validation (the demo trains a few steps, each worth seeing)."""

    def on_train_begin(self, logs=None):
        logging.info("  building the training step (the first step traces the whole graph: "
                     "NASNetLarge takes minutes on a CPU)")

    def on_train_batch_end(self, batch, logs=None):
        logging.info("  step %d: loss %.4f", batch + 1, float((logs or {}).get("loss", float("nan"))))

    def on_test_end(self, logs=None):
        logging.info("  validation: %s", ", ".join(f"{k}={float(v):.4f}" for k, v in sorted((logs or {}).items())))
