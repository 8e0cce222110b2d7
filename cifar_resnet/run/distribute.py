"""Where training runs: one device, several GPUs of one machine, or several machines.

He et al. 2015 (sec 4.2) trained the CIFAR-10 nets "with a mini-batch size of 128 on two GPUs":
64 images per GPU, one global batch of 128 and lr 0.1, with BatchNorm statistics per GPU. Here
`Config.batch_size` is that global batch under every strategy, and the learning rate is never
rescaled behind the user's back: for a larger global batch, scale `lr` linearly yourself
(Goyal et al. 2017), e.g. batch 256 -> lr 0.2.

Strategies (`Config.strategy`):
    one          the default device (TensorFlow's default strategy).
    mirrored     every local GPU (or logical CPU device): `tf.distribute.MirroredStrategy` under
                 the TensorFlow backend, `keras.distribution.DataParallel` under JAX.
    multiworker  `tf.distribute.MultiWorkerMirroredStrategy`, cluster from `$TF_CONFIG`
                 (TensorFlow backend only). Only the chief writes the run directory; the other
                 workers write into a scratch copy that is removed afterwards (the TF docs'
                 pattern), and resume from the chief's files, so the run directory must be on a
                 file system all workers share.
    auto         mirrored when more than one GPU is visible, else one.

Backend notes: Keras' JAX trainer without `jit_compile` dispatches every op on its own (10x slower
on CPU here), so `jit_compile` is always on under JAX. The torch backend has one-device training
only: `mirrored` and `multiworker` are refused there with a message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import shutil
import tempfile
from typing import Any

import keras

from cifar_resnet.spec.choices import check_choice
from cifar_resnet.spec import rundir
from cifar_resnet.spec.config import STRATEGIES, ConfigError

# What a non-chief worker copies from the chief's run directory to resume at the same epoch.


class StrategyError(ConfigError):
    """The strategy cannot run here (backend, devices or TF_CONFIG); one line for the user."""


@dataclasses.dataclass(frozen=True)
class Placement:
    """A resolved strategy: what to train under, and whether this process writes run files.

    Attributes:
        name: "one", "mirrored" or "multiworker" (never "auto").
        strategy: the `tf.distribute.Strategy`, the `keras.distribution.Distribution` (JAX), or
            None for one device outside TensorFlow.
        num_replicas: model replicas the global batch is split over.
        is_chief: whether this process writes the run directory.
    """

    name: str
    strategy: Any
    num_replicas: int = 1
    is_chief: bool = True

    def scope(self):
        """Context in which to build, compile and fit the model."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()


def gpu_count() -> int:
    """GPUs visible to the current backend (honours CUDA_VISIBLE_DEVICES)."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax
        return sum(d.platform == "gpu" for d in jax.devices())
    if backend == "torch":
        import torch
        return torch.cuda.device_count()
    import tensorflow as tf
    return len(tf.config.list_physical_devices("GPU"))


def resolve_name(name: str) -> str:
    """Maps "auto" to "mirrored" (more than one GPU) or "one"; checks the name."""
    check_choice("strategy", name, STRATEGIES, StrategyError)
    if name != "auto":
        return name
    return "mirrored" if gpu_count() > 1 and keras.backend.backend() != "torch" else "one"


def cluster_role(tf_config: str | None = None) -> tuple[str, int, bool]:
    """(task type, task index, is chief) from TF_CONFIG, as MultiWorkerMirroredStrategy reads it.

    The chief is the "chief" task, or worker 0 when the cluster has no "chief" entry.
    """
    text = os.environ.get("TF_CONFIG") if tf_config is None else tf_config
    if not text:
        raise StrategyError("strategy 'multiworker' needs TF_CONFIG, e.g. {\"cluster\": "
                            "{\"worker\": [\"host1:12345\", \"host2:12345\"]}, \"task\": "
                            "{\"type\": \"worker\", \"index\": 0}} (see README, Scaling out)")
    try:
        spec = json.loads(text)
        cluster, task = spec["cluster"], spec["task"]
        kind, index = task["type"], int(task["index"])
        cluster[kind][index]
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise StrategyError(f"TF_CONFIG is not a cluster with this task in it ({e!r}): "
                            f"{text[:200]}") from None
    chief = kind == "chief" or (kind == "worker" and index == 0 and "chief" not in cluster)
    return kind, index, chief


def placement(name: str = "auto") -> Placement:
    """Creates the strategy `name` for the current Keras backend.

    Call it before any other TensorFlow op: MultiWorkerMirroredStrategy must be created at
    program start-up (it configures collective ops).

    Raises:
        StrategyError: the strategy does not exist, or cannot run on this backend or cluster.
    """
    name, backend = resolve_name(name), keras.backend.backend()
    if name == "one":
        return Placement("one", None)
    if backend == "torch":
        raise StrategyError(f"strategy {name!r} is not supported under the torch backend "
                            "(one device only); use KERAS_BACKEND=tensorflow or jax")
    if backend == "jax":
        if name == "multiworker":
            raise StrategyError("strategy 'multiworker' needs the tensorflow backend; under JAX "
                                "use 'mirrored' (keras.distribution.DataParallel) per machine")
        dist = keras.distribution.DataParallel(devices=keras.distribution.list_devices())
        return Placement("mirrored", dist, len(dist.device_mesh.devices.flat))
    import tensorflow as tf
    if name == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
        return Placement("mirrored", strategy, strategy.num_replicas_in_sync)
    _, _, chief = cluster_role()
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    return Placement("multiworker", strategy, strategy.num_replicas_in_sync, chief)


@contextlib.contextmanager
def scratch_copy(workdir):
    """A temporary copy of the chief's resume files in `workdir`, removed on exit.

    Non-chief workers train into it, so they resume at the chief's epoch (when the run directory
    is shared) while their writes go nowhere.
    """
    workdir = pathlib.Path(workdir)
    with tempfile.TemporaryDirectory(prefix="cifar_resnet-worker-") as tmp:
        scratch = pathlib.Path(tmp) / workdir.name
        scratch.mkdir()
        for name in rundir.RESUME_FILES:
            source = workdir / name
            if source.is_dir():
                shutil.copytree(source, scratch / name)
            elif source.is_file():
                shutil.copy2(source, scratch / name)
        yield scratch


def adapt(model: keras.Model) -> keras.Model:
    """Lets `model.fit` run under MultiWorkerMirroredStrategy (keras-team/keras#20585).

    Keras' TensorFlow trainer fails there; `private_apis.apply` patches it, the package's
    only use of private Keras APIs. Other strategies: the model is returned untouched.
    """
    if keras.backend.backend() != "tensorflow":
        return model
    import tensorflow as tf
    strategy = model.distribute_strategy
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return model
    from cifar_resnet import private_apis
    return private_apis.apply(model, strategy)


def jit_compile(requested: bool) -> bool:
    """The `jit_compile` for `model.compile`: always True under JAX (see module docstring)."""
    return True if keras.backend.backend() == "jax" else requested
