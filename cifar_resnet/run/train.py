"""Training one net into one run directory: `train_and_evaluate(config, workdir)`.

The recipe is He et al. 2015, section 4.2 (SGD, momentum 0.9, weight decay 1e-4, batch 128, lr 0.1
divided by 10 at 32k and 48k iterations, 64k iterations, pad-4 crop and flip, all 50k training
images; the 45k/5k train/val split with `val_fraction=0.1`); `config.py` holds it.

A run goes in a straight line: `prepare` resolves everything once into a `Plan` (the config
validated, its precision resolved and reconciled with the run directory's config.json, the
placement, the input path, the data and its identity, the iteration plan and the schedule);
then lock -> build -> restore -> fit -> write metrics.json. The run directory's files are
rundir.py's. Rerunning the same command resumes from the last finished period (after SIGINT or
SIGTERM, from the iteration it stopped at: resume.py) and returns at once when the run is
complete; the data is part of a run by content, not by path (dataid.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import pathlib
import sys
import time
from typing import Any, Callable, Optional

import keras

from cifar_resnet import private_apis
from cifar_resnet.data import device_input
from cifar_resnet.spec import config as config_lib, cpu, dataid, datasets, files, rundir, schedules
from cifar_resnet.spec import preflight as preflight_lib
from cifar_resnet.run import build, distribute, reliability, resume
from cifar_resnet.run import metrics as metrics_lib
from cifar_resnet.run.callbacks import EpochRecorder, HistoryWriter, PeriodProgress, lr_callbacks


class TrainingError(RuntimeError):
    """Training diverged or otherwise failed; metrics.json records why."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """A run resolved once (`prepare`). With `finished` set the run is complete, and only
    `config`, `workdir` and `placement` are."""

    config: config_lib.Config  # validated, precision resolved, reconciled with config.json
    workdir: pathlib.Path
    placement: Any  # distribute.Placement
    started: float  # time.perf_counter() at the start: setup_time counts from it
    finished: Optional[dict] = None  # metrics.json of the complete run: nothing to do
    input_path: str = ""  # "tfdata" or "device" (build.input_path)
    splits: Optional[datasets.Splits] = None
    data_record: Optional[dict] = None  # data.json (dataid.describe)
    steps_per_period: int = 0  # iterations of one logging period (a row of history.csv)
    periods: int = 0
    iterations: int = 0  # planned, for the schedule
    train_iterations: int = 0  # where training stops (Config.train_iterations)
    lr_fn: Optional[Callable[[int], float]] = None  # 0-based iteration -> learning rate


def prepare(config: config_lib.Config, workdir, splits=None, preflight=None) -> Plan:
    """`config`'s run in `workdir`, resolved once; refuses what cannot run (ConfigError,
    DataError). `splits` (from datasets.load_splits for this config) saves reading the data;
    `preflight` (the command line's spec/preflight.check of this config and folder) saves
    reading the folder, where it resolved the precision this machine trains in."""
    started = time.perf_counter()
    workdir = pathlib.Path(workdir)
    config.validate()  # once: a config resolve() returned is not checked again
    # Resolved before config.json is written or compared, so that it states the policy used.
    precision = build.resolve_precision(config).precision
    if (preflight is None or not preflight.precision_known or preflight.workdir != workdir
            or preflight.config.precision != precision):
        preflight = preflight_lib.check(config, workdir, precision=precision,
                                        asked=config.precision)
    config = preflight.config
    # Before any other TensorFlow op: MultiWorkerMirroredStrategy must be created first.
    placement = distribute.placement(config.strategy)
    if placement.num_replicas > 1:
        print(f"{workdir}: {placement.name} strategy, global batch {config.batch_size} over "
              f"{placement.num_replicas} replicas, lr {config.lr} (not rescaled)", file=sys.stderr)
    plan = Plan(config, workdir, placement, started)
    finished = _finished_metrics(workdir)
    if finished is not None and dataid.same_source(config, workdir):  # no need to read the data
        print(f"{workdir}: already complete; nothing to do", file=sys.stderr)
        return dataclasses.replace(plan, finished=finished)
    input_path = build.input_path(config)
    if splits is None:
        splits = datasets.load_splits(config)
    elif splits.key != datasets.splits_key(config):
        raise ValueError(f"splits loaded for {splits.key}, not for this run's "
                         f"{datasets.splits_key(config)} (datasets.load_splits(config))")
    data_record = dataid.describe(config, splits, dataid.source_of(config))
    try:
        dataid.check(workdir, data_record)
    except dataid.DataMismatch as e:
        raise config_lib.ConfigError(str(e)) from None
    if finished is not None:
        print(f"{workdir}: already complete (same data, {dataid.short(data_record['sha256'])}); "
              "nothing to do", file=sys.stderr)
        return dataclasses.replace(plan, finished=finished)
    num_train = len(splits.train[0])
    if config.batch_size > num_train:
        raise config_lib.ConfigError(f"batch_size {config.batch_size} is larger than the "
                                     f"{num_train} training images")
    steps_per_period, periods, iterations = config.plan(num_train)
    train_iterations = config.train_iterations(num_train)
    last = train_iterations - (periods - 1) * steps_per_period  # the last period's iterations
    if last % config.steps_per_execution:  # Keras ends a period between executions only
        raise config_lib.ConfigError(
            f"the last logging period would be {last} iterations ({train_iterations:,} in all), "
            f"not a multiple of steps_per_execution {config.steps_per_execution}; choose "
            "iterations or log_every to fit it, or --set whole_passes=true")
    try:  # a schedule that does not fit the planned iterations (linear warm-up too long)
        lr_fn = schedules.learning_rate(config, iterations)
    except ValueError as e:
        raise config_lib.ConfigError(str(e)) from None
    return dataclasses.replace(plan, input_path=input_path, splits=splits,
                               data_record=data_record, steps_per_period=steps_per_period,
                               periods=periods, iterations=iterations,
                               train_iterations=train_iterations, lr_fn=lr_fn)


def _finished_metrics(workdir: pathlib.Path) -> dict | None:
    """rundir.finished_metrics, with training's answer to an unreadable metrics.json: with the
    run's backup there, said and ignored (the end of the run rewrites it); without (the run
    finished), refused, since training again would replace its final.keras."""
    try:
        return rundir.finished_metrics(workdir)
    except rundir.MetricsUnreadable as e:
        if (rundir.RunDir(workdir).backup / rundir.METADATA).exists():
            print(f"warning: {e.path} is unreadable ({e.reason}); the run has a backup, so it "
                  "resumes from its last checkpoint and rewrites the file at the end",
                  file=sys.stderr)
            return None
        raise TrainingError(f"{e.path} is unreadable ({e.reason}) and the run has no backup "
                            f"left (it finished); its {rundir.HISTORY} and {rundir.FINAL} are intact; "
                            f"delete {e.path.name} to train this run again from zero") from None


def train_and_evaluate(config: config_lib.Config, workdir, *, splits=None, callbacks=(),
                       verbose=None, preflight=None) -> dict:
    """Trains `config`'s net into `workdir`, resuming whatever is there; returns metrics.json.

    Args:
        config: a validated Config. Under `config.strategy`, `batch_size` is the global batch
            (split over the replicas) and `lr` is used as given: scale it with the batch.
        workdir: the run directory (created if missing).
        splits: the data, from datasets.load_splits(config) (the command line reads it before
            TensorFlow); default: read here, unless the run is complete.
        callbacks: extra Keras callbacks (e.g. for notebooks or tests).
        verbose: Keras verbosity; default a progress bar on a terminal, else a line per
            logging period (Keras says "Epoch k/N" for period k).
        preflight: the command line's spec/preflight.check of `config` and `workdir`, so the
            folder is not read again.

    Returns:
        The metrics dict, also written to `workdir/metrics.json`.

    Raises:
        ConfigError: invalid settings, or `workdir` holds a different run. Nothing is written.
        DataError: the dataset cannot be found or read. Nothing is written.
        ValueError: `splits` were loaded for other settings than this run's.
        TrainingError: training diverged (a NaN/Inf loss, a logging period's cross-entropy
            above three times chance's (reliability.CHANCE_FACTOR), or non-finite weights at a
            period's end; metrics.json says so, with the step and the period), a checkpoint
            could not be written (the previous one is intact), or metrics.json of a finished
            run is unreadable.
        rundir.HistoryError: a history.csv row is damaged, or the rows of periods the
            checkpoint has done are missing. Nothing is changed.
        files.WriteError: another file of the run could not be written; one line naming it.
        reliability.ResumeError: the resume state cannot be read; the message says how to
            restart. Nothing is changed.
        RunLocked: another process is training in `workdir`.
        Interrupted: SIGINT or SIGTERM; the run resumes from the iteration it names.
    """
    plan = prepare(config, workdir, splits, preflight)
    if plan.finished is not None:
        return plan.finished
    if not plan.placement.is_chief:  # only the chief writes the run directory (distribute.py)
        with distribute.scratch_copy(plan.workdir) as scratch:
            return _train(dataclasses.replace(plan, workdir=scratch), callbacks, verbose)
    return _train(plan, callbacks, verbose)


run_experiment = train_and_evaluate  # the public name (cifar_resnet.run_experiment)


def _train(plan: Plan, callbacks, verbose) -> dict:
    """Lock -> build -> restore -> fit -> write, in `plan.workdir` (the run directory, or a
    non-chief worker's scratch copy)."""
    config, workdir, run = plan.config, plan.workdir, rundir.RunDir(plan.workdir)
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise files.write_error(workdir, e) from None
    with reliability.run_lock(workdir), plan.placement.scope():
        if (finished := _finished_metrics(workdir)) is not None:
            return finished  # finished by another process meanwhile
        config_lib.save(config, run.config)
        dataid.save(workdir, plan.data_record)
        checkpointer = reliability.Checkpointer(run.backup)
        periods_done = checkpointer.resume_epoch()  # Keras' initial_epoch
        # Before the net is built: a history cut short is refused (one line), not finished with
        # fewer rows.
        rundir.check_history(run.history, periods_done, run.backup)
        first = checkpointer.resume_iteration(plan.steps_per_period)
        model, train_ds, val_ds, test_ds = _build(plan, first)
        checkpointer.restore(model)  # weights, optimizer slots and iteration of periods_done
        done = rundir.trim_history(run.history, periods_done)
        recorder = EpochRecorder(test_ds, plan.steps_per_period, started=plan.started,
                                 elapsed=done[-1]["wall_time"] if done else 0,
                                 last_iteration=plan.train_iterations)
        params = metrics_lib.count_params(model)
        print(f"{workdir}: {model.name}, {params:,} params, "
              f"{plan.train_iterations:,} iterations, a history row every "
              f"{plan.steps_per_period}"
              + (f", resuming at iteration {first}" if first else ""), file=sys.stderr)
        best_val = max((r["val_error"] for r in done if not math.isnan(r["val_error"])),
                       default=None)
        try:
            _fit(plan, model, train_ds, val_ds, periods_done, best_val, recorder, checkpointer,
                 callbacks, verbose)
            reliability.atomic_save(model, run.final)
        except reliability.Diverged as e:
            # `period`: the logging period it diverged in, from 1; `finished_periods`: those
            # before it, whose checkpoint is kept (`epoch`, `finished_epochs` before issue #39:
            # rundir.METRICS_RENAMED).
            files.write_json(run.metrics, {"status": "failed", "reason": str(e), "step": e.step,
                                           "period": e.period + 1, "finished_periods": e.period})
            raise TrainingError(f"{workdir}: training diverged: {e}; the checkpoint of the last "
                                f"finished period is kept; see {run.metrics}") from None
        except reliability.CheckpointWriteError as e:
            raise TrainingError(str(e)) from e
        metrics = metrics_lib.run_metrics(
            rundir.read_history(run.history), params,
            config.batch_size * plan.steps_per_period,
            config.iterations_per_pass(len(plan.splits.train[0])), recorder.train_times,
            recorder.train_steals, first_partial=recorder.resumed_mid_period)
        metrics.update(precision=config.precision, cpu=cpu.describe(private_apis.onednn_enabled()),
                       setup_time=recorder.setup_time, input_pipeline=plan.input_path,
                       code=metrics_lib.code_version())
        files.write_json(run.metrics, metrics)
        checkpointer.remove()  # only now: a kill before this resumes from the last period's state
        return metrics


def _build(plan: Plan, first: int) -> tuple:
    """(model, train, val, test): the compiled net, and the inputs from iteration `first`, where
    the backup stopped."""
    config, splits = plan.config, plan.splits
    keras.utils.set_random_seed(config.seed)
    if config.deterministic and keras.backend.backend() == "tensorflow":
        import tensorflow as tf
        tf.config.experimental.enable_op_determinism()  # process-wide; cannot be undone
    if first >= plan.train_iterations:
        # Every period done (the run not yet written): nothing trains, but the input must still
        # be one. A state inside the last period resumes there, as in any other (capping it at
        # the last period's start fed that period's first batches again).
        first = (plan.periods - 1) * plan.steps_per_period
    data = build.inputs(config, splits, plan.input_path, first,
                        plan.periods * plan.steps_per_period)
    model = build.build_model(config)
    if plan.input_path == "device":  # augmentation inside the compiled step
        model = build.device_trainer(model, splits, config)
    model.optimizer.learning_rate = plan.lr_fn(0)
    return (model, *data)


@contextlib.contextmanager
def _close_on_interrupt(callbacks):
    """On an interrupt, closes the TensorBoard callbacks' event files (as `on_train_end` does),
    so that the periods logged so far are on disk even where the command line then exits at
    once, without the interpreter's teardown (__main__._exit_now)."""
    try:
        yield
    except KeyboardInterrupt:
        for callback in callbacks:
            if isinstance(callback, keras.callbacks.TensorBoard):
                with contextlib.suppress(Exception):  # the interrupt is what matters here
                    callback.on_train_end()
        raise


def _fit(plan: Plan, model, train_ds, val_ds, periods_done, best_val, recorder, checkpointer,
         callbacks, verbose) -> None:
    """The callbacks in their order, and `model.fit` from `periods_done` to the plan's end (a
    logging period is a Keras epoch)."""
    run = rundir.RunDir(plan.workdir)
    stop = reliability.SignalStop()
    step, *plateau = lr_callbacks(plan.config, plan.lr_fn, "val_loss" if val_ds else "loss")
    cbs = [stop, step, recorder,
           reliability.DivergenceStop(plan.steps_per_period, plan.config.num_classes,
                                      last_iteration=plan.train_iterations),
           *plateau]
    if val_ds is not None:
        cbs.append(reliability.BestCheckpoint(
            run.best, monitor="val_accuracy", mode="max",
            best=None if best_val is None else 1.0 - best_val))
    cbs.append(HistoryWriter(run.history))
    if device_input.tensorflow_installed():  # Keras writes TensorBoard logs with tf.summary
        cbs.append(keras.callbacks.TensorBoard(str(run.tensorboard), write_graph=False))
    # The Checkpointer last, so a period is backed up only once everything above recorded it.
    cbs += [*callbacks, checkpointer]
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    if verbose:  # Keras' bar, headed by what a period is here, not "Epoch k/N"
        cbs.append(PeriodProgress(plan.config.period_name(len(plan.splits.train[0]))))
    with stop, _close_on_interrupt(cbs):
        resume.fit(model, train_ds, epochs=plan.periods, initial_epoch=periods_done,
                   steps_per_epoch=plan.steps_per_period, validation_data=val_ds, callbacks=cbs,
                   verbose=verbose, shuffle=False, last_iteration=plan.train_iterations)
