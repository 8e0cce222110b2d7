"""The training loop's own callbacks: the per-batch learning rate, and the record of each period.

`EpochRecorder` adds what He et al. 2015 plot (Figures 1 and 6: training and test error against
iterations) to each logging period's logs, with the times of its training batches;
`HistoryWriter` appends those logs to history.csv (rundir.HISTORY_FIELDS). The crash-safety
callbacks (signals, divergence, checkpoints) are reliability.py's.

`StepSchedule` applies a `schedules` function before every batch. It is a callback rather than
a `keras.optimizers.schedules.LearningRateSchedule` because `ReduceLROnPlateau` can only lower a
plain variable learning rate; and unlike
`keras.callbacks.LearningRateScheduler`, which overwrites the rate every epoch and so silently
undoes every plateau reduction, it keeps those reductions as a multiplier on the schedule. The
Keras example itself used `LearningRateScheduler` after
`ReduceLROnPlateau` (`callbacks=[checkpoint, lr_reducer, lr_scheduler]`): the reducer cuts the
rate at an epoch's end, the scheduler sets `lr_schedule(epoch)` at the next epoch's start, so no
cut ever reaches a batch. `plateau_survives_schedule=False` (the keras-example preset) reproduces
that; `lr_callbacks` builds the pair from a config.
"""

from __future__ import annotations

import math
import pathlib
import time

import keras

from cifar_resnet.spec import cpu, rundir


class StepSchedule(keras.callbacks.Callback):
    """Sets `optimizer.learning_rate = schedule(iteration) * scale` before every batch.

    `scale` starts at 1 and absorbs any reduction made by another callback (ReduceLROnPlateau):
    when the rate found on the optimizer is lower than the one last set, the ratio is kept. On
    resume, the restored optimizer's rate and iteration give the scale back, so no state of its
    own needs saving.

    Args:
        schedule: function from the 0-based iteration to the learning rate.
        keep_reductions: True: keep another callback's reductions as above. False: every
            logging period (a Keras epoch) starts from `schedule` again, so a reduction made at
            a period's end reaches no batch, as with `keras.callbacks.LearningRateScheduler` in
            the Keras example (whose periods were passes).
    """

    def __init__(self, schedule, keep_reductions=True):
        super().__init__()
        self.schedule = schedule
        self.keep_reductions = keep_reductions
        self.scale = 1.0
        self._last = None
        self._started = False
        self._step = self._epoch_start = 0

    def _current(self):
        return float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_train_begin(self, logs=None):
        # Read the state at the first period, after the Checkpointer (reliability.py) restored it.
        self._last, self._started = None, False

    def on_epoch_begin(self, epoch, logs=None):
        if not self._started:
            self._started = True
            self._step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
            if self._step > 0 and self.keep_reductions:
                # Resumed: the restored rate carries any plateau reductions.
                ratio = self._current() / self.schedule(self._step - 1)
                # The restored rate is float32: a ratio within its rounding of 1 is no reduction,
                # and keeping it would make a resumed run's rates differ from an unbroken run's.
                self.scale = 1.0 if math.isclose(ratio, 1.0, rel_tol=1e-6) else ratio
        elif not self.keep_reductions:
            self._last = None  # set the schedule's rate afresh, over any cut made meanwhile
        elif not math.isclose(self._current(), self._last, rel_tol=1e-6):
            self.scale *= self._current() / self._last
        self._epoch_start = self._step

    def on_train_batch_begin(self, batch, logs=None):
        self._set(self.schedule(self._step) * self.scale)

    def on_train_batch_end(self, batch, logs=None):
        # With steps_per_execution = k, Keras reports every k-th batch; `batch` is the last one.
        self._step = self._epoch_start + batch + 1

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["lr"] = self._current()

    def _set(self, value):
        if value != self._last:
            self.model.optimizer.learning_rate = value
            self._last = value


def lr_callbacks(config, schedule, monitor):
    """The learning-rate callbacks of a `config.Config`, in the order they must run.

    `StepSchedule(schedule)` first, then, when `config.plateau_patience` is set,
    `ReduceLROnPlateau` on `monitor`; `config.plateau_survives_schedule` says whether the
    schedule keeps the plateau's cuts (True) or sets its own rate again at every period's
    start, as the Keras example's `LearningRateScheduler` did (False).

    Args:
        config: the run's Config.
        schedule: function from the 0-based iteration to the learning rate.
        monitor: the logged value ReduceLROnPlateau watches, e.g. "val_loss".

    Returns:
        A list of Keras callbacks.
    """
    callbacks = [StepSchedule(schedule, keep_reductions=config.plateau_survives_schedule)]
    if config.plateau_patience is not None:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor=monitor, factor=config.plateau_factor, patience=config.plateau_patience,
            min_lr=config.plateau_min_lr))
    return callbacks


class EpochRecorder(keras.callbacks.Callback):
    """Adds test loss/error, errors, iterations and times to each logging period's logs (a Keras
    epoch; the class keeps Keras' word: a mid-period backup names its state by it, resume.py).

    The paper's figures plot training and test error against iterations; Keras reports accuracy,
    so errors (1 - accuracy) are derived here, before HistoryWriter and the checkpoints see them.

    It also times the training batches of each period alone (`train_times`: from the start of its
    first batch to the end of its last, so without the validation and test passes), and the
    set-up before the first batch (`setup_time`, from `started`, a `time.perf_counter()` value).
    """

    def __init__(self, test_ds, steps_per_epoch, elapsed=0.0, started=None, last_iteration=None):
        super().__init__()
        self.test_ds = test_ds
        self.steps_per_epoch = steps_per_epoch
        self.last_iteration = last_iteration  # where training stops: the last period may be short
        self.elapsed = elapsed  # wall time of earlier sessions of this run
        self.started = started
        self.train_times = []
        self.train_steals = []  # share of CPU time the hypervisor took during them
        self.setup_time = None
        self.resumed_mid_period = False

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def interrupt_state(self) -> dict:  # kept in a mid-period state (resume.py)
        return {"wall_time": self.elapsed + time.perf_counter() - self.start}

    def resume_from(self, state: dict) -> None:
        self.elapsed = state["wall_time"]
        self.resumed_mid_period = True  # this session's first period is short

    def on_epoch_begin(self, epoch, logs=None):
        self.period_start = time.perf_counter()
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
        period_time = time.perf_counter() - self.period_start
        iterations = (epoch + 1) * self.steps_per_epoch
        if self.last_iteration is not None and iterations > self.last_iteration:
            # A short last period: its time as a whole period's, so that the median rate and
            # metrics.json's images/s stay per period of `steps_per_epoch` iterations.
            short = self.last_iteration - epoch * self.steps_per_epoch
            self.train_times.append((self.batches_end - self.batches_start)
                                    * self.steps_per_epoch / short)
            iterations = self.last_iteration
        else:
            self.train_times.append(self.batches_end - self.batches_start)
        self.train_steals.append(cpu.steal_fraction(self.steal_start, cpu.steal_clock()))
        test = self.model.evaluate(self.test_ds, verbose=0, return_dict=True)
        logs.update(test_loss=test["loss"], test_accuracy=test["accuracy"],
                    iterations=iterations, period_time=period_time,
                    wall_time=self.elapsed + time.perf_counter() - self.start)
        for prefix in ("", "val_", "test_"):
            if prefix + "accuracy" in logs:
                logs[prefix + "error"] = 1.0 - float(logs[prefix + "accuracy"])


class HistoryWriter(keras.callbacks.Callback):
    """Appends a row of rundir.HISTORY_FIELDS per logging period (a Keras epoch: `period` is its
    0-based index) to history.csv through `rundir.append_history`, so runs with and without
    validation read alike; atomically, an older run's file under the new header."""

    def __init__(self, path):
        super().__init__()
        self.path = pathlib.Path(path)

    def on_epoch_end(self, epoch, logs=None):
        rundir.append_history(self.path, {**(logs or {}), "period": epoch})


class PeriodProgress(keras.callbacks.ProgbarLogger):
    """Keras' progress bar, each period headed "Pass k/N" (or "Period k/N" where `log_every`
    makes a logging period other than a pass), not Keras' "Epoch k/N": here an epoch is always
    a pass over the training images (issue #39), and Keras' epochs are our logging periods.

    Args:
        name: "pass" or "period", what one `model.fit` epoch is in this run.
    """

    def __init__(self, name: str = "period"):
        super().__init__()
        self.name = name

    def on_epoch_begin(self, epoch, logs=None):
        # Keras heads a period "Epoch k/N" only when there are several; its bar is set up the
        # same either way, so it is told there is one, and the header is ours.
        epochs, self.epochs = self.epochs, 1
        try:
            super().on_epoch_begin(epoch, logs)
        finally:
            self.epochs = epochs
        if self.verbose and self.epochs > 1:
            print(f"{self.name.capitalize()} {epoch + 1}/{self.epochs}", flush=True)
