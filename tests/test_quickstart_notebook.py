"""examples/quickstart.ipynb runs top to bottom (nbclient), in this interpreter, so it cannot rot."""

import base64
import io
import json
import os
import sys

import nbformat
import pytest
from PIL import Image

NOTEBOOK = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "quickstart.ipynb")
KERNEL_NAME = "keras-emlnet-test"


@pytest.fixture
def venv_kernel(tmp_path, monkeypatch):
    """A kernelspec running ipykernel in THIS interpreter (the venv's python).

    A "python3" kernelspec installed for the user or the system would win
    over ipykernel's built-in one and could point at another Python, so the
    test registers its own under a unique name on a private JUPYTER_PATH.
    """
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "keras-emlnet test kernel",
        "language": "python",
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))  # no user profile or startup files
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    return KERNEL_NAME


def test_quickstart_notebook_executes(venv_kernel, tmp_path):
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    num_cells = len(notebook.cells)
    notebook.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.executable)"))
    client = NotebookClient(notebook, kernel_name=venv_kernel, timeout=300,
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, naming the cell, on any error

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert notebook.cells[-1].outputs[0]["text"].strip() == sys.executable
    # The overlay: the 96x128 val image and its overlay side by side.
    pictures = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.get("data", {})]
    assert len(pictures) == 1
    picture = Image.open(io.BytesIO(base64.b64decode(pictures[0]["data"]["image/png"])))
    assert picture.size == (2 * 128, 96)
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "-> map (96, 128)" in text
    assert "reloaded EMLNet (48, 64) minmax" in text
    # The decoder over two tiny encoders (taps 8, 12, 16 channels each): 2 * 36 + 6 weights.
    assert "decoder weights: 78" in text
    assert len(notebook.cells) == num_cells + 1
