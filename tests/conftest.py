"""Shared pytest setup: quiet TensorFlow, deterministic seeds, small sizes."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np
import pytest


@pytest.fixture
def rng():
    """A seeded NumPy generator: every random test input is reproducible."""
    return np.random.default_rng(1234)
