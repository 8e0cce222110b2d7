"""Executes the notebooks, keeping their outputs, so they render on GitHub.

`make notebooks` runs it; `python notebooks/execute.py [--out DIR | --in-place] [--data-dir DIR]
[NOTEBOOK ...]`. Each notebook reads `RUNS`, its one parameter (default: the committed report in
docs/; `$CIFAR_RESNET_RUNS` overrides it, a relative path being taken from the folder this is
run in), with `notebooks/` as its working directory. Figure 7 (03_layer_responses) reads each
run's test data where its data.json says; `--data-dir DIR` (`make notebooks DATA_DIR=DIR`, or
`$CIFAR_RESNET_DATA`) reads another copy instead, checked against data.json's SHA-256 as
`evaluate --data-dir` does.

On the default RUNS the committed notebooks are updated in place. On other runs
($CIFAR_RESNET_RUNS set) the executed copies go to `--out DIR` (default RUNS/notebooks), and the
committed ones are left alone unless `--in-place` asks for them to be updated.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

import nbformat
import nbclient.exceptions
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


def resolve_runs_variable(cwd=None):
    """Makes a relative $CIFAR_RESNET_RUNS absolute from `cwd` (default: this process's folder,
    the caller's), since the kernel runs in notebooks/; returns it, or None when unset."""
    runs = os.environ.get("CIFAR_RESNET_RUNS")
    if runs:
        runs = str(pathlib.Path(cwd or os.getcwd(), os.path.expanduser(runs)).resolve())
        if not pathlib.Path(runs).is_dir():
            raise SystemExit(f"execute.py: error: CIFAR_RESNET_RUNS {runs!r} is not a folder "
                             "(a folder of runs, or a report's folder)")
        os.environ["CIFAR_RESNET_RUNS"] = runs
    return runs


def resolve_data_variable(data_dir=None, cwd=None):
    """The notebooks' `--data-dir`: sets $CIFAR_RESNET_DATA, which the kernel inherits, to it.

    Args:
        data_dir: `--data-dir`'s value; default $CIFAR_RESNET_DATA's.
        cwd: the folder a relative path is taken from (default: this process's, the caller's;
            the kernel runs in notebooks/).

    Returns:
        The absolute path, or None when neither is given (each run's data.json is read).

    Raises:
        SystemExit: the path does not exist.
    """
    data = data_dir or os.environ.get("CIFAR_RESNET_DATA")
    if not data:
        return None
    path = pathlib.Path(cwd or os.getcwd(), os.path.expanduser(data)).resolve()
    if not path.exists():
        raise SystemExit(f"execute.py: error: data {str(path)!r} (--data-dir or "
                         "CIFAR_RESNET_DATA) does not exist; expected a CIFAR folder or archive, "
                         "or a folder holding one")
    os.environ["CIFAR_RESNET_DATA"] = str(path)
    return str(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="notebooks/execute.py", allow_abbrev=False,
                                     description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", metavar="NOTEBOOK",
                        help="default: every notebooks/*.ipynb")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", help="write the executed copies to this folder (default: in "
                                     "place on the committed report, RUNS/notebooks on other "
                                     "runs)")
    where.add_argument("--in-place", action="store_true",
                       help="update the committed notebooks even on other runs")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="Figure 7's test data (default: each run's, as its data.json "
                             "names it; also $CIFAR_RESNET_DATA)")
    args = parser.parse_args(argv)
    runs = resolve_runs_variable()
    resolve_data_variable(args.data_dir)
    out = args.out
    if out is None and runs and not args.in_place:
        out = pathlib.Path(runs) / "notebooks"
    if out is not None:
        out = pathlib.Path(out)
        out.mkdir(parents=True, exist_ok=True)
    for path in map(pathlib.Path, args.notebooks or sorted(HERE.glob("*.ipynb"))):
        target = path if out is None else out / path.name
        try:
            executed = execute(path)
        except nbclient.exceptions.CellExecutionError as e:
            # The cell's error in one line (a run's data not found, say), not the kernel's
            # traceback of some 200 lines; the notebook is left as it was.
            message = " ".join(str(getattr(e, "evalue", "") or e).split())[:400]
            print(f"execute.py: error: {path.name}: {getattr(e, 'ename', 'error')}: {message}",
                  file=sys.stderr)
            return 1
        nbformat.write(executed, target)
        print(f"executed {path}" + ("" if target == path else f" -> {target}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
