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
Rerunning the same command on the same directory resumes from the last finished epoch, and
returns at once when the run is complete. The data is part of a run by content, not by path: the
same CIFAR-10 read from another place resumes, other data is refused (dataid.py).
"""

from __future__ import annotations

import math
import pathlib
import sys
import time

import keras

from cifar_resnet.data import dataid, datasets, device_input
from cifar_resnet.run import build, cpu, distribute, files, reliability, rundir, schedules
from cifar_resnet.run import config as config_lib
from cifar_resnet.run import metrics as metrics_lib
from cifar_resnet.run.callbacks import EpochRecorder, HistoryWriter, lr_callbacks

class TrainingError(RuntimeError):
    """Training diverged or otherwise failed; metrics.json records why."""


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
            or metrics.json of a finished run is unreadable.
        rundir.HistoryError: a history.csv row is damaged. Nothing is changed.
        files.WriteError: another file of the run could not be written; one line naming it.
        reliability.ResumeError: the resume state cannot be read; the message says how to
            restart. Nothing is changed.
        RunLocked: another process is training in `workdir`.
        Interrupted: SIGINT or SIGTERM; the run resumes from its last finished epoch.
    """
    workdir = pathlib.Path(workdir)
    config.validate()
    # Resolved before config.json is written or compared, so that it states the policy used.
    config = config_lib.for_workdir(build.resolve_precision(config), workdir,
                                    gpu=distribute.gpu_count() > 0)
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
                            "left (it finished); its history.csv and final.keras are intact; "
                            f"delete {e.path.name} to train this run again from zero") from None


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
    splits = datasets.load_splits(config)
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
    first = min(epochs_done, epochs - 1) * steps_per_epoch
    if input_path == "tfdata":
        if config.drop_remainder or config.eval_batch_size:
            raise config_lib.ConfigError("drop_remainder and eval_batch_size apply to "
                                         "input_pipeline 'device' only")
        train_ds, val_ds, test_ds = _tfdata_inputs(config, splits, first,
                                                   epochs * steps_per_epoch)
        model = build.build_model(config)
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
        model = build.device_trainer(build.build_model(config), splits, config)
    lr_fn = schedules.learning_rate(config, planned)
    model.optimizer.learning_rate = lr_fn(0)
    checkpointer.restore(model)  # weights, optimizer slots and iteration of epochs_done

    done = rundir.trim_history(rundir.RunDir(workdir).history, epochs_done)
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

    print(f"{workdir}: {model.name}, {metrics_lib.count_params(model):,} params, {epochs} epochs of "
          f"{steps_per_epoch} iterations" + (f", resuming after epoch {epochs_done}"
                                             if epochs_done else ""), file=sys.stderr)
    try:
        with stop:
            model.fit(train_ds, epochs=epochs, initial_epoch=epochs_done,
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

    history = rundir.read_history(rundir.RunDir(workdir).history)
    metrics = metrics_lib.run_metrics(history, metrics_lib.count_params(model), config.batch_size * steps_per_epoch,
                          config.iterations_per_pass(len(splits.train[0])),
                          recorder.train_times, recorder.train_steals)
    metrics.update(precision=config.precision, cpu=cpu.describe(),
                   setup_time=recorder.setup_time,
                   input_pipeline=input_path, code=metrics_lib.code_version())
    files.write_json(metrics_path, metrics)
    checkpointer.remove()  # only now: a kill before this resumes from the last epoch's state
    return metrics
