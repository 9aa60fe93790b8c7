"""SavedModel export for TF Serving (`python -m serving.export`).

`saliency_module` is the exported tf.Module (bytes or pixels in, maps at the original size out), `checks`
compares the reloaded SavedModel with the Keras model, `export` writes a version folder atomically.
"""
