"""Training: the paper's two stages as resumable runs.

`config` holds a run's settings (`TrainConfig`), `fit` the resumable training loop every stage calls, with
`callbacks`, `optimizers` (PyTorch-style SGD) and `runtime` (tf.distribute, mixed precision);
`encoder_stage`, `decoder_stage` and `finetune` are the paper's recipes over them.
"""
