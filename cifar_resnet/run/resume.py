"""Stopping and resuming at any iteration: `fit`, what train.py calls in place of `model.fit`.

The paper's schedule is by iteration, and a period (a Keras epoch: a pass over the data or
`log_every` iterations) of a deep net can take an hour, so SIGINT/SIGTERM (Ctrl-C) save the state
at the current iteration and the rerun continues from there, to the weights and history of an
unbroken run, bit for bit (issue #26).

- The signal: `reliability.SignalStop` only records it (`checks = False`); `_SaveOnSignal`, the
  last callback, acts after the current batch's other callbacks (DivergenceStop has checked its
  loss). At iteration i = k * steps + r (0 < r < steps) it saves a mid-period state through the
  run's `Checkpointer` (`save(k, iterations=i, ...)`: atomic, checksummed, the previous state
  kept) with what a period's history row needs, then raises `Interrupted` naming i. A signal in
  a period's last batch lets that period end (validation, test, history row, checkpoint) first
  and stops at the next one's beginning, as does one that comes between batches.
- The state: the weights, BatchNorm statistics and optimizer (slots, iteration) as at a period's
  end; the metric accumulators (`model.metrics`' variables: the loss tracker's, the accuracy's
  and the cross-entropy's total and count), which Keras resets at every period's beginning, so
  that the resumed period's row averages all of its iterations; and each callback's
  `interrupt_state()` (EpochRecorder: the wall time so far), given back by `resume_from`.
- The resume: the input starts at iteration i (the caller builds `train_ds` from
  `Checkpointer.resume_iteration`); a first `model.fit` runs the remaining steps - r iterations
  of period k, and puts the accumulators back in `on_epoch_begin` (callbacks run after
  `reset_metrics`; where Keras has not yet made the accuracy metric's variables, as under JAX
  before the first period, one evaluation step makes them first); a
  second runs periods k+1... on `train_ds.skip(steps - r)` (tf.data, and
  `device_input.TrainBatches.skip`): Keras' epoch iterator keeps one iterator per `fit` call.
  Both calls share one `CallbackList` that sees one training: `on_train_begin` once (so
  ReduceLROnPlateau, StepSchedule and EpochRecorder keep their state), `on_train_end` once.
"""

from __future__ import annotations

import keras
import numpy as np

from cifar_resnet.run import reliability
from cifar_resnet.spec import rundir


def fit(model: keras.Model, train_ds, *, epochs: int, initial_epoch: int, steps_per_epoch: int,
        callbacks=(), verbose="auto", last_iteration=None, **kwargs):
    """`model.fit(train_ds, epochs=..., initial_epoch=..., steps_per_epoch=..., callbacks=...)`
    that stops at any iteration on a signal and resumes from there.

    Args:
        model: the compiled model, its state restored by the `Checkpointer` among `callbacks`.
        train_ds: training batches from the resume state's iteration
            (`Checkpointer.resume_iteration`) on: a tf.data dataset or `TrainBatches`.
        epochs, initial_epoch, steps_per_epoch: as `model.fit`'s; `initial_epoch` is the
            resume state's periods (`Checkpointer.resume_epoch`).
        callbacks: as `model.fit`'s. A `reliability.SignalStop` (its context entered around
            this call) and a `reliability.Checkpointer` among them turn on the mid-period saves
            and resumes; without both, this is `model.fit`.
        verbose, kwargs: passed to `model.fit` (validation_data, shuffle, ...).
        last_iteration: where training stops, within the last period (it ends there, short:
            `--iterations N` trains N); None: at the end of the last period.

    Returns:
        The `History` of the last `model.fit` call.

    Raises:
        reliability.Interrupted: a signal; the state at its `iteration` is saved.
        reliability.ResumeError: a mid-period state that does not fit this run's periods.
    """
    callbacks = list(callbacks)
    stop = next((c for c in callbacks if isinstance(c, reliability.SignalStop)), None)
    checkpointer = next((c for c in callbacks if isinstance(c, reliability.Checkpointer)), None)
    state = (checkpointer.resume_state() if checkpointer is not None else None) or {}
    done = state.get("iterations", initial_epoch * steps_per_epoch)
    offset = done - initial_epoch * steps_per_epoch  # iterations of period initial_epoch done
    if not 0 <= offset < steps_per_epoch or (offset and state.get("epoch") != initial_epoch):
        raise reliability.ResumeError(
            f"the checkpoint {checkpointer.backup_dir / state['weights']} is at iteration "
            f"{done}, not within period {initial_epoch + 1} of {steps_per_epoch} iterations; "
            f"delete {checkpointer.backup_dir} and "
            f"{rundir.RunDir(checkpointer.backup_dir.parent).history} to restart this run from zero")
    end = epochs * steps_per_epoch if last_iteration is None else last_iteration
    if end < epochs * steps_per_epoch:
        callbacks.append(_StopAt(end, steps_per_epoch, initial_epoch, offset))
    saver = None
    if stop is not None and checkpointer is not None:
        saver = _SaveOnSignal(stop, checkpointer, steps_per_epoch, initial_epoch, offset,
                              callbacks, state if offset else None, train_ds, end)
        callbacks.append(saver)  # last: after every other callback has seen the batch
    cb_list = _OneTraining(callbacks, add_history=True, add_progbar=verbose != 0,
                           verbose=verbose, epochs=epochs, steps=steps_per_epoch, model=model)
    if offset:
        for callback in callbacks:
            saved = state.get("callbacks", {}).get(type(callback).__name__)
            if saved is not None and hasattr(callback, "resume_from"):
                callback.resume_from(saved)
    if stop is not None:
        stop.checks = saver is None
    try:
        if offset and initial_epoch < epochs:
            # The rest of the period the signal stopped; then the periods after it.
            cb_list.last = initial_epoch + 1 >= epochs
            history = model.fit(train_ds, epochs=initial_epoch + 1, initial_epoch=initial_epoch,
                                steps_per_epoch=steps_per_epoch - offset, callbacks=cb_list,
                                verbose=verbose, **kwargs)
            if model.stop_training and not cb_list.last:  # another callback ended training
                cb_list.last = True
                cb_list.on_train_end()
            if cb_list.last:
                return history
            train_ds, initial_epoch = train_ds.skip(steps_per_epoch - offset), initial_epoch + 1
        cb_list.last = True
        return model.fit(train_ds, epochs=epochs, initial_epoch=initial_epoch,
                         steps_per_epoch=steps_per_epoch, callbacks=cb_list, verbose=verbose,
                         **kwargs)
    finally:
        if stop is not None:
            stop.checks = True


class _StopAt(keras.callbacks.Callback):
    """Ends training after iteration `end`, inside the last period: Keras then ends that period
    as a whole one (validation, `on_epoch_end`: the history row, the checkpoint), short.

    Args:
        end: the iteration training stops after (1-based count of iterations done).
        steps_per_epoch: iterations of a whole period.
        first_epoch: the period the fit starts in.
        offset: iterations of `first_epoch` done before (a mid-period resume), else 0.
    """

    def __init__(self, end, steps_per_epoch, first_epoch, offset):
        super().__init__()
        self.end, self.steps, self.first_epoch, self.offset = end, steps_per_epoch, first_epoch, offset
        self.start = first_epoch * steps_per_epoch + offset

    def on_epoch_begin(self, epoch, logs=None):
        # Keras counts a fit's batches from 0 in each period, and a resumed period's first
        # fit from its offset.
        self.start = epoch * self.steps + (self.offset if epoch == self.first_epoch else 0)

    def on_train_batch_end(self, batch, logs=None):
        if self.start + batch + 1 >= self.end:
            self.model.stop_training = True


class _OneTraining(keras.callbacks.CallbackList):
    """A CallbackList over several `model.fit` calls that its callbacks see as one training:
    `on_train_begin` at the first call's beginning, `on_train_end` only at the end of the call
    made with `last` set."""

    last = True
    _begun = False

    def on_train_begin(self, logs=None):
        if not self._begun:
            self._begun = True
            super().on_train_begin(logs)

    def on_train_end(self, logs=None):
        if self.last:
            super().on_train_end(logs)


def _metric_variables(model: keras.Model) -> list:
    """The accumulators behind a period's logged loss and accuracy (Keras resets them at every
    period's beginning)."""
    return [v for metric in model.metrics for v in metric.variables]


class _SaveOnSignal(keras.callbacks.Callback):
    """After a signal (`stop.signum`), saves the mid-period state and raises `Interrupted`; on a
    resumed period's beginning, puts its metric accumulators back. See the module docstring.

    Args:
        stop: the SignalStop whose handler records the signal.
        checkpointer: the run's Checkpointer.
        steps_per_epoch: iterations per period.
        first_epoch: the period the fit starts in.
        offset: iterations of `first_epoch` done before (a mid-period resume), else 0.
        callbacks: the fit's callbacks, asked for their `interrupt_state()`.
        state: the mid-period state resumed from, or None.
        train_ds: the fit's training batches (one evaluation step on them makes the metrics'
            variables where Keras has not yet).
    """

    def __init__(self, stop, checkpointer, steps_per_epoch, first_epoch, offset, callbacks,
                 state, train_ds, end=None):
        super().__init__()
        self.end = end  # the last iteration: the end of the last period, whole or not
        self.stop, self.checkpointer, self.steps = stop, checkpointer, steps_per_epoch
        self.first_epoch, self.offset, self.callbacks = first_epoch, offset, callbacks
        self.state, self.train_ds = state, train_ds
        self.epoch = first_epoch
        self.start = first_epoch * steps_per_epoch + offset

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.start = epoch * self.steps + (self.offset if epoch == self.first_epoch else 0)
        if self.state is not None and epoch == self.first_epoch:
            saved = self.state.get("metrics")
            if saved is not None:
                variables = {v.path: v for v in _metric_variables(self.model)}
                if not set(saved) <= set(variables):
                    # Keras makes the compiled metrics' variables (accuracy) when a step
                    # first runs (JAX; on TensorFlow build.compiled makes them first): one
                    # evaluation step makes them without changing any weight.
                    self.model.evaluate(self.train_ds, steps=1, verbose=0)
                    variables = {v.path: v for v in _metric_variables(self.model)}
                # A metric this model has beyond the checkpoint's (the cross-entropy, logged
                # since a later version than a checkpoint's) starts from zero for the rest of the
                # period: metrics do not touch training.
                if not set(saved) <= set(variables):
                    raise reliability.ResumeError(
                        f"the checkpoint in {self.checkpointer.backup_dir} holds the metrics "
                        f"{sorted(saved)}, this model has {sorted(variables)}")
                for path, value in saved.items():
                    variables[path].assign(np.asarray(value, dtype=variables[path].dtype))
            self.state = None
        if self.stop.signum is not None:  # came after the last batch: nothing to add
            raise reliability.Interrupted(self.stop.signum, iteration=self.start)

    def on_train_batch_end(self, batch, logs=None):
        if self.stop.signum is None:
            return
        done = self.start + batch + 1
        if done % self.steps == 0 or done == self.end:
            return  # the period's last batch: let it end; the next beginning raises
        sync = getattr(self.model, "jax_state_sync", None)
        if sync is not None:
            sync()  # JAX keeps the state outside the variables between period ends
        metrics = {v.path: np.asarray(keras.ops.convert_to_numpy(v)).tolist()
                   for v in _metric_variables(self.model)}
        states = {type(c).__name__: c.interrupt_state() for c in self.callbacks
                  if hasattr(c, "interrupt_state")}
        self.checkpointer.save(self.epoch, iterations=done, metrics=metrics, callbacks=states)
        raise reliability.Interrupted(self.stop.signum, iteration=done)
