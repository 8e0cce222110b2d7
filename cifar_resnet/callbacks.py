"""The learning-rate callback: `StepSchedule` applies a `schedules` function before every batch.

It is a callback rather than a `keras.optimizers.schedules.LearningRateSchedule` because
`ReduceLROnPlateau` can only lower a plain variable learning rate; and unlike
`keras.callbacks.LearningRateScheduler`, which overwrites the rate every epoch and so silently
undoes every plateau reduction, it keeps those reductions as a multiplier on the schedule.
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
    """

    def __init__(self, schedule):
        super().__init__()
        self.schedule = schedule
        self.scale = 1.0
        self._last = None
        self._step = self._epoch_start = 0

    def _current(self):
        return float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_train_begin(self, logs=None):
        self._last = None  # read the state at the first epoch (a resumed run restored it)

    def on_epoch_begin(self, epoch, logs=None):
        if self._last is None:
            self._step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
            if self._step > 0:  # resumed: the restored rate carries any plateau reductions
                ratio = self._current() / self.schedule(self._step - 1)
                # The restored rate is float32: a ratio within its rounding of 1 is no reduction,
                # and keeping it would make a resumed run's rates differ from an unbroken run's.
                self.scale = 1.0 if math.isclose(ratio, 1.0, rel_tol=1e-6) else ratio
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
