"""metrics.json's content: what a finished run reports, computed from its history.csv.

The paper's numbers first: the final test error (He et al. 2015, Table 6 and Figure 6 report
the error at the end of training) and, with a validation split, the error of the logging period
selected on it (sec 4.2: "45k/5k train/val split"); then the trainable parameters in the papers'
convention, the training rate, the start-up cost, and the versions and commit of the code that
produced them. rundir.py reads the file back; train.py writes it.
"""

from __future__ import annotations

import math
import pathlib
import platform
import subprocess
import sys

import keras
import numpy as np


def count_params(model: keras.Model) -> int:
    """Trainable parameters: the papers' convention (BatchNorm moving statistics excluded)."""
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def versions() -> dict[str, str]:
    """Python, Keras, its backend and numpy versions (TensorFlow's only where it is loaded)."""
    out = {"python": platform.python_version(), "keras": keras.__version__,
           "backend": keras.backend.backend(), "numpy": np.__version__}
    for package in ("tensorflow", "jax", "torch"):
        module = sys.modules.get(package)  # None where an import of it is blocked
        if module is not None:
            out[package] = module.__version__
    return out


def code_version() -> dict:
    """The git commit of this package's checkout and whether it had local changes.

    `{"commit": None}` outside a git checkout (an installed wheel): the package version then
    names the code. Recorded in metrics.json, so a result names the code that produced it.
    """
    root = pathlib.Path(__file__).resolve().parents[2]
    try:
        def git(*args):
            return subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                                  text=True, timeout=10, check=True).stdout.strip()
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", "cifar_resnet"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": None}
    return {"commit": commit, "dirty": dirty}


def _passes(iterations: int, per_pass: int) -> float:
    """Passes over the data in `iterations`: whole as an int, else to two decimals."""
    return iterations // per_pass if iterations % per_pass == 0 else round(iterations / per_pass, 2)


def run_metrics(history, params, images_per_period, iterations_per_pass, train_times=(),
                train_steals=(), first_partial=False) -> dict:
    """The metrics.json content from the history rows of a finished run.

    Args:
        history: the rows of history.csv.
        params: trainable parameters.
        images_per_period: images of one logging period (batch size x its iterations).
        iterations_per_pass: iterations of one pass over the training images.
        train_times: seconds of each period of this session spent in training batches alone.
        train_steals: the share of CPU time stolen by the hypervisor in each of those (None
            where unknown); a virtual machine's steal slows a rate without any fault of ours.
        first_partial: this session began inside a period (resumed where a signal stopped it),
            so its first period is short and the start-up cost is not measured (None).
    """
    last = history[-1]
    has_val = any(not math.isnan(r["val_error"]) for r in history)
    # First period with the lowest validation error: the paper's model selection.
    best = min(history, key=lambda r: r["val_error"]) if has_val else None
    # The first period also traces the step, fills the input pipeline and creates oneDNN
    # primitives: its excess over the later periods is the start-up cost, kept out of the rate.
    steady = sorted(train_times[1:])
    median = steady[len(steady) // 2] if steady else None
    # Without a validation split there is no model selection: the best-by-validation fields
    # are left out rather than set to None, so no reader mistakes them for measured values.
    # Its period counts logging periods from 1 (history.csv's `period` + 1; `best_val_epoch`
    # in files written before issue #39, rundir.METRICS_RENAMED), its iterations say where
    # it is whatever the period's length.
    selected = {"best_val_period": int(best["period"]) + 1,
                "best_val_iterations": int(best["iterations"]),
                "best_val_error": best["val_error"],
                "best_test_error": best["test_error"]} if best else {}
    return {
        "status": "complete",
        "final_test_error": last["test_error"],
        **selected,
        "final_train_error": last["error"],
        "params": int(params),
        # Epochs: passes over the training images (two decimals where not whole); a logging
        # period (log_every) may be shorter or longer than one.
        "epochs": _passes(int(last["iterations"]), iterations_per_pass),
        "iterations": int(last["iterations"]),
        "wall_time": last["wall_time"],
        # Training batches only (no validation or test pass), median over periods after the first.
        "images_per_sec": images_per_period / median if median else None,
        # Against the fastest later period: a later one slowed by the machine (other jobs,
        # steal) would otherwise hide the start-up cost, even make it negative.
        "startup_time": train_times[0] - steady[0] if steady and not first_partial else None,
        # Largest over the periods the rate is the median of: above a few percent, the rate is
        # the machine's, not the code's.
        "cpu_steal": max((v for v in train_steals[1:] if v is not None), default=None),
        "versions": versions(),
    }
