"""Executes the example notebooks in THIS interpreter; `python -m tests.notebooks` rewrites them with outputs.

The committed `examples/quickstart.ipynb` carries its outputs (the overlay
shows on the repository page); `python -m tests.notebooks` reruns it and writes it back,
and `tests/test_quickstart_notebook.py` executes it again on every test run.

A "python3" kernelspec installed for the user or the system would win over
ipykernel's built-in one and could point at another Python, so the kernel is
registered under its own name on a private JUPYTER_PATH (with a private
IPYTHONDIR: no user profile or startup files).
"""

import json
import os
import sys
import tempfile

from tests.paths import REPO_ROOT

QUICKSTART = os.path.join(REPO_ROOT, "examples", "quickstart.ipynb")
KERNEL_NAME = "keras-emlnet-test"
TIMEOUT = 300  # seconds per cell


def kernel_environment(root):
    """Writes a kernelspec for this interpreter under `root`; returns the environment variables to set."""
    spec_dir = os.path.join(root, "jupyter", "kernels", KERNEL_NAME)
    os.makedirs(spec_dir, exist_ok=True)
    with open(os.path.join(spec_dir, "kernel.json"), "w") as f:
        json.dump({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "keras-emlnet test kernel",
            "language": "python",
        }, f)
    # The kernel runs in a scratch folder: PYTHONPATH makes it import this checkout's
    # keras_emlnet, not whichever copy is pip-installed (an editable install of another tree).
    pythonpath = os.pathsep.join(p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p)
    return {
        "PYTHONPATH": pythonpath,
        "JUPYTER_PATH": os.path.join(root, "jupyter"),
        "IPYTHONDIR": os.path.join(root, "ipython"),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }


def execute(notebook, cwd):
    """Runs every cell of `notebook` (nbformat v4, modified in place) with the kernel of `kernel_environment`.

    Raises:
        nbclient.exceptions.CellExecutionError: a cell failed (it is named).
    """
    from nbclient import NotebookClient

    client = NotebookClient(notebook, kernel_name=KERNEL_NAME, timeout=TIMEOUT,
                            resources={"metadata": {"path": str(cwd)}})
    client.execute()
    return notebook


def strip_noise(notebook):
    """Drops what should not be committed: stderr streams (TensorFlow's start-up logs) and run timestamps."""
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not (o.output_type == "stream" and o.name == "stderr")]
    return notebook


def main():
    import nbformat

    from keras_emlnet import atomic_files

    notebook = nbformat.read(QUICKSTART, as_version=4)
    with tempfile.TemporaryDirectory(prefix="notebook_") as root:
        os.environ.update(kernel_environment(root))
        execute(notebook, root)
    atomic_files.write_text_atomic(QUICKSTART, nbformat.writes(strip_noise(notebook)) + "\n")
    print(f"wrote {QUICKSTART} with its outputs")


if __name__ == "__main__":
    main()
