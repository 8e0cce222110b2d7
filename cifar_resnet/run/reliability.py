"""Crash safety for long runs: atomic checkpoints, a run-directory lock, clean stops.

A ResNet-1202 (He et al. 2015 sec 4.2) or ResNet-1001 (He et al. 2016) run on CIFAR-10 takes a day
or more, so a run must survive SIGKILL, Ctrl-C, a full disk and a second process started on the
same directory without losing finished logging periods (a pass each by default, `log_every`
iterations otherwise; Keras' `fit` calls them epochs). The pieces, used by
`train.run_experiment`:

- `atomic_save`: a model or its weights go to a temporary file, are fsynced, then renamed over the
  target; a failed write leaves the previous file as it was.
- `Checkpointer`: a callback saving each period's whole training state (weights, optimizer
  slots, iteration count) to a new file named by its period, with its SHA-256 in
  `training_metadata.json` (itself replaced atomically), keeping the previous state; `restore`
  loads the newest verified one before `fit(initial_epoch=...)`. A corrupt latest state is
  reported by name and the previous one used.
- `BestCheckpoint`: the best model so far, written through `atomic_save`.
- `run_lock`: `fcntl.flock` on `<workdir>/.lock`; the kernel drops it when its process dies, so a
  crashed run never leaves a stale lock. A finished run removes the file, still holding it.
- `SignalStop`: SIGINT/SIGTERM finish the current batch, then raise `Interrupted`; under
  `resume.fit` the state at that iteration is saved first (a mid-period state), and the rerun
  continues from it.
- `DivergenceStop`: a NaN or Inf loss raises `Diverged` at once, and so does a period ending
  with a cross-entropy above three times chance's (CHANCE_FACTOR; the same bound on every
  backend) or a non-finite weight, BatchNorm statistic or optimizer slot, before any period-end
  callback could record or back up the diverged state.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import math
import os
import pathlib
import re
import shutil
import signal
import sys
import threading

import keras

from cifar_resnet.spec.choices import check_choice
from cifar_resnet.spec import files, rundir



class RunLocked(RuntimeError):
    """Another live process holds the run directory."""


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written; the previous one is intact."""


class ResumeError(RuntimeError):
    """The run's resume state cannot be read; the message (one line) says how to restart.
    Nothing was changed."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped training after a batch; the run is resumable, from
    `iteration` where known (the iterations its saved state has done)."""

    def __init__(self, signum: int, iteration: int | None = None):
        super().__init__(signal.Signals(signum).name)
        self.signum, self.iteration = signum, iteration
        self.exit_status = 128 + signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


class Diverged(RuntimeError):
    """Training diverged at `step` (1-based iteration) of logging period `period` (0-based, a
    Keras epoch): a NaN or Inf loss, a period's loss above MAX_LOSS, or a weight, BatchNorm
    statistic or optimizer slot that is not finite at the period's end."""

    def __init__(self, step: int, period: int, what: str = "loss is NaN or Inf"):
        super().__init__(f"{what} at iteration {step} (period {period + 1})")
        self.step, self.period = step, period


def _fsync_dir(folder: pathlib.Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)  # makes the rename itself durable
    finally:
        os.close(fd)


def _expected_size(model: keras.Model, path: pathlib.Path) -> int:
    """Bytes a checkpoint of `model` at `path` will take, to refuse a write that cannot fit.

    The previous file of the same kind where there is one (every period's state has the same
    size); else the variables' bytes (weights, BatchNorm statistics, optimizer slots) and a
    margin for HDF5's metadata and the .keras file's config.
    """
    previous = sorted(path.parent.glob("epoch*.weights.h5")) if path.name.startswith(
        "epoch") else [path]
    for old in previous:
        try:
            return old.stat().st_size
        except OSError:
            pass
    variables = list(model.variables)
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None:
        variables += list(optimizer.variables)
    nbytes = sum(math.prod(v.shape) * _itemsize(v.dtype) for v in variables)
    return int(nbytes * 1.05) + (256 << 10)


def _itemsize(dtype) -> int:
    import numpy as np
    return np.dtype(keras.backend.standardize_dtype(dtype)).itemsize


def _free_space_ok(folder: pathlib.Path, needed: int) -> bool:
    """Whether `folder`'s file system has `needed` bytes free (True where it cannot tell)."""
    try:
        return shutil.disk_usage(folder).free >= needed
    except OSError:
        return True


def _release_h5_file(tmp: pathlib.Path) -> None:
    """Lets h5py close a temporary file whose write failed, without a crash.

    After ENOSPC mid-write, h5py still holds the file open; its clean-up (when the exception's
    objects are freed, or at exit) flushes to the full disk again and, with h5py 3 and HDF5 1.14,
    segfaults (issue #25). Pointing the file's descriptors at /dev/null first lets that flush
    succeed harmlessly; the file is deleted by the caller. Linux only (/proc); elsewhere a no-op.
    """
    import gc

    fd_dir = pathlib.Path("/proc/self/fd")
    if not fd_dir.is_dir():
        return
    target = str(tmp.resolve())
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for entry in list(fd_dir.iterdir()):
            try:
                link = os.readlink(entry)
            except OSError:
                continue
            if link in (target, target + " (deleted)"):
                os.dup2(devnull, int(entry.name))
    finally:
        os.close(devnull)
    gc.collect()  # frees the failed writer's h5py objects now, while /dev/null takes the flush


class _Buffer(io.BytesIO):
    """An in-memory file Keras saves into: `model.save` and `model.save_weights` pick the format
    by the name's suffix (str(filepath)), and write to an io.BytesIO (h5py's file-like target;
    `.keras` archives are zipped into one) without touching the disk."""

    def __init__(self, suffix: str):
        super().__init__()
        self.suffix = suffix

    def __str__(self):
        return f"memory{self.suffix}"


def _serialize(model: keras.Model, weights_only: bool) -> bytes | None:
    """The checkpoint's bytes, made in memory (None where this Keras cannot save to memory).

    libhdf5 then never writes to the disk: a disk that fills while h5py writes made its clean-up
    segfault (issue #25, and issue #38 when another process filled it during the write, after the
    free-space check). Python writes the bytes, and meets a full disk as an OSError.
    """
    buffer = _Buffer(".weights.h5" if weights_only else ".keras")
    try:
        (model.save_weights if weights_only else model.save)(buffer, overwrite=True)
    except (TypeError, ValueError, AttributeError):  # a Keras that wants a path
        return None
    return buffer.getvalue()


def _write_new(path: pathlib.Path, data: bytes) -> None:
    """Writes `data` to the new file `path` (not through a link), fsynced."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_save(model: keras.Model, path, weights_only: bool = False) -> str:
    """Saves `model` (or its weights) to `path` via a temporary file, fsync and rename.

    The checkpoint is made in memory, its free space checked for its exact size, then written
    by Python: a full disk at any moment is an OSError here, never a write inside libhdf5
    (issue #38). It costs the checkpoint's size in memory for a moment (about 160 MB for
    ResNet-1202's weights and momentum).

    Args:
        model: the model.
        path: target, ending in `.keras` (whole model) or `.weights.h5` (weights_only).
        weights_only: save weights and optimizer state only (`model.save_weights`).

    Returns:
        The SHA-256 of the written file.

    Raises:
        CheckpointWriteError: the write failed (e.g. disk full); `path` is untouched.
    """
    path = pathlib.Path(path)
    suffix = ".weights.h5" if weights_only else ".keras"  # Keras picks the format by suffix
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{suffix}")
    for stale in path.parent.glob(f".{path.name}.*.tmp{suffix}"):
        stale.unlink()  # left by a killed writer; the caller holds the run lock
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _serialize(model, weights_only)
        needed = len(data) if data is not None else _expected_size(model, path)
        if not _free_space_ok(path.parent, needed):
            raise OSError(errno.ENOSPC, f"no space left on device: {needed:,} bytes needed, "
                                        f"{shutil.disk_usage(path.parent).free:,} free")
        if data is not None:
            _write_new(tmp, data)
            digest = hashlib.sha256(data).hexdigest()
        else:  # h5py writes the file itself: refused above when it cannot fit
            try:
                (model.save_weights if weights_only else model.save)(tmp, overwrite=True)
            except OSError:
                _release_h5_file(tmp)
                raise
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            digest = files.sha256(tmp)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        reason = (e.strerror if e.errno == errno.ENOSPC and e.strerror
                  and e.strerror.startswith("no space left") else
                  "no space left on device" if e.errno == errno.ENOSPC else
                  e.strerror or str(e) or type(e).__name__)
        raise CheckpointWriteError(f"cannot write checkpoint {path} ({reason}); earlier "
                                   "checkpoints are intact; free space and rerun the same "
                                   "command to resume") from e
    return digest


class BestCheckpoint(keras.callbacks.Callback):
    """Saves the model to `path` (through `atomic_save`) whenever `monitor` improves.

    What `ModelCheckpoint(save_best_only=True)` does, as a plain callback, so that a crash never
    leaves half of the file.

    Args:
        path: the `.keras` file.
        monitor: the period's log to watch, e.g. "val_accuracy".
        mode: "max" or "min": which direction is an improvement.
        best: the value to beat (a resumed run's best so far); None: the first period saves.
    """

    def __init__(self, path, monitor: str = "val_accuracy", mode: str = "max",
                 best: float | None = None):
        super().__init__()
        check_choice("mode", mode, ("max", "min"))
        self.path, self.monitor, self.mode, self.best = pathlib.Path(path), monitor, mode, best

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(value := float(value)):
            return
        if self.best is None or (value > self.best if self.mode == "max" else value < self.best):
            atomic_save(self.model, self.path)
            self.best = value


class Checkpointer(keras.callbacks.Callback):
    """Saves the whole training state after every logging period; `restore` loads it before
    `fit`.

    The state after k periods is `model.save_weights` of the compiled model: weights, BatchNorm
    statistics, the optimizer's slots (SGD momentum) and its iteration count. It goes to a new
    file `epoch{k}.weights.h5` (see `atomic_save`), and only then does
    `training_metadata.json` (atomic) point to it, with its SHA-256 and the previous state, so
    every moment on disk names a complete, verified state. Resuming is
    `k = checkpointer.restore(model)` and `model.fit(..., initial_epoch=k)`; the input
    pipeline's position comes from the iterations done (`Checkpointer.resume_iteration`).

    The files are those the `BackupAndRestore` subclass of earlier versions wrote, so their
    run directories resume too (tests/fixtures/keras3.15-v1-depth8). That is why the backup
    keeps Keras' word for a period where the rest of a run directory says "period" (issue #39):
    the metadata's "epoch" is the periods done, and `epoch<k>` in a file's name the same k. The
    backup is internal and deleted when the run finishes; renaming it would need every reader
    here (and benchmarks/weight_growth.py, which follows a run's `epoch<k>` files) to take both.

    A signal stops training between period ends; `resume.fit` then saves a mid-period state
    through `save(k, iterations=i, ...)`: `epoch{k}-iter{i}.weights.h5`, and the metadata gains
    "iterations" (and what `resume.fit` needs to continue the period: its metric accumulators).
    Metadata without "iterations" (period ends, and every earlier version) means k periods.

    Args:
        backup_dir: the folder of the states; `remove()` deletes it once the run is recorded.
    """

    def __init__(self, backup_dir):
        super().__init__()
        self.backup_dir = pathlib.Path(backup_dir)
        self._resume = None
        self._resolved = False

    def resume_state(self) -> dict | None:
        """The verified state training will resume from, or None to start afresh.

        A latest state whose file is missing or fails its checksum is reported on stderr by
        name, and the previous state is used.
        """
        if not self._resolved:
            self._resume, self._resolved = _good_state(self.backup_dir), True
        return self._resume

    def resume_epoch(self) -> int:
        """Logging periods the resume state has finished (0 without one): `fit`'s
        `initial_epoch`."""
        state = self.resume_state()
        return state["epoch"] if state else 0

    def resume_iteration(self, steps_per_epoch: int) -> int:
        """Iterations the resume state has done (0 without one): where the input resumes."""
        state = self.resume_state()
        if not state:
            return 0
        return state.get("iterations", state["epoch"] * steps_per_epoch)

    def restore(self, model: keras.Model) -> int:
        """Loads the resume state into the compiled `model`; returns `resume_epoch()`.

        Call it in the strategy scope the model was built in, before `fit`.
        """
        state = self.resume_state()
        if state is None:
            return 0
        if model.optimizer is not None and not model.optimizer.built:
            # Its slots must exist to receive the saved values.
            model.optimizer.build(model.trainable_variables)
        path = self.backup_dir / state["weights"]
        try:
            model.load_weights(path)
        except Exception as e:  # h5py and Keras raise many types for a damaged file
            reason = " ".join(str(e).split())[:200] or type(e).__name__
            raise ResumeError(f"cannot load checkpoint {path} ({reason}); delete "
                              f"{self.backup_dir} and {rundir.RunDir(self.backup_dir.parent).history} "
                              "to restart this run from zero") from None
        return state["epoch"]

    def on_epoch_end(self, epoch, logs=None):
        self.save(epoch + 1)

    def save(self, periods_done: int, iterations: int | None = None, **extra) -> None:
        """Writes the state after `periods_done` logging periods; then the metadata names it.

        Args:
            periods_done: periods finished (the metadata's "epoch").
            iterations: a mid-period state (the signal path, `resume.fit`): the iterations done,
                within period `periods_done`; None at a period's end.
            extra: more JSON fields of a mid-period state (its metric accumulators).

        Raises:
            CheckpointWriteError: the write failed; the previous state is intact.
        """
        files.refuse_link(self.backup_dir)  # planted during the run: it would get our files
        name = (f"epoch{periods_done}.weights.h5" if iterations is None
                else f"epoch{periods_done}-iter{iterations}.weights.h5")
        digest = atomic_save(self.model, self.backup_dir / name, weights_only=True)
        state = {"epoch": periods_done, "weights": name, "sha256": digest}
        if iterations is not None:
            state.update(iterations=iterations, **extra)
        # The metadata's latest state, unless unreadable or lacking what a resume needs (then
        # the state this run resumed from): a malformed one must not be kept as "previous".
        previous = _read_metadata(self.backup_dir)
        if previous is None or state_problem(previous) is not None:
            previous = self._resume
        if previous and previous.get("weights") != name:
            # Whole (a mid-period state needs its iterations and accumulators), less its own
            # previous.
            state["previous"] = {k: v for k, v in previous.items() if k != "previous"}
        files.write_json(self.backup_dir / rundir.METADATA, state)
        keep = {name, state.get("previous", {}).get("weights")}
        for old in self.backup_dir.glob("epoch*.weights.h5"):
            if old.name not in keep:
                old.unlink(missing_ok=True)
        self._resume, self._resolved = state, True

    def remove(self) -> None:
        """Deletes the states: call it once the finished run is recorded."""
        shutil.rmtree(self.backup_dir, ignore_errors=True)


def _read_metadata(backup_dir: pathlib.Path) -> dict | None:
    try:
        meta = files.read_json(backup_dir / rundir.METADATA)
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


_STATE_NAME = re.compile(r"^epoch\d+(-iter\d+)?\.weights\.h5$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def state_problem(state) -> str | None:
    """What a state of training_metadata.json lacks for a resume (one phrase), or None.

    A state is a mapping with "epoch" (periods done, an int >= 0), "weights" (the plain name of
    a file in the backup folder, `epoch<k>[-iter<i>].weights.h5`) and "sha256" (64 hex digits);
    a mid-period one also "iterations" (an int >= 0) and, where present, "metrics" and
    "callbacks" as mappings. JSON that parses can still lack any of these (`{}`,
    `"previous": "x"`; issue #38): such a state is treated like unreadable metadata.
    """
    if not isinstance(state, dict):
        return f"is a {type(state).__name__}, not a mapping"
    if not _count(state.get("epoch")):
        return "has no whole number of periods (\"epoch\")"
    if not isinstance(state.get("weights"), str) or not _STATE_NAME.match(state["weights"]):
        return "names no checkpoint file of the backup folder (\"weights\")"
    if not isinstance(state.get("sha256"), str) or not _SHA256.match(state["sha256"]):
        return "has no SHA-256 (\"sha256\")"
    if "iterations" in state and not _count(state["iterations"]):
        return "has no whole number of iterations (\"iterations\")"
    for name in ("metrics", "callbacks"):
        if name in state and not isinstance(state[name], dict):
            return f"has {name!r} that is not a mapping"
    return None


def _newest_file_state(backup_dir: pathlib.Path, problem: str, skip=()) -> dict:
    """The state of the newest `epoch<k>.weights.h5` when the metadata is unreadable.

    Each such file took its name by an atomic rename after it was complete and fsynced, so the
    newest is a whole state, only not verifiable by checksum. Without one, nothing can resume:
    ResumeError says how to restart rather than silently starting from zero.
    """
    found = []
    for path in backup_dir.glob("epoch*.weights.h5"):
        number = path.name.removeprefix("epoch").removesuffix(".weights.h5")
        if number.isdigit() and path.name not in skip:  # skip: failed their checksum
            found.append((int(number), path))
    meta_path = backup_dir / rundir.METADATA
    if not found:
        raise ResumeError(f"{meta_path} {problem} and {backup_dir} holds no checkpoint; delete "
                          f"{backup_dir} and {rundir.RunDir(backup_dir.parent).history} to restart "
                          "this run from zero")
    epoch, path = max(found)
    print(f"warning: {meta_path} {problem}; resuming from the newest checkpoint file {path} "
          f"({epoch} period(s) done), complete by its atomic rename but without a checksum to "
          "verify", file=sys.stderr)
    # Its checksum from now on, so that the next save keeps it as the previous state.
    return {"epoch": epoch, "weights": path.name, "sha256": files.sha256(path)}


def _good_state(backup_dir: pathlib.Path) -> dict | None:
    meta_path = backup_dir / rundir.METADATA
    meta = _read_metadata(backup_dir)
    if meta is None:
        if not meta_path.exists():
            return None  # a new run
        try:
            files.read_json(meta_path)
            problem = "is not a mapping"
        except (OSError, ValueError) as e:
            problem = f"is unreadable ({type(e).__name__})"
        return _newest_file_state(backup_dir, problem)
    malformed, corrupt = [], set()
    for which, state in (("latest", meta), ("previous", meta.get("previous"))):
        if which == "previous" and "previous" not in meta:
            continue
        problem = state_problem(state if which == "previous" else
                                {k: v for k, v in meta.items() if k != "previous"})
        if problem is not None:
            malformed.append(f"its {which} state {problem}")
        if malformed:
            # A malformed latest state may stand for a newer file than the previous state's:
            # the newest file decides (below), not the previous state.
            continue
        path = backup_dir / state["weights"]
        if not path.is_file():
            problem = "is missing"
        elif files.sha256(path) != state["sha256"]:
            problem = "is corrupt or truncated (checksum mismatch)"
            corrupt.add(path.name)
        else:
            if state is not meta:
                print(f"warning: resuming from the previous checkpoint {path} "
                      f"({state['epoch']} period(s) done)", file=sys.stderr)
            return state
        print(f"warning: checkpoint {path} {problem}; ignoring it", file=sys.stderr)
    if malformed:
        # JSON that parses but lacks what a resume needs: as unreadable metadata, the newest
        # checkpoint file that is not known to be corrupt, or a one-line refusal.
        return _newest_file_state(backup_dir, f"is not usable ({'; '.join(malformed)})",
                                  skip=corrupt)
    print(f"warning: no usable checkpoint in {backup_dir}; starting from scratch", file=sys.stderr)
    return None


@contextlib.contextmanager
def run_lock(workdir):
    """Holds an exclusive lock on `workdir` for the duration of the block.

    Raises:
        RunLocked: another live process holds it; the message names its PID.
    """
    path = rundir.RunDir(workdir).lock
    while True:
        try:  # never through a link: it would truncate the file it points to (issue #38)
            fd = files.open_nofollow(path, os.O_RDWR | os.O_CREAT, 0o644)
        except files.LinkError:
            raise
        except OSError as e:
            raise files.write_error(path, e) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunLocked(f"{workdir} is in use by process {owner}; wait for it to finish or "
                            "use another --workdir") from None
        # The lock counts only on the file the path names now: a finished run removes its
        # .lock (below), so one opened before that removal is stale; open the path again.
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        rundir.refuse_links(workdir)  # again, now that no other run of ours can write here
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        # A finished run leaves no .lock: removed while still held (issue #26).
        if rundir.RunDir(workdir).complete():
            with contextlib.suppress(OSError):
                os.unlink(path)
        os.close(fd)  # releases the lock


class SignalStop(keras.callbacks.Callback):
    """Turns SIGINT/SIGTERM into `Interrupted` at the end of the current batch.

    Raising (rather than `model.stop_training`) skips the period-end callbacks, so the half-done
    period is neither recorded nor backed up. Alone, the run then resumes from the last finished
    period; under `resume.fit` (train.py), which sets `checks` to False and acts on `signum`
    itself after the other callbacks, the state at the current iteration is saved first and the
    run resumes from there. A second signal acts at once (the previous handler is back after
    the first). Use as a context manager around `fit`, so the handlers are restored however
    training ends.
    """

    def __init__(self):
        super().__init__()
        self.signum = None
        self.checks = True  # False: only record the signal; a later callback acts on it
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        self._restore()

    def _restore(self):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _handle(self, signum, frame):
        self.signum = signum
        self._restore()

    def _check(self, *args, **kwargs):
        if self.signum is not None and self.checks:
            raise Interrupted(self.signum)

    on_train_batch_end = on_epoch_begin = _check


# A period's mean cross-entropy above this is divergence, not training: it starts at
# ln(classes) (2.3 for CIFAR-10, 4.6 for CIFAR-100); `--lr 100` reaches ~1e25 with BatchNorm
# variances at inf (issue #25). Not the loss with weight decay: in a deep plain net the first steps
# lengthen the kernels behind BatchNorm a billionfold, harmlessly to the outputs, and the
# weight-decay term with them (plain-110 on CIFAR-10: 1.6e6 after 50 iterations at lr 0.01;
# docs/full-repro, "Plain-56").
MAX_LOSS = 1e4
DATA_LOSS = "cross_entropy"  # the logged loss without weight decay (build.compiled)
# ... and above this many times chance's cross-entropy (ln(classes): 6.9 for CIFAR-10, 13.8 for
# CIFAR-100), on every backend (issue #38). MAX_LOSS alone held under TensorFlow only: its
# cross-entropy of a softmax output recovers the logits and grows without bound (1.8e17 at
# `--lr 100`), while JAX's clips the probabilities at 1e-7, so its cross-entropy never passes
# -ln(1e-7) = 16.1 (13.9 in the first period of the same `--lr 100` run, which ended
# "complete" at 90% test error with weights of 6.7e8). A training net's period averages about
# chance at first and falls; three times chance means the net puts on average 1/1000 (of 10
# classes) on the true class: it has been pushed away from the data, not taught by it.
CHANCE_FACTOR = 3


def non_finite_variables(model: keras.Model) -> list[str]:
    """The paths of the model's variables (weights, BatchNorm moving statistics) and its
    optimizer's (momentum slots) that hold a NaN or Inf."""
    import numpy as np

    variables = list(model.variables)
    optimizer = getattr(model, "optimizer", None)  # None or absent before compile
    if optimizer is not None:
        variables += list(optimizer.variables)
    bad = []
    for v in variables:
        value = np.asarray(keras.ops.convert_to_numpy(v))
        if value.dtype.kind in "fc" and not np.isfinite(value).all():
            bad.append(v.path)
    return bad


class DivergenceStop(keras.callbacks.Callback):
    """Raises `Diverged` on the first batch whose loss is NaN or Inf (cf. TerminateOnNaN), and
    at a logging period's end (a Keras epoch's) whose mean cross-entropy (DATA_LOSS) exceeds
    CHANCE_FACTOR times chance's (`num_classes` given; else MAX_LOSS), whose loss exceeds
    MAX_LOSS where a model does not log the cross-entropy, or whose weights, BatchNorm
    statistics or optimizer slots are not all finite.

    The period-end check sees the last batch's update, which lands after its loss is logged.
    Put it before the callbacks that record or back up a period (history, best model,
    Checkpointer): raising skips them, so the last checkpoint on disk stays the last finite
    state.
    """

    def __init__(self, steps_per_epoch: int, num_classes: int | None = None,
                 last_iteration: int | None = None):
        super().__init__()
        self.steps_per_epoch = steps_per_epoch
        self.last_iteration = last_iteration  # where training stops: the last period may be short
        # The bound on a period's cross-entropy: CHANCE_FACTOR times chance's where the classes
        # are known (the same on every backend), never above MAX_LOSS.
        self.max_cross_entropy = (min(MAX_LOSS, CHANCE_FACTOR * math.log(num_classes))
                                  if num_classes and num_classes > 1 else MAX_LOSS)
        self.epoch = self._epoch_start = 0
        self._started = False

    def on_train_begin(self, logs=None):
        self._started = False

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self._epoch_start = epoch * self.steps_per_epoch
        if not self._started:
            # The first period of a fit may be the rest of one (resume.fit): its batches count
            # from the restored iteration.
            self._started = True
            optimizer = getattr(self.model, "optimizer", None)
            if optimizer is not None:
                self._epoch_start = int(keras.ops.convert_to_numpy(optimizer.iterations))

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise Diverged(self._epoch_start + batch + 1, self.epoch)

    def on_epoch_end(self, epoch, logs=None):
        step = (epoch + 1) * self.steps_per_epoch
        if self.last_iteration is not None:
            step = min(step, self.last_iteration)
        logs = logs or {}
        name = DATA_LOSS if DATA_LOSS in logs else "loss"  # a model compiled elsewhere: "loss"
        loss = logs.get(name)
        bound = self.max_cross_entropy if name == DATA_LOSS else MAX_LOSS
        if loss is not None and not float(loss) <= bound:  # NaN compares False
            what = "cross-entropy" if name == DATA_LOSS else "loss"
            why = (f" ({CHANCE_FACTOR} times chance's {bound / CHANCE_FACTOR:.3g})"
                   if bound < MAX_LOSS else "")
            raise Diverged(step, epoch, f"the period's {what} {float(loss):.3g} is above "
                                        f"{bound:.3g}{why}" if why else
                           f"the period's {what} {float(loss):.3g} is above {bound:g}")
        bad = non_finite_variables(self.model)
        if bad:
            raise Diverged(step, epoch, f"{len(bad)} variable(s) hold NaN or Inf ({bad[0]}"
                                        + (", ..." if len(bad) > 1 else "") + ")")
