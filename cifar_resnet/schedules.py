"""Learning-rate schedules of the two recipes.

He et al. 2015, section 4.2: "We start with a learning rate of 0.1, divide it by 10 at 32k and 48k
iterations, and terminate training at 64k iterations". For ResNet-110 (and deeper): "we use 0.01
to warm up the training until the training error is below 80% (about 400 iterations), and then go
back to 0.1". The keras-example recipe divides Adam's 1e-3 at epochs 81/121/161/181 (its
`lr_schedule`) and also uses `ReduceLROnPlateau`.

Both are one step function of the iteration count (`step_lr`): `milestones` are fractions of
the planned iterations, so a shortened run (`--epochs 30`) keeps the paper's shape (drops at 50%
and 75%).

`linear_lr` is the short-budget alternative of the `fast` recipe (experiments/fast.py, not a
paper setting): a linear warm-up, then a linear decay to zero at the last planned iteration,
which Li, Yumer and Ramanan ("Budgeted Training", ICLR 2020) found better than step schedules
for a fixed budget of iterations. `SCHEDULES` names both for the config's `lr_schedule`.

`StepSchedule` sets the learning rate before each batch. It is a callback rather than a
`keras.optimizers.schedules.LearningRateSchedule` because `ReduceLROnPlateau` can only lower a
plain variable learning rate; and unlike `keras.callbacks.LearningRateScheduler`, which overwrites
the rate every epoch and so silently undoes every plateau reduction, it keeps those reductions as
a multiplier on the schedule.
"""

from __future__ import annotations

import bisect
import math

import keras


def step_lr(base_lr, total_steps, milestones=(0.5, 0.75), factors=(0.1, 0.01),
            warmup_steps=0, warmup_lr=None):
    """Returns `lr(step)`, a piecewise-constant learning rate.

    Args:
        base_lr: learning rate after warm-up and before the first milestone.
        total_steps: planned training iterations; milestones are fractions of it.
        milestones: increasing fractions of `total_steps` at which the rate drops.
        factors: multiplier of `base_lr` from each milestone on (same length as milestones).
        warmup_steps: iterations at `warmup_lr` before `base_lr` (0 for none).
        warmup_lr: learning rate during warm-up.

    Returns:
        A function from the 0-based iteration to the learning rate.
    """
    if len(milestones) != len(factors):
        raise ValueError(f"lr_milestones {tuple(milestones)} and lr_factors {tuple(factors)} "
                         "must have the same length")
    if list(milestones) != sorted(milestones) or any(not 0 < m < 1 for m in milestones):
        raise ValueError(f"lr_milestones must increase within (0, 1); got {tuple(milestones)}")
    boundaries = [round(m * total_steps) for m in milestones]
    values = [base_lr] + [base_lr * f for f in factors]

    def lr(step):
        if step < warmup_steps:
            return warmup_lr
        return values[bisect.bisect_right(boundaries, step)]

    return lr


def linear_lr(base_lr, total_steps, warmup_steps=0, warmup_lr=None):
    """Returns `lr(step)`: linear from `warmup_lr` up to `base_lr`, then linear down to zero.

    Args:
        base_lr: the peak learning rate, reached at `warmup_steps`.
        total_steps: planned training iterations; the rate would reach 0 at this one (so the
            last iteration, `total_steps - 1`, still takes a small step).
        warmup_steps: iterations of the rise (0: start at `base_lr`).
        warmup_lr: learning rate at iteration 0 of the rise.

    Returns:
        A function from the 0-based iteration to the learning rate.
    """
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(f"warmup_iterations {warmup_steps} must be below the planned "
                         f"{total_steps} iterations")

    def lr(step):
        if step < warmup_steps:
            return warmup_lr + (base_lr - warmup_lr) * step / warmup_steps
        return base_lr * (total_steps - step) / (total_steps - warmup_steps)

    return lr


SCHEDULES = {  # the values of the config's `lr_schedule`
    "step": "step_lr: the paper's drops at fractions of the run, optional constant warm-up",
    "linear": "linear_lr: linear warm-up, then linear decay to zero",
}


def learning_rate(config, total_steps):
    """The schedule a `config.Config` names in `lr_schedule`, over `total_steps` iterations."""
    warmup = dict(warmup_steps=config.resolved_warmup, warmup_lr=config.warmup_lr)
    if config.lr_schedule == "linear":
        return linear_lr(config.lr, total_steps, **warmup)
    return step_lr(config.lr, total_steps, config.lr_milestones, config.lr_factors, **warmup)


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
