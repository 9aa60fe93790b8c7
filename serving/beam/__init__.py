"""Batch scoring on Apache Beam, the library behind `python -m serving.beam_score`.

`files` finds, reads and writes through Beam's filesystems (local, gs://, s3://),
`model_handler` is RunInference's ModelHandler for the project's models, and
`pipeline` builds and runs the scoring pipeline (maps, overlays, summary and
config files as `serving.batch_score` writes them; unreadable images go to a
dead-letter output reported in the summary).
"""
