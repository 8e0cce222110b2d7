"""Executes the notebooks in place, keeping their outputs, so they render on GitHub.

`make notebooks` runs it; `python notebooks/execute.py [NOTEBOOK ...]` executes some of them.
Each notebook reads `RUNS`, its one parameter (default: the committed report in docs/;
`$CIFAR_RESNET_RUNS` overrides it), with `notebooks/` as its working directory.
"""

from __future__ import annotations

import os
import pathlib
import sys

import nbformat
from nbclient import NotebookClient

HERE = pathlib.Path(__file__).resolve().parent


def execute(path, timeout: int = 900):
    """Runs every cell of the notebook at `path` in a fresh python3 kernel; returns it.

    Raises:
        nbclient.exceptions.CellExecutionError: a cell failed.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # the kernel inherits it
    path = pathlib.Path(path)
    nb = nbformat.read(path, as_version=4)
    # TensorFlow's C++ start-up lines go to file descriptor 2, which ipykernel would copy into
    # the outputs; they go to this process's stderr instead.
    NotebookClient(nb, kernel_name="python3", timeout=timeout, record_timing=False,
                   extra_arguments=["--IPKernelApp.capture_fd_output=False"],
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb


def main(paths) -> int:
    for path in paths or sorted(HERE.glob("*.ipynb")):
        nbformat.write(execute(path), path)
        print(f"executed {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
