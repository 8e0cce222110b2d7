"""The one place this package touches private Keras and TensorFlow APIs.

- `fused_batch_norm`: TensorFlow's fused training-mode BatchNorm kernel, reached through
  `tf.compat.v1.nn.fused_batch_norm` (TensorFlow 2 has no public fused op); nets/blocks.py's
  BatchNormalization trains with it.
- `tf_onednn_enabled`: whether TensorFlow's oneDNN kernels are on, from
  `tensorflow.python.util._pywrap_util_port` (no public API says it); spec/cpu.py reports it.
- `apply`: `fit` under MultiWorkerMirroredStrategy, below.

Keras' TensorFlow trainer cannot run `model.fit` under `tf.distribute.MultiWorkerMirroredStrategy`
(keras-team/keras#20585; the same failure as tensorflow/tensorflow#72388). Two bugs, each patched
here:

- `TensorFlowTrainer._maybe_symbolic_build` builds metrics and optimizer from the first batch,
  which it first reduces with `strategy.reduce("MEAN", batch, axis=None)` over the whole
  (images, labels) tuple: "Attempt to convert a value (PerReplica ...) to a Tensor". The batch
  only supplies shapes, so this worker's first replica's values serve as well.
- `trainer.reduce_per_replica` averages each step's scalar logs over the replicas with
  `strategy.reduce("MEAN", v, axis=0)`: "Invalid reduction dimension 0 for input with 0
  dimensions". `axis=None` is the mean over replicas it means.

Still needed with Keras 3.15.1 and TensorFlow 2.21: two localhost workers (a depth-8 net, as in
tests/test_distribute.py::test_two_workers_on_localhost) fail with the first error without
either patch, and with the second error with only the first patch.

`check()` verifies that the private names exist with the parameters the patches rely on;
`apply` calls it first, and tests/test_private_apis.py runs it on every test run, so a
Keras upgrade that changes them fails with a message naming what changed, not deep in `fit`.
No other module imports `keras.src`, `tensorflow.python` or `tf.compat.v1`, or sets a private
Keras attribute (tests/test_private_apis.py scans the package).
"""

from __future__ import annotations

import importlib
import inspect
import sys

import keras

ISSUE = "keras-team/keras#20585"
TRAINER_MODULE = "keras.src.backend.tensorflow.trainer"
# Private name (in TRAINER_MODULE) -> the parameters the patches call it with.
PRIVATE = {
    "reduce_per_replica": ("values", "strategy", "reduction"),
    "TensorFlowTrainer._maybe_symbolic_build": ("self", "iterator", "data_batch"),
}


class KerasChanged(RuntimeError):
    """A private Keras API the multi-worker workaround patches has changed or gone."""


def _changed(what: str) -> KerasChanged:
    return KerasChanged(f"Keras {keras.__version__} changed {what}; the multi-worker workaround "
                        f"for {ISSUE} in cifar_resnet/private_apis.py must be updated, or "
                        "removed if the bug is fixed (tests/test_distribute.py::"
                        "test_two_workers_on_localhost tells)")


def check():
    """Returns the private trainer module after checking every name in PRIVATE.

    Raises:
        KerasChanged: a module, name or parameter list differs from what the patches expect.
    """
    try:
        module = importlib.import_module(TRAINER_MODULE)
    except ImportError as e:
        raise _changed(f"the module {TRAINER_MODULE} ({e})") from None
    for name, params in PRIVATE.items():
        target = module
        for part in name.split("."):
            target = getattr(target, part, None)
            if target is None:
                raise _changed(f"{TRAINER_MODULE}.{name}: it no longer exists")
        found = tuple(inspect.signature(target).parameters)
        if found != params:
            raise _changed(f"{TRAINER_MODULE}.{name}: parameters {found}, expected {params}")
    return module


def apply(model: keras.Model, strategy) -> keras.Model:
    """Patches Keras so that `model.fit` runs under the MultiWorkerMirroredStrategy `strategy`.

    The trainer's `reduce_per_replica` is replaced once per process (other strategies go through
    to the original); `model`'s own `_maybe_symbolic_build` is wrapped, no other model's.

    Raises:
        KerasChanged: see `check`.
    """
    import tensorflow as tf
    trainer = check()
    if not getattr(trainer.reduce_per_replica, "patched", False):
        trainer.reduce_per_replica = _mean_scalars(trainer.reduce_per_replica)
    original = model._maybe_symbolic_build

    def symbolic_build(iterator=None, data_batch=None):
        if iterator is not None and data_batch is None:
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(
                    lambda v: strategy.experimental_local_results(v)[0], next(batches))
                break
        return original(data_batch=data_batch)

    model._maybe_symbolic_build = symbolic_build
    return model


def _mean_scalars(reduce_per_replica):
    """Keras' reduce_per_replica with "auto"/"mean" fixed for multi-worker scalars."""
    import tensorflow as tf

    def reduce(values, strategy, reduction):
        if (reduction in ("auto", "mean")
                and isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)):
            return tf.nest.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return reduce_per_replica(values, strategy, reduction)

    reduce.patched = True
    return reduce


def fused_batch_norm(x, gamma, beta, epsilon):
    """Training-mode BatchNorm in one fused kernel (FusedBatchNormV3: oneDNN on CPU, cuDNN on GPU).

    Returns:
        (y, batch mean, unbiased batch variance), as `tf.compat.v1.nn.fused_batch_norm` does.
    """
    import tensorflow as tf  # only reached under the TensorFlow backend
    return tf.compat.v1.nn.fused_batch_norm(x, gamma, beta, epsilon=epsilon, is_training=True)[:3]


def onednn_enabled():
    """Whether TensorFlow's oneDNN kernels are on in this process; None before TensorFlow is
    imported, or where TensorFlow does not say (spec/cpu.describe records it)."""
    if sys.modules.get("tensorflow") is None:
        return None
    return tf_onednn_enabled()


def tf_onednn_enabled():
    """Whether TensorFlow's oneDNN kernels are on in this process; None where it cannot say."""
    try:
        from tensorflow.python.util import _pywrap_util_port
        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return None
