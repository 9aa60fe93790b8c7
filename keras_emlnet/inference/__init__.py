"""Inference: maps at each image's original size from a `.keras` EMLNet or a SavedModel, and pictures of them.

`predictor` loads either kind of model behind one interface (used by evaluation and batch scoring),
`folding` folds BatchNorms into convolutions, `precision` picks float32 or bfloat16 for the hardware,
`visualize` draws overlays, `progress` reports throughput.
"""
