"""Benchmark evaluation: the nine MIT metrics per image at the original resolution, beside baselines, as tables.

`columns` names the metric columns, `baselines` makes the center-bias and folder-of-maps rows, `tables` writes
results.md/csv/json, and `evaluate` scores a model over a dataset split and writes them.
"""
