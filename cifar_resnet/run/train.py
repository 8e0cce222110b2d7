"""The experiment runner: `run_experiment(config, workdir)` trains one net into one run directory.

The recipe is He et al. 2015, section 4.2 (SGD, momentum 0.9, weight decay 1e-4, batch 128, lr 0.1
divided by 10 at 32k and 48k iterations, 64k iterations, pad-4 crop and flip, all 50k training
images; the 45k/5k train/val split with `val_fraction=0.1`); `config.py` holds it and the
keras-example preset.

The run directory is the unit of work. It holds:
    config.json     the resolved config, written before the first step
    history.csv     one row per epoch (or log_every iterations): lr, train/val/test loss and
                    error, wall time
    best.keras      the model with the best validation accuracy so far (only with a
                    validation split, val_fraction > 0)
    final.keras     the model at the end of training
    metrics.json    written at the end: final test error (and, with a validation split, the
                    best-by-validation epoch and errors), params, images/s of the training
                    batches, start-up cost, precision, CPU, ...
    data.json       the identity of the data (SHA-256 of its content; dataid.py) and its path
    backup/         resume state (reliability.Checkpointer); removed at the end
    tensorboard/    TensorBoard logs
Rerunning the same command on the same directory resumes from the last finished epoch (or, after
SIGINT/SIGTERM, from the iteration it stopped at: resume.py), and returns at once when the run is
complete. The data is part of a run by content, not by path: the
same CIFAR-10 read from another place resumes, other data is refused (dataid.py).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import pathlib
import platform
import subprocess
import sys
import time

import keras
import numpy as np

from cifar_resnet.run import config as config_lib
from cifar_resnet.run import cpu, distribute, files, losses, rundir
from cifar_resnet.data import dataid, datasets, device_input
from cifar_resnet.nets import models
from cifar_resnet.run import reliability, resume, schedules
from cifar_resnet.run.callbacks import lr_callbacks

HISTORY_FIELDS = ("epoch", "iterations", "lr", "loss", "error", "val_loss", "val_error",
                  "test_loss", "test_error", "epoch_time", "wall_time")


class TrainingError(RuntimeError):
    """Training diverged or otherwise failed; metrics.json records why."""


def default_workdir(config: config_lib.Config, root="runs") -> pathlib.Path:
    """`runs/<net>[-shortcut][-preset][-dataset]/seed<k>` (config.default_workdir)."""
    return config_lib.default_workdir(config, root)


def resolve_precision(config: config_lib.Config) -> config_lib.Config:
    """`config` with `precision` set to the dtype policy this machine uses for it.

    None/"auto" becomes float32, mixed_float16 (GPU) or mixed_bfloat16 (CPU with native bf16),
    following `mixed_precision` (cpu.resolve_precision); a CPU without native bf16 gets float32
    and one line on stderr saying why.
    """
    precision, note = cpu.resolve_precision(config.precision, config.mixed_precision,
                                            gpu=distribute.gpu_count() > 0)
    if note:
        print(note, file=sys.stderr)
    return dataclasses.replace(config, precision=precision)


def build_model(config: config_lib.Config) -> keras.Model:
    """The net of `config` under its precision policy, compiled with its optimizer, loss and
    accuracy metric."""
    policy = keras.mixed_precision.dtype_policy()
    if config.precision in (None, "auto"):
        config = resolve_precision(config)
    try:
        keras.mixed_precision.set_dtype_policy(config.precision)
        model = models.build_model(
            config.version, config.depth, num_classes=config.num_classes, plain=config.plain,
            block=config.resolved_block, preset=config.preset, **({"shortcut": config.shortcut} if config.shortcut else {}),
            **config.variant_kwargs(),  # He 2016 ablations (variants.py); {} by default
            **({} if config.weight_decay_on is None else
               {"regularize_all": config_lib.WEIGHT_DECAY_ON[config.weight_decay_on]}),
            l2=config.weight_decay / 2)  # L2(l2) has gradient 2*l2*w = wd*w (paper semantics)
    finally:
        keras.mixed_precision.set_dtype_policy(policy)
    if config.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(config.lr, momentum=config.momentum,
                                         nesterov=config.nesterov)
    else:
        optimizer = keras.optimizers.Adam(config.lr)
    loss = (losses.SmoothedSparseCrossentropy(config.label_smoothing, config.num_classes)
            if config.label_smoothing else "sparse_categorical_crossentropy")
    return _compiled(model, config, optimizer, loss)


def _compiled(model: keras.Model, config: config_lib.Config, optimizer, loss) -> keras.Model:
    """`model` compiled for training under `config` (accuracy, XLA, steps per execution)."""
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"],
                  jit_compile=distribute.jit_compile(config.jit_compile),
                  steps_per_execution=config.steps_per_execution)
    return distribute.adapt(model)


class EpochRecorder(keras.callbacks.Callback):
    """Adds test loss/error, errors, iterations and times to each epoch's logs.

    The paper's figures plot training and test error against iterations; Keras reports accuracy,
    so errors (1 - accuracy) are derived here, before HistoryWriter and the checkpoints see them.

    It also times the training batches of each epoch alone (`train_times`: from the start of its
    first batch to the end of its last, so without the validation and test passes), and the
    set-up before the first batch (`setup_time`, from `started`, a `time.perf_counter()` value).
    """

    def __init__(self, test_ds, steps_per_epoch, elapsed=0.0, started=None):
        super().__init__()
        self.test_ds = test_ds
        self.steps_per_epoch = steps_per_epoch
        self.elapsed = elapsed  # wall time of earlier sessions of this run
        self.started = started
        self.train_times = []
        self.train_steals = []  # share of CPU time the hypervisor took during them
        self.setup_time = None

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def interrupt_state(self) -> dict:  # kept in a mid-period state (resume.py)
        return {"wall_time": self.elapsed + time.perf_counter() - self.start}

    def resume_from(self, state: dict) -> None:
        self.elapsed = state["wall_time"]

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = time.perf_counter()
        self.batches_start = None

    def on_train_batch_begin(self, batch, logs=None):
        if self.batches_start is None:
            self.steal_start = cpu.steal_clock()
            self.batches_start = time.perf_counter()
            if self.setup_time is None and self.started is not None:
                self.setup_time = self.batches_start - self.started

    def on_train_batch_end(self, batch, logs=None):
        # The logs reach callbacks as Python numbers, so the step has finished by now.
        self.batches_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        epoch_time = time.perf_counter() - self.epoch_start
        self.train_times.append(self.batches_end - self.batches_start)
        self.train_steals.append(cpu.steal_fraction(self.steal_start, cpu.steal_clock()))
        test_loss, test_acc = self.model.evaluate(self.test_ds, verbose=0)
        logs.update(test_loss=test_loss, test_accuracy=test_acc,
                    iterations=(epoch + 1) * self.steps_per_epoch, epoch_time=epoch_time,
                    wall_time=self.elapsed + time.perf_counter() - self.start)
        for prefix in ("", "val_", "test_"):
            if prefix + "accuracy" in logs:
                logs[prefix + "error"] = 1.0 - float(logs[prefix + "accuracy"])


class HistoryWriter(keras.callbacks.Callback):
    """Appends a row of HISTORY_FIELDS per epoch to a CSV file, so runs with and without
    validation read alike. The file is replaced atomically (it is small), so a crash leaves the
    old or the new file, never a torn row."""

    def __init__(self, path):
        super().__init__()
        self.path = pathlib.Path(path)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        old = self.path.read_text() if self.path.exists() else ",".join(HISTORY_FIELDS) + "\n"
        row = [epoch] + [logs.get(k, "") for k in HISTORY_FIELDS[1:]]
        files.atomic_write_text(self.path, old + ",".join(map(str, row)) + "\n")


class HistoryError(TrainingError):
    """A history.csv row cannot be read; the message (one line) names the file, the line and
    what to do. Nothing was changed."""


def read_history(path) -> list[dict]:
    """Rows of a history.csv as dicts of floats (empty cells become NaN).

    Raises:
        HistoryError: a row is not numbers with a whole epoch number (a damaged file).
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
                parsed = {k: float(v) if v not in ("", None) else math.nan
                          for k, v in row.items()}
                if not float(parsed.get("epoch", math.nan)).is_integer():
                    raise ValueError("no whole epoch number")
                rows.append(parsed)
    except (ValueError, TypeError, csv.Error) as e:  # UnicodeDecodeError is a ValueError
        reason = " ".join(str(e).split())[:120]
        raise HistoryError(f"{path}: line {line} is not a history row ({reason}); fix or delete "
                           "that line and rerun the same command: training resumes from its "
                           "last checkpoint (the curves then miss that row)") from None
    return rows


def _trim_history(path: pathlib.Path, epochs_done: int) -> list[dict]:
    """Drops rows of epochs the backup does not hold (written after the last backup)."""
    if not path.exists():
        return []
    read_history(path)  # refuses a damaged row (HistoryError) before anything is rewritten
    header, *rows = path.read_text().splitlines(keepends=True)
    keep = [line for line in rows if line.strip() and int(line.split(",", 1)[0]) < epochs_done]
    if len(keep) != len(rows):
        files.atomic_write_text(path, header + "".join(keep))
    return read_history(path)


def _check_resumable(config: config_lib.Config, workdir: pathlib.Path) -> config_lib.Config:
    """`config` as this run directory's run; refuses a `workdir` that holds a run of another
    config, or of another precision.

    `config.precision` is resolved. A config.json from before the `precision` field gets the
    policy the code of that time used (cpu.legacy_precision), so that an old run resumes here
    only in the precision it started in. Fields left None (config.RUN_DIR_DEFAULTS) take the
    saved values, so the command that made a run before a default changed still resumes it.
    """
    saved_path = rundir.RunDir(workdir).config
    if not saved_path.exists():
        rundir.refuse_foreign_dir(workdir, config_lib.ConfigError)
        return config_lib.for_run_dir(config)[0]
    saved = config_lib.load(saved_path).to_dict()
    if saved["precision"] in (None, "auto"):
        saved["precision"] = cpu.legacy_precision(saved["mixed_precision"],
                                                  gpu=distribute.gpu_count() > 0)
    if saved["precision"] != config.precision:
        raise config_lib.ConfigError(
            f"{workdir} holds a run trained in {saved['precision']}, but this run would train in "
            f"{config.precision}; pass --precision {saved['precision']} to resume it, or use "
            "another --workdir")
    config, kept = config_lib.for_run_dir(config, saved)
    # Where the data was read from is not the run's identity; its content is (dataid.check).
    diff = [k for k, v in config.to_dict().items() if saved.get(k) != v
            and k not in config_lib.NOT_IDENTITY]
    if diff:
        changes = ", ".join(f"{k}: {saved.get(k)!r} -> {getattr(config, k)!r}" for k in diff)
        raise config_lib.ConfigError(f"{workdir} holds a run with another config ({changes}); "
                                     + rundir.another_config_hint(workdir, config, diff))
    if kept:
        print(config_lib.kept_note(workdir, kept), file=sys.stderr)
    return config


def load_splits(config: config_lib.Config, data_dir=None) -> datasets.Splits:
    """The data of `config`'s run: its splits and training-set statistics, the same every time.

    Training, `evaluate` and `analysis` all rebuild a run's data through this one call.
    `data_dir` replaces `config.data_dir` (e.g. a path made relative to another folder).
    """
    return datasets.load_dataset(config.dataset, data_dir=data_dir or config.data_dir,
                                 val_fraction=config.resolved_val_fraction,
                                 normalization=config.normalization,
                                 synthetic_size=(config.synthetic_train, config.synthetic_test),
                                 seed=config.seed, label_mode=config.label_mode)


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


def run_experiment(config: config_lib.Config, workdir, *, callbacks=(), verbose=None) -> dict:
    """Trains `config`'s net into `workdir`, resuming whatever is there; returns metrics.json.

    Args:
        config: a validated Config. Under `config.strategy`, `batch_size` is the global batch
            (split over the replicas) and `lr` is used as given: scale it with the batch.
        workdir: the run directory (created if missing).
        callbacks: extra Keras callbacks (e.g. for notebooks or tests).
        verbose: Keras verbosity; default a progress bar on a terminal, else a line per epoch.

    Returns:
        The metrics dict, also written to `workdir/metrics.json`.

    Raises:
        ConfigError: invalid settings, or `workdir` holds a different run. Nothing is written.
        DataError: the dataset cannot be found or read. Nothing is written.
        TrainingError: training diverged (a NaN/Inf loss, an epoch's loss above
            reliability.MAX_LOSS, or non-finite weights at an epoch's end; metrics.json says
            so, with the step), a checkpoint could not be written (the previous one is intact),
            a history.csv row is damaged (HistoryError), or metrics.json of a finished run is.
        files.WriteError: another file of the run could not be written; one line naming it.
        reliability.ResumeError: the resume state cannot be read; the message says how to
            restart. Nothing is changed.
        RunLocked: another process is training in `workdir`.
        Interrupted: SIGINT or SIGTERM; the run resumes from the iteration it names.
    """
    workdir = pathlib.Path(workdir)
    config.validate()
    # Resolved before config.json is written or compared, so that it states the policy used.
    config = _check_resumable(resolve_precision(config), workdir)
    # Before any other TensorFlow op: MultiWorkerMirroredStrategy must be created first.
    placement = distribute.placement(config.strategy)
    if placement.num_replicas > 1:
        print(f"{workdir}: {placement.name} strategy, global batch {config.batch_size} over "
              f"{placement.num_replicas} replicas, lr {config.lr} (not rescaled)", file=sys.stderr)
    if not placement.is_chief:  # only the chief writes the run directory (distribute.py)
        with distribute.scratch_copy(workdir) as scratch:
            return _run(config, scratch, placement, callbacks, verbose)
    return _run(config, workdir, placement, callbacks, verbose)


def _finished_metrics(workdir: pathlib.Path) -> dict | None:
    """metrics.json of a finished run, or None for a run to train (none yet, or it failed).

    An unreadable metrics.json of a run that still has its backup is reported and ignored (the
    end of the run rewrites it); one of a finished run (backup removed) is refused, since
    training again would replace its final.keras.

    Raises:
        TrainingError: metrics.json is unreadable and the run has no backup to resume from.
    """
    path = rundir.RunDir(workdir).metrics
    if not path.exists():
        return None
    try:
        metrics = files.read_json(path)
        if not isinstance(metrics, dict):
            raise ValueError(f"a {type(metrics).__name__}, not a mapping")
    except (OSError, ValueError) as e:
        reason = " ".join(str(e).split())[:120]
        if (rundir.RunDir(workdir).backup / rundir.METADATA).exists():
            print(f"warning: {path} is unreadable ({reason}); the run has a backup, so it "
                  "resumes from its last checkpoint and rewrites the file at the end",
                  file=sys.stderr)
            return None
        raise TrainingError(f"{path} is unreadable ({reason}) and the run has no backup left "
                            "(it finished); its history.csv and final.keras are intact; "
                            f"delete {path.name} to train this run again from zero") from None
    return metrics if metrics.get("status") == "complete" else None


def _run(config, workdir, placement, callbacks, verbose) -> dict:
    """run_experiment in `workdir` (the run directory or a worker's scratch copy)."""
    started = time.perf_counter()  # setup_time: data loading and model building
    metrics_path = rundir.RunDir(workdir).metrics
    complete = _finished_metrics(workdir) is not None
    if complete and dataid.same_source(config, workdir):  # no need to read the data again
        print(f"{workdir}: already complete; nothing to do", file=sys.stderr)
        return files.read_json(metrics_path)

    try:
        input_path = device_input.resolve_pipeline(config.input_pipeline)
    except device_input.PipelineError as e:
        raise config_lib.ConfigError(str(e)) from None
    if input_path == "device" and config.augment and config.augmentation != "crop_flip":
        raise config_lib.ConfigError(
            f"augmentation {config.augmentation!r} runs on the tf.data input pipeline only; "
            "the device pipeline does 'crop_flip' (use input_pipeline 'tfdata')")
    keras.utils.set_random_seed(config.seed)
    if config.deterministic and keras.backend.backend() == "tensorflow":
        import tensorflow as tf
        tf.config.experimental.enable_op_determinism()  # process-wide; cannot be undone
    splits = load_splits(config)
    data_record = dataid.describe(config, splits, dataid.source_of(config))
    try:
        dataid.check(workdir, data_record)
    except dataid.DataMismatch as e:
        raise config_lib.ConfigError(str(e)) from None
    if complete:
        print(f"{workdir}: already complete (same data, {dataid.short(data_record['sha256'])}); "
              "nothing to do", file=sys.stderr)
        return files.read_json(metrics_path)
    num_train = len(splits.train[0])
    if config.batch_size > num_train:
        raise config_lib.ConfigError(f"batch_size {config.batch_size} is larger than the "
                                     f"{num_train} training images")
    try:  # a schedule that does not fit the planned iterations (linear warm-up too long)
        schedules.learning_rate(config, config.plan(num_train)[2])
    except ValueError as e:
        raise config_lib.ConfigError(str(e)) from None
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise files.write_error(workdir, e) from None
    with reliability.run_lock(workdir), placement.scope():
        return _train_locked(config, workdir, splits, data_record, input_path, callbacks,
                             verbose, started)


def _tfdata_inputs(config, splits, first, stop):
    """(train, val, test) tf.data datasets; train holds global batches first..stop-1."""
    from cifar_resnet.data import pipeline  # imports TensorFlow
    make = dict(batch_size=config.batch_size, mean=splits.mean, std=splits.std)
    per_pass = config.iterations_per_pass(len(splits.train[0]))
    train_ds = pipeline.make_dataset(*splits.train, training=True, augment=config.augment,
                                     augmentation=config.augmentation, seed=config.seed, **make,
                                     epochs=(first // per_pass, math.ceil(stop / per_pass)))
    train_ds = train_ds.skip(first % per_pass)
    val_ds = (pipeline.make_dataset(*splits.val, training=False, **make) if splits.val
              else None)
    return train_ds, val_ds, pipeline.make_dataset(*splits.test, training=False, **make)


def _device_trainer(net: keras.Model, splits, config) -> keras.Model:
    """`net` wrapped in device_input.AugmentedTrainer, compiled as build_model compiled it."""
    return _compiled(device_input.AugmentedTrainer(net, splits.mean, splits.std), config,
                     net.optimizer, net.loss)


def _train_locked(config, workdir, splits, data_record, input_path, callbacks, verbose,
                  started) -> dict:
    """The writing part of run_experiment, under the run-directory lock."""
    metrics_path = rundir.RunDir(workdir).metrics
    if (finished := _finished_metrics(workdir)) is not None:
        return finished  # finished by another process meanwhile
    steps_per_epoch, epochs, planned = config.plan(len(splits.train[0]))
    config_lib.save(config, rundir.RunDir(workdir).config)
    dataid.save(workdir, data_record)
    checkpointer = reliability.Checkpointer(rundir.RunDir(workdir).backup)
    epochs_done = checkpointer.resume_epoch()

    # Data passes (keyed by pass, so a resumed run sees the same batches) need not coincide
    # with logging periods (log_every): start inside the pass where the backup stopped.
    first = min(checkpointer.resume_iteration(steps_per_epoch), (epochs - 1) * steps_per_epoch)
    if input_path == "tfdata":
        if config.drop_remainder or config.eval_batch_size:
            raise config_lib.ConfigError("drop_remainder and eval_batch_size apply to "
                                         "input_pipeline 'device' only")
        train_ds, val_ds, test_ds = _tfdata_inputs(config, splits, first,
                                                   epochs * steps_per_epoch)
        model = build_model(config)
    else:  # device_input: uint8 batches, augmentation inside the compiled step
        train_ds = device_input.TrainBatches(*splits.train, batch_size=config.batch_size,
                                             seed=config.seed, start=first,
                                             stop=epochs * steps_per_epoch,
                                             augment=config.augment,
                                             drop_remainder=config.drop_remainder)
        eval_batch = config.eval_batch_size or config.batch_size
        val_ds = (device_input.EvalBatches(*splits.val, batch_size=eval_batch)
                  if splits.val else None)
        test_ds = device_input.EvalBatches(*splits.test, batch_size=eval_batch)
        model = _device_trainer(build_model(config), splits, config)
    lr_fn = schedules.learning_rate(config, planned)
    model.optimizer.learning_rate = lr_fn(0)
    checkpointer.restore(model)  # weights, optimizer slots and iteration of epochs_done

    done = _trim_history(rundir.RunDir(workdir).history, epochs_done)
    best_val = max((r["val_error"] for r in done if not math.isnan(r["val_error"])), default=None)
    recorder = EpochRecorder(test_ds, steps_per_epoch, elapsed=done[-1]["wall_time"] if done else 0,
                             started=started)

    stop = reliability.SignalStop()
    step, *plateau = lr_callbacks(config, lr_fn, "val_loss" if val_ds else "loss")
    cbs = [stop, step, recorder, reliability.DivergenceStop(steps_per_epoch), *plateau]
    if val_ds is not None:
        cbs.append(reliability.BestCheckpoint(
            rundir.RunDir(workdir).best, monitor="val_accuracy", mode="max",
            best=None if best_val is None else 1.0 - best_val))
    cbs.append(HistoryWriter(rundir.RunDir(workdir).history))
    if device_input.tensorflow_installed():  # Keras writes TensorBoard logs with tf.summary
        cbs.append(keras.callbacks.TensorBoard(str(rundir.RunDir(workdir).tensorboard), write_graph=False))
    cbs += [*callbacks,
            # Last, so an epoch is backed up only once everything above has recorded it.
            checkpointer]
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2

    print(f"{workdir}: {model.name}, {count_params(model):,} params, {epochs} epochs of "
          f"{steps_per_epoch} iterations" + (f", resuming after epoch {epochs_done}"
                                             if epochs_done else ""), file=sys.stderr)
    try:
        with stop:
            resume.fit(model, train_ds, epochs=epochs, initial_epoch=epochs_done,
                       steps_per_epoch=steps_per_epoch, validation_data=val_ds, callbacks=cbs,
                       verbose=verbose, shuffle=False)
        reliability.atomic_save(model, rundir.RunDir(workdir).final)
    except reliability.Diverged as e:
        files.write_json(metrics_path, {"status": "failed", "reason": str(e), "step": e.step,
                                        "epoch": e.epoch + 1, "finished_epochs": e.epoch})
        raise TrainingError(f"{workdir}: training diverged: {e}; the checkpoint of the last "
                            f"finished epoch is kept; see {metrics_path}") from None
    except reliability.CheckpointWriteError as e:
        raise TrainingError(str(e)) from e

    history = read_history(rundir.RunDir(workdir).history)
    metrics = run_metrics(history, count_params(model), config.batch_size * steps_per_epoch,
                          config.iterations_per_pass(len(splits.train[0])),
                          recorder.train_times, recorder.train_steals)
    metrics.update(precision=config.precision, cpu=cpu.describe(),
                   setup_time=recorder.setup_time,
                   input_pipeline=input_path, code=code_version())
    files.write_json(metrics_path, metrics)
    checkpointer.remove()  # only now: a kill before this resumes from the last epoch's state
    return metrics


def _passes(iterations: int, per_pass: int) -> float:
    """Passes over the data in `iterations`: whole as an int, else to two decimals."""
    return iterations // per_pass if iterations % per_pass == 0 else round(iterations / per_pass, 2)


def run_metrics(history, params, images_per_epoch, iterations_per_pass, train_times=(),
                train_steals=()) -> dict:
    """The metrics.json content from the history rows of a finished run.

    Args:
        history: the rows of history.csv.
        params: trainable parameters.
        images_per_epoch: images of one logging period (batch size x its iterations).
        iterations_per_pass: iterations of one pass over the training images.
        train_times: seconds of each period of this session spent in training batches alone.
        train_steals: the share of CPU time stolen by the hypervisor in each of those (None
            where unknown); a virtual machine's steal slows a rate without any fault of ours.
    """
    last = history[-1]
    has_val = any(not math.isnan(r["val_error"]) for r in history)
    # First epoch with the lowest validation error: the paper's model selection.
    best = min(history, key=lambda r: r["val_error"]) if has_val else None
    # The first period also traces the step, fills the input pipeline and creates oneDNN
    # primitives: its excess over the later periods is the start-up cost, kept out of the rate.
    steady = sorted(train_times[1:])
    median = steady[len(steady) // 2] if steady else None
    # Without a validation split there is no model selection: the best-by-validation fields
    # are left out rather than set to None, so no reader mistakes them for measured values.
    selected = {"best_val_epoch": int(best["epoch"]) + 1, "best_val_error": best["val_error"],
                "best_test_error": best["test_error"]} if best else {}
    return {
        "status": "complete",
        "final_test_error": last["test_error"],
        **selected,
        "final_train_error": last["error"],
        "params": int(params),
        # Passes over the training images, as a reader counts epochs; a logging period
        # (log_every) may be shorter or longer than one.
        "epochs": _passes(int(last["iterations"]), iterations_per_pass),
        "iterations": int(last["iterations"]),
        "wall_time": last["wall_time"],
        # Training batches only (no validation or test pass), median over periods after the first.
        "images_per_sec": images_per_epoch / median if median else None,
        # Against the fastest later period: a later one slowed by the machine (other jobs,
        # steal) would otherwise hide the start-up cost, even make it negative.
        "startup_time": train_times[0] - steady[0] if steady else None,
        # Largest over the periods the rate is the median of: above a few percent, the rate is
        # the machine's, not the code's.
        "cpu_steal": max((v for v in train_steals[1:] if v is not None), default=None),
        "versions": versions(),
    }
