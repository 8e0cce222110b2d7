"""The run directory, the unit of work: the one place its files are named.

A run directory holds one training run (run/train.py writes it, run/sweep.py plans and inspects
it, results/ reads it back):

    config.json      the resolved config, written before the first step
    data.json        the identity of the data (data/dataid.py)
    history.csv      one row per logging period
    best.keras       the model with the best validation accuracy (with a validation split)
    final.keras      the model at the end of training
    metrics.json     written at the end (or with status "failed" when training diverged)
    backup/          resume state (run/reliability.Checkpointer): training_metadata.json and
                     the weights and optimizer state of the last finished period
    tensorboard/     TensorBoard logs
    .lock            the run lock: an flock held while a process trains here (run/files.py)
    train.log        a sweep's subprocess output (sweep --jobs N)
    layer_responses.json  Figure 7's per-layer responses (results/analysis.py)
    eval/            `evaluate`'s outputs

Importing this module imports neither TensorFlow nor Keras.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Optional

CONFIG = "config.json"
DATA = "data.json"
HISTORY = "history.csv"
BEST = "best.keras"
FINAL = "final.keras"
METRICS = "metrics.json"
BACKUP = "backup"
METADATA = "training_metadata.json"  # inside BACKUP
TENSORBOARD = "tensorboard"
LOCK = ".lock"
TRAIN_LOG = "train.log"
LAYER_RESPONSES = "layer_responses.json"
EVAL = "eval"

# The small files a report copies (results/analysis.py): everything but the checkpoints.
REPORT_FILES = (CONFIG, METRICS, HISTORY, DATA, LAYER_RESPONSES)
# What a multi-worker scratch copy starts from to resume (run/distribute.py).
RESUME_FILES = (CONFIG, HISTORY, METRICS, BACKUP)


@dataclasses.dataclass(frozen=True)
class RunDir:
    """Paths of one run directory's files."""

    path: pathlib.Path

    def __post_init__(self):
        object.__setattr__(self, "path", pathlib.Path(self.path))

    config = property(lambda self: self.path / CONFIG)
    data = property(lambda self: self.path / DATA)
    history = property(lambda self: self.path / HISTORY)
    best = property(lambda self: self.path / BEST)
    final = property(lambda self: self.path / FINAL)
    metrics = property(lambda self: self.path / METRICS)
    backup = property(lambda self: self.path / BACKUP)
    tensorboard = property(lambda self: self.path / TENSORBOARD)
    lock = property(lambda self: self.path / LOCK)
    train_log = property(lambda self: self.path / TRAIN_LOG)
    layer_responses = property(lambda self: self.path / LAYER_RESPONSES)
    eval = property(lambda self: self.path / EVAL)

    def checkpoint(self, name: str) -> pathlib.Path:
        """`best` or `final`: the path of that saved model."""
        return {"best": self.best, "final": self.final}[name]

    def read_metrics(self) -> Optional[dict]:
        """metrics.json's content, or None when the run has not written it."""
        return json.loads(self.metrics.read_text()) if self.metrics.exists() else None

    def complete(self) -> bool:
        """Whether the run finished (metrics.json says "complete")."""
        metrics = self.read_metrics()
        return bool(metrics) and metrics.get("status") == "complete"

    def started(self) -> bool:
        """Whether a run was begun here: its config, history or backup exists."""
        return self.config.exists() or self.history.exists() or self.backup.exists()
