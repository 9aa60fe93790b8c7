"""The console scripts `pip install` puts on PATH, one per command-line tool.

Each runs the same module as `python -m <module>` (its `define_flags` and
`main` through `keras_emlnet.cli.run_main`) and imports it only when called,
so a script's start costs no more than the module's own imports.
"""

import importlib

from keras_emlnet import cli

# script name -> CLI module, as pyproject.toml's [project.scripts] lists them
SCRIPTS = {
    "emlnet-generate-data": "keras_emlnet.data.generate",
    "emlnet-convert-places365": "keras_emlnet.convert_places365",
    "emlnet-convert-released": "keras_emlnet.convert_released",
    "emlnet-train-encoder": "train.encoder",
    "emlnet-train-decoder": "train.decoder",
    "emlnet-finetune": "train.finetune",
    "emlnet-evaluate": "train.evaluate",
    "emlnet-paper": "train.paper",
    "emlnet-demo": "train.demo",
    "emlnet-export": "serving.export.__main__",
    "emlnet-serve": "serving.server.__main__",
    "emlnet-client": "serving.client.__main__",
    "emlnet-batch-score": "serving.batch_score",
}


def _run(script):
    cli.run_main(importlib.import_module(SCRIPTS[script]))


def generate_data():
    _run("emlnet-generate-data")


def convert_places365():
    _run("emlnet-convert-places365")


def convert_released():
    _run("emlnet-convert-released")


def train_encoder():
    _run("emlnet-train-encoder")


def train_decoder():
    _run("emlnet-train-decoder")


def finetune():
    _run("emlnet-finetune")


def evaluate():
    _run("emlnet-evaluate")


def paper():
    _run("emlnet-paper")


def demo():
    _run("emlnet-demo")


def export():
    _run("emlnet-export")


def serve():
    _run("emlnet-serve")


def client():
    _run("emlnet-client")


def batch_score():
    _run("emlnet-batch-score")
