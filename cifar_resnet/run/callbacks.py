"""The learning-rate callback: `StepSchedule` applies a `schedules` function before every batch.

It is a callback rather than a `keras.optimizers.schedules.LearningRateSchedule` because
`ReduceLROnPlateau` can only lower a plain variable learning rate; and unlike
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

import keras


class StepSchedule(keras.callbacks.Callback):
    """Sets `optimizer.learning_rate = schedule(iteration) * scale` before every batch.

    `scale` starts at 1 and absorbs any reduction made by another callback (ReduceLROnPlateau):
    when the rate found on the optimizer is lower than the one last set, the ratio is kept. On
    resume, the restored optimizer's rate and iteration give the scale back, so no state of its
    own needs saving.

    Args:
        schedule: function from the 0-based iteration to the learning rate.
        keep_reductions: True: keep another callback's reductions as above. False: every epoch
            starts from `schedule` again, so a reduction made at an epoch's end reaches no
            batch, as with `keras.callbacks.LearningRateScheduler` in the Keras example.
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
        # Read the state at the first epoch, after the Checkpointer (run/reliability.py) restored it.
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
    schedule keeps the plateau's cuts (True) or sets its own rate again at every epoch start, as
    the Keras example's `LearningRateScheduler` did (False).

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
