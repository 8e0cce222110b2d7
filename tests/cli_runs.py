"""Helpers for the tests that train tiny runs through the command line and interrupt them
(test_reliability.py, test_interrupts.py): a depth-8 net on 256 synthetic images."""

import os
import pathlib
import subprocess
import sys

import keras

from benchmarks import migrate_config_json
from cifar_resnet.spec import rundir

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Run directories written by the code before resume used public Keras APIs (README.md there),
# their config.json as that code wrote it (before `precision` and `whole_passes`).
EARLIER = ROOT / "tests" / "fixtures" / "keras3.15-v1-depth8"


def earlier_run(name: str, to: pathlib.Path) -> pathlib.Path:
    """A copy of EARLIER/`name` at `to`, its config.json migrated once, as a user does."""
    import shutil
    shutil.copytree(EARLIER / name, to)
    assert migrate_config_json.main([str(to)]) == 0
    return to
TINY = ["--dataset", "synthetic", "--depth", "8", "--batch-size", "64",
        "--set", "synthetic_train=256", "--set", "synthetic_test=128"]

# Runs the CLI, SIGKILLing itself just before the N-th os.replace onto a file named NAME: after
# the temporary file is complete, before it takes the real name (KILL_BEFORE="NAME:N").
KILLER = """
import os, signal, sys
name, n = os.environ["KILL_BEFORE"].split(":")
real, seen = os.replace, [0]
def replace(src, dst):
    if str(dst).endswith(name):
        seen[0] += 1
        if seen[0] == int(n):
            os.kill(os.getpid(), signal.SIGKILL)
    real(src, dst)
os.replace = replace
from cifar_resnet.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def _train_cmd(workdir, epochs, *extra):
    return ["train", *TINY, "--epochs", str(epochs), "--workdir", str(workdir), *extra]


def _popen(args, env=None, code=None):
    cmd = [sys.executable, *(["-c", code] if code else ["-m", "cifar_resnet"]), *args]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **(env or {})})


def _periods(workdir):
    return [int(r["period"]) for r in rundir.read_history(workdir / "history.csv")]


class _At(keras.callbacks.Callback):
    """Calls `action(model)` at the start of epoch `epoch` (after batch `batch` if given)."""

    def __init__(self, epoch, action, batch=None):
        super().__init__()
        self.epoch, self.action, self.batch, self.current = epoch, action, batch, -1

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch
        if epoch == self.epoch and self.batch is None:
            self.action(self.model)

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch and batch == self.batch:
            self.action(self.model)


def _interrupt(model):
    raise KeyboardInterrupt


