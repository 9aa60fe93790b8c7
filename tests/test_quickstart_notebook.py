"""examples/quickstart.ipynb runs top to bottom (nbclient), in this interpreter, so it cannot rot,
and is committed with its outputs, so the overlay shows on the repository page."""

import base64
import io
import os
import sys

import nbformat
import pytest
from PIL import Image

from tests import notebooks
from tests.paths import REPO_ROOT


@pytest.fixture
def venv_kernel(tmp_path, monkeypatch):
    """A kernelspec running ipykernel in THIS interpreter (the venv's python), on a private JUPYTER_PATH."""
    for name, value in notebooks.kernel_environment(str(tmp_path)).items():
        monkeypatch.setenv(name, value)
    return notebooks.KERNEL_NAME


def _pictures(notebook):
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    return [Image.open(io.BytesIO(base64.b64decode(o["data"]["image/png"]))) for o in outputs
            if o.output_type == "display_data" and "image/png" in o.get("data", {})]


def _text(notebook):
    return "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                   for o in cell.outputs if o.output_type == "stream")


def test_quickstart_notebook_executes(venv_kernel, tmp_path):
    notebook = nbformat.read(notebooks.QUICKSTART, as_version=4)
    num_cells = len(notebook.cells)
    notebook.cells.append(nbformat.v4.new_code_cell(
        "import sys, keras_emlnet; print(sys.executable); print(keras_emlnet.__file__)"))
    notebooks.execute(notebook, tmp_path)  # raises CellExecutionError, naming the cell, on any error

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    executable, package = notebook.cells[-1].outputs[0]["text"].split()
    assert executable == sys.executable
    assert package.startswith(os.path.join(REPO_ROOT, "keras_emlnet"))  # this checkout's code, not an install
    # The overlay: the 96x128 val image and its overlay side by side.
    pictures = _pictures(notebook)
    assert len(pictures) == 1 and pictures[0].size == (2 * 128, 96)
    text = _text(notebook)
    assert "-> map (96, 128)" in text
    assert "reloaded EMLNet (48, 64) minmax" in text
    # The decoder over two tiny encoders (taps 8, 12, 16 channels each): 2 * 36 + 6 weights.
    assert "decoder weights: 78" in text
    assert len(notebook.cells) == num_cells + 1


def test_committed_notebook_carries_its_outputs():
    # What GitHub renders: every code cell ran in order, the overlay picture is there, no error,
    # no stderr noise (TensorFlow's start-up logs; `python -m tests.notebooks` strips them).
    notebook = nbformat.read(notebooks.QUICKSTART, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1))
    outputs = [output for cell in code for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert not [o for o in outputs if o.output_type == "stream" and o.name == "stderr"]
    pictures = _pictures(notebook)
    assert len(pictures) == 1 and pictures[0].size == (2 * 128, 96)
    assert "reloaded EMLNet (48, 64) minmax" in _text(notebook)
    # The text says how a .keras file loads in any process.
    markdown = "".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    assert "keras_emlnet.load_model" in markdown and "keras.saving.load_model" not in markdown
