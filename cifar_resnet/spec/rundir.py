"""The run directory, the unit of work: the one place its files are named.

A run directory holds one training run (run/train.py writes it, run/sweep.py plans and inspects
it, results/ reads it back):

    config.json      the resolved config, written before the first step
    data.json        the identity of the data (spec/dataid.py)
    history.csv      one row per logging period
    best.keras       the model with the best validation accuracy (with a validation split)
    final.keras      the model at the end of training
    metrics.json     written at the end (or with status "failed" when training diverged)
    backup/          resume state (run/reliability.Checkpointer): training_metadata.json and
                     the weights and optimizer state of the last finished period (or of the
                     iteration a signal stopped at: run/resume.py)
    tensorboard/     TensorBoard logs
    .lock            the run lock: an flock held while a process trains here (run/reliability.run_lock)
    train.log        a sweep's subprocess output (sweep --jobs N)
    layer_responses.json  Figure 7's per-layer responses (results/analysis.py)
    eval/            `evaluate`'s outputs: `{split}-{checkpoint}[-{tta}].json` and its figures
                     (`RunDir.evaluation`); a report copies the final model's test reports
                     (FINAL_EVALUATIONS)

It also reads and writes the run's small files: history.csv (`read_history`, `trim_history`,
`append_history`, through which `callbacks.HistoryWriter` adds a row) and metrics.json
(`read_metrics`, `finished_metrics`: the one reader, for training, the command line and sweeps).
Importing this module imports neither TensorFlow nor Keras.

Words (issue #39): an "epoch" is a pass over the training images; a "period" is a logging period,
`log_every` iterations (a pass by default), what Keras' `fit` calls an epoch. Files written
before that rule named periods "epoch" (history.csv's `epoch` and `epoch_time` columns,
metrics.json's `best_val_epoch`, a failed run's `epoch` and `finished_epochs`). Their readers
are here, and they give the new names only (HISTORY_RENAMED, METRICS_RENAMED), so the
committed run directories read, report and resume as they are. The backup's metadata keeps
"epoch" (periods done) and its files `epoch<k>[-iter<i>].weights.h5` (run/reliability.py).
"""

from __future__ import annotations

import csv
import dataclasses
import fcntl
import io
import math
import os
import pathlib
from typing import Optional

from cifar_resnet.spec import files

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
# The final model's test evaluations that a report copies and its results.csv reads
# (results/analysis.write_final_errors): without and with flip test-time augmentation.
FINAL_EVALUATIONS = {"plain": ("test", "final", None), "flip": ("test", "final", "flip")}
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

    def evaluation(self, split: str, checkpoint: str, tta: Optional[str] = None,
                   suffix: str = ".json", folder=None) -> pathlib.Path:
        """`eval/{split}-{checkpoint}[-{tta}]{suffix}`: an `evaluate` report (or, with suffix
        "-confusion.png" or "-wrong.png", its figures); in `folder` instead of eval/ if given."""
        stem = "-".join([split, checkpoint] + ([tta] if tta else []))
        return pathlib.Path(folder if folder is not None else self.eval) / f"{stem}{suffix}"

    def complete(self) -> bool:
        """Whether the run finished (metrics.json says "complete"); False when it is unreadable."""
        try:
            return finished_metrics(self.path) is not None
        except MetricsUnreadable:
            return False

    def started(self) -> bool:
        """Whether a run was begun here: its config, history or backup exists."""
        return self.config.exists() or self.history.exists() or self.backup.exists()


# history.csv: one row per logging period (callbacks.HistoryWriter appends them through
# `append_history`): `period` counts them from 0, `period_time` is a period's seconds.
HISTORY_FIELDS = ("period", "iterations", "lr", "loss", "error", "val_loss", "val_error",
                  "test_loss", "test_error", "period_time", "wall_time")
# The columns' names in files written before issue #39 (Keras' word for a period): read under
# the new names, and a resumed run's next row rewrites the header (`append_history`).
HISTORY_RENAMED = {"epoch": "period", "epoch_time": "period_time"}


class HistoryError(RuntimeError):
    """A history.csv row cannot be read; the message (one line) names the file, the line and
    what to do. Nothing was changed."""


def read_history(path) -> list[dict]:
    """Rows of a history.csv as dicts of floats (empty cells become NaN), under the names of
    HISTORY_FIELDS: an older file's `epoch` column reads as `period` (HISTORY_RENAMED).

    Raises:
        HistoryError: a row is not numbers with a whole period number (a damaged file).
    """
    path = pathlib.Path(path)
    if not path.exists():
        return []
    rows, line = [], 1
    try:
        with path.open(newline="") as f:
            for line, row in enumerate(csv.DictReader(f), 2):
                if None in row:
                    raise ValueError(f"{len(row[None])} field(s) too many")
                parsed = {HISTORY_RENAMED.get(k, k): float(v) if v not in ("", None)
                          else math.nan for k, v in row.items()}
                if not float(parsed.get("period", math.nan)).is_integer():
                    raise ValueError("no whole period number")
                rows.append(parsed)
    except (ValueError, TypeError, csv.Error) as e:  # UnicodeDecodeError is a ValueError
        reason = " ".join(str(e).split())[:120]
        raise HistoryError(f"{path}: line {line} is not a history row ({reason}); fix or delete "
                           "that line and rerun the same command: training resumes from its "
                           "last checkpoint (the curves then miss that row)") from None
    return rows


def trim_history(path, periods_done: int) -> list[dict]:
    """Drops rows of periods the backup does not hold (written after the last backup); returns
    the rows kept. A damaged row is refused (HistoryError) before anything is rewritten."""
    path = pathlib.Path(path)
    if not path.exists():
        return []
    read_history(path)
    header, *rows = path.read_text().splitlines(keepends=True)
    keep = [line for line in rows if line.strip() and int(line.split(",", 1)[0]) < periods_done]
    if len(keep) != len(rows):
        files.atomic_write_text(path, header + "".join(keep))
    return read_history(path)


def append_history(path, row: dict) -> None:
    """Adds `row` (values by HISTORY_FIELDS' names; a missing one is an empty cell) to the
    history.csv at `path`, creating it with its header. The file is replaced atomically (it is
    small), so a crash leaves the old or the new file, never a torn row.

    A file with another header (an older run's, resumed: HISTORY_RENAMED's old names, or fewer
    columns) is rewritten once, whole, under HISTORY_FIELDS with this row: its columns renamed,
    cells it lacks left empty, a column of its own kept at the end; so the file always has one
    header that names every row's cells.
    """
    path = pathlib.Path(path)
    text = path.read_text() if path.exists() else ""
    if not text.strip():
        header, rows = [], []
    else:
        header, *rows = [r for r in csv.reader(io.StringIO(text)) if r]
    names = [HISTORY_RENAMED.get(name, name) for name in header]
    fields = list(HISTORY_FIELDS) + [name for name in names if name not in HISTORY_FIELDS]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if header == fields:  # the usual case: one row more, the file's bytes kept
        out.write(text if text.endswith("\n") else text + "\n")
    else:
        writer.writerow(fields)
        for cells in rows:
            cell = dict(zip(names, cells))
            writer.writerow([cell.get(name, "") for name in fields])
    writer.writerow([str(row.get(name, "")) for name in fields])
    files.atomic_write_text(path, out.getvalue())


def check_history(path, periods_done: int, backup) -> None:
    """Refuses a history.csv that lacks a row of the `periods_done` periods the checkpoint in
    `backup` has done: missing or cut short (issue #38), the run would otherwise finish
    with fewer rows, and the rows cannot be rebuilt (their errors were measured then).

    Raises:
        HistoryError: one line naming the file, the periods missing and what to do. Nothing
            is changed.
    """
    path = pathlib.Path(path)
    have = {int(row["period"]) for row in read_history(path)}
    missing = [period + 1 for period in range(periods_done) if period not in have]
    if not missing:
        return
    what = ("is missing" if not path.exists() else
            f"holds {periods_done - len(missing)} of the {periods_done} rows")
    periods = (f"period {missing[0]}" if len(missing) == 1 else
               f"periods {missing[0]}-{missing[-1]}" if missing[-1] - missing[0] == len(missing) - 1
               else f"{len(missing)} periods")
    raise HistoryError(f"{path} {what}, but the checkpoint in {backup} has done {periods_done} "
                       f"periods ({periods} missing; their errors cannot be measured again); "
                       "put the file back and "
                       f"rerun the same command, or delete {backup} and {path.name} to train "
                       "this run again from zero")


class MetricsUnreadable(ValueError):
    """metrics.json exists but is not a readable JSON mapping. `path` is the file, `cause` the
    error (a TypeError for JSON that is not a mapping) and `reason` one line saying why."""

    def __init__(self, path: pathlib.Path, cause: Exception):
        self.path, self.cause = path, cause
        self.reason = " ".join(str(cause).split())[:120]
        super().__init__(f"{path} is unreadable ({self.reason})")


# metrics.json's fields that count logging periods, by their names in files written before
# issue #39: a finished run's `best_val_epoch` (the 1-based period of the lowest validation
# error), a failed run's `epoch` (the period it diverged in) and `finished_epochs`. Its
# `epochs` counts passes over the training images, then as now.
METRICS_RENAMED = {"best_val_epoch": "best_val_period", "epoch": "period",
                   "finished_epochs": "finished_periods"}


def read_metrics(workdir) -> Optional[dict]:
    """metrics.json of the run in `workdir` (complete or failed), or None when it has none;
    an older file's fields under their new names (METRICS_RENAMED).

    Raises:
        MetricsUnreadable: the file exists but is not a JSON mapping (what to do about that is
            the caller's: training resumes or refuses, a sweep's status warns).
    """
    path = RunDir(workdir).metrics
    if not path.exists():
        return None
    try:
        metrics = files.read_json(path)
    except (OSError, ValueError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise MetricsUnreadable(path, e) from None
    if not isinstance(metrics, dict):
        raise MetricsUnreadable(path, TypeError(f"a {type(metrics).__name__}, not a mapping"))
    # An old name is left as it is where the file also has its new one.
    return {METRICS_RENAMED[k] if k in METRICS_RENAMED and METRICS_RENAMED[k] not in metrics
            else k: v for k, v in metrics.items()}


def finished_metrics(workdir) -> Optional[dict]:
    """metrics.json of a finished run (status "complete"), or None for a run still to train
    (none yet, or it failed). Raises MetricsUnreadable as `read_metrics`."""
    metrics = read_metrics(workdir)
    return metrics if metrics is not None and metrics.get("status") == "complete" else None


def lock_holder(workdir) -> "int | None":
    """The PID of the live process holding `workdir`'s run lock, or None when nobody holds it.

    The lock is the `flock` that `run_lock` takes, which the kernel releases when its process
    dies however it ends; so a `.lock` file left by a killed run whose PID now belongs to an
    unrelated process does not count as held (a PID check alone would).
    """
    path = RunDir(workdir).lock
    try:
        fd = files.open_nofollow(path, os.O_RDONLY)
    except OSError:  # none, or a link (refuse_links refuses it): nobody holds it
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").split()
            return int(text[0]) if text and text[0].isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


# What a run directory of ours holds (train.py, evaluate.py, the layer responses); a folder with
# anything else and no config.json is not ours.
RUN_DIR_ENTRIES = frozenset({LOCK, CONFIG, DATA, BACKUP, HISTORY, METRICS, TENSORBOARD, FINAL,
                             BEST, EVAL, LAYER_RESPONSES, TRAIN_LOG})


def refuse_links(workdir) -> None:
    """Raises files.LinkError (one line) when any entry a run writes in `workdir`, or anything
    inside its folders (backup/, tensorboard/, eval/), is a symbolic link.

    Called before a run writes anything and again with its lock held: in a run folder others
    can write, a planted link would make this run overwrite or delete the file or folder it
    points to (the lock file's PID, a checkpoint's clean-up, a log appended to). `workdir`
    itself may be a link: that is its owner's choice of where runs live.
    """
    run = RunDir(workdir)
    for name in sorted(RUN_DIR_ENTRIES):
        path = run.path / name
        files.refuse_link(path)
        if path.is_dir():
            for folder, dirs, names in os.walk(path):  # never follows links
                for entry in dirs + names:
                    files.refuse_link(pathlib.Path(folder) / entry)


def _ours(name: str) -> bool:
    """An entry a run writes, or the temporary file of an atomic write (.NAME.*.tmp*)."""
    return name in RUN_DIR_ENTRIES or (name.startswith(".") and ".tmp" in name)


def refuse_foreign_dir(workdir, error: type) -> None:
    """Raises `error` (one line) when `workdir` holds files but no run of ours (no config.json
    and an entry a run does not write): a run would mix its files into the user's."""
    workdir = pathlib.Path(workdir)
    if not workdir.is_dir() or RunDir(workdir).config.exists():
        return
    foreign = sorted(p.name for p in workdir.iterdir() if not _ours(p.name))
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3
                                          else "")
        raise error(f"{workdir} holds files but no run ({shown}); give an empty or new "
                    "--workdir (a run directory holds only the run's own files)")


def another_config_hint(workdir, config, diff) -> str:
    """The end of the "another config" refusal: how to resume, or where to write instead.

    A finished run is not extended in place: its learning-rate milestones are fractions of its
    length, so more iterations make another run, trained from the start in another folder.
    """
    workdir = pathlib.Path(workdir)
    finished = RunDir(workdir).complete()
    suffix = "-".join(f"{k.replace('_', '-')}{getattr(config, k)}" for k in diff[:2])
    suffix = "".join(c if c.isalnum() or c in "-." else "_" for c in suffix)
    elsewhere = workdir.parent / f"{workdir.name}-{suffix}"
    length = {"iterations", "epochs"} & set(diff)
    if finished and length:
        return (f"this run is finished, and a finished run is not extended (its learning-rate "
                f"milestones are fractions of its length): train the new length in another "
                f"folder, e.g. --workdir {elsewhere}")
    return f"use another --workdir (e.g. {elsewhere}), or the same settings to resume"
