"""Offline batch scoring, the library behind `python -m serving.batch_score`.

`files` decides which images a run reads and where their outputs go, `pipeline` reads them with tf.data onto
every local GPU, `scoring` runs the model and writes maps, overlays and the summary.
"""
