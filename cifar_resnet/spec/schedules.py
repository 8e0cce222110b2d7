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
for a fixed budget of iterations. `cosine_lr` (Loshchilov and Hutter, "SGDR", ICLR 2017, without
restarts) is the other common short-budget decay. `SCHEDULES` names them for the config's
`lr_schedule`.

This module is plain Python (no TensorFlow, no Keras), so the config can check `lr_schedule`
against `SCHEDULES` before TensorFlow is imported. `callbacks.StepSchedule` applies a schedule
to the optimizer before each batch.
"""

from __future__ import annotations

import bisect
import math


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
        # Runs are whole epochs, so they may pass `total_steps` by up to one epoch (64,124
        # iterations for a planned 64,000): hold the rate at zero there, never negative.
        return base_lr * max(total_steps - step, 0) / (total_steps - warmup_steps)

    return lr


def cosine_lr(base_lr, total_steps, warmup_steps=0, warmup_lr=None):
    """Returns `lr(step)`: linear from `warmup_lr` up to `base_lr`, then a half cosine to zero.

    Args:
        base_lr: the peak learning rate, reached at `warmup_steps`.
        total_steps: planned training iterations; the rate would reach 0 at this one.
        warmup_steps: iterations of the rise (0: start at `base_lr`).
        warmup_lr: learning rate at iteration 0 of the rise.

    Returns:
        A function from the 0-based iteration to the learning rate.
    """
    rise = linear_lr(base_lr, total_steps, warmup_steps, warmup_lr)

    def lr(step):
        if step < warmup_steps:
            return rise(step)
        done = min((step - warmup_steps) / (total_steps - warmup_steps), 1.0)
        return base_lr * 0.5 * (1 + math.cos(math.pi * done))

    return lr


def _step(config, total_steps):
    """The paper's drops at fractions of the run, after an optional constant warm-up."""
    return step_lr(config.lr, total_steps, config.lr_milestones, config.lr_factors,
                   warmup_steps=config.resolved_warmup, warmup_lr=config.warmup_lr)


def _linear(config, total_steps):
    """A linear warm-up, then a linear decay to zero."""
    return linear_lr(config.lr, total_steps, warmup_steps=config.resolved_warmup,
                     warmup_lr=config.warmup_lr)


def _cosine(config, total_steps):
    """A linear warm-up, then a half cosine to zero."""
    return cosine_lr(config.lr, total_steps, warmup_steps=config.resolved_warmup,
                     warmup_lr=config.warmup_lr)


# The values of the config's `lr_schedule`: name -> function of (config, total_steps) that
# returns `lr(step)`.
SCHEDULES = {"step": _step, "linear": _linear, "cosine": _cosine}


def learning_rate(config, total_steps):
    """The schedule a `config.Config` names in `lr_schedule`, over `total_steps` iterations."""
    return SCHEDULES[config.lr_schedule](config, total_steps)
