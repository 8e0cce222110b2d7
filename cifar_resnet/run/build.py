"""What a run trains: the net of a config, built under its precision policy and compiled, and
its inputs.

He et al. 2015, sec 4.2: SGD with momentum 0.9 and weight decay 1e-4 (`config.weight_decay`,
an L2 penalty of half that on the weights, whose gradient is the decay), the softmax
cross-entropy loss; nets/models.py builds the net itself. Precision, XLA and steps per execution
are this machine's choices, not the paper's (cpu.py, distribute.py). The inputs are the paper's
augmentation (4-pixel pad, 32x32 crop, horizontal flip) on tf.data (data/pipeline.py) or inside
the compiled step (data/device_input.py).
"""

from __future__ import annotations

import dataclasses
import math
import sys

import keras
import numpy as np

from cifar_resnet.data import device_input
from cifar_resnet.nets import models
from cifar_resnet.spec import config as config_lib, cpu
from cifar_resnet.run import distribute, losses, reliability


def resolve_precision(config: config_lib.Config) -> config_lib.Config:
    """`config` with `precision` set to the dtype policy this machine uses for it.

    "auto" becomes mixed_float16 (GPU) or mixed_bfloat16 (CPU with native bf16)
    (cpu.resolve_precision); a CPU without native bf16 gets float32 and one line on stderr
    saying why.
    """
    precision, note = cpu.resolve_precision(config.precision, gpu=distribute.gpu_count() > 0)
    if note:
        print(note, file=sys.stderr)
    return dataclasses.replace(config, precision=precision)


def build_net(config: config_lib.Config) -> keras.Model:
    """The net of `config` under its precision policy, not compiled."""
    policy = keras.mixed_precision.dtype_policy()
    if config.precision == "auto":
        config = resolve_precision(config)
    try:
        keras.mixed_precision.set_dtype_policy(config.precision)
        # The recipe's weight decay replaces the preset's: L2(l2) has gradient 2*l2*w = wd*w
        # (paper semantics).
        decay = dict(l2=config.weight_decay / 2, **(
            {} if config.weight_decay_on is None else
            {"regularize_all": config_lib.WEIGHT_DECAY_ON[config.weight_decay_on]}))
        model = models.build_model(config.net, num_classes=config.num_classes, **decay)
    finally:
        keras.mixed_precision.set_dtype_policy(policy)
    return model


def build_model(config: config_lib.Config) -> keras.Model:
    """The net of `config` under its precision policy, compiled with its optimizer, loss and
    accuracy metric."""
    model = build_net(config)
    if config.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(config.lr, momentum=config.momentum,
                                         nesterov=config.nesterov)
    else:
        optimizer = keras.optimizers.Adam(config.lr)
    loss = (losses.SmoothedSparseCrossentropy(config.label_smoothing, config.num_classes)
            if config.label_smoothing else "sparse_categorical_crossentropy")
    return compiled(model, config, optimizer, loss)


def compiled(model: keras.Model, config: config_lib.Config, optimizer, loss) -> keras.Model:
    """`model` compiled for training under `config` (accuracy, XLA, steps per execution).

    Besides accuracy it logs the loss without the weight-decay term (reliability.DATA_LOSS),
    which reliability.DivergenceStop watches: a deep plain net's weight-decay term alone can
    reach millions while it trains (docs/full-repro, "Plain-56").
    """
    data_loss = keras.metrics.MeanMetricWrapper(keras.losses.get(loss),
                                                name=reliability.DATA_LOSS)
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy", data_loss],
                  jit_compile=distribute.jit_compile(config.jit_compile),
                  steps_per_execution=config.steps_per_execution)
    _build_training_state(model, config.num_classes)
    return distribute.adapt(model)


def _build_training_state(model: keras.Model, num_classes: int) -> None:
    """Creates the optimizer's slots and the metrics' variables before `fit`, as Keras' TensorFlow
    trainer does itself only under a distribution strategy.

    Without one it defers them to the first trace of the training step, and TensorFlow traces a
    function that creates variables twice: a 2-iteration run of plain-110 took 71 s instead of
    41 s on a 2-core Intel Xeon, and every training test paid it too. The metrics need only
    labels and predictions of the right shapes, not a forward pass.
    """
    if keras.backend.backend() != "tensorflow":
        return  # the JAX and torch trainers build all of it before the first step
    import tensorflow as tf
    if tf.distribute.has_strategy():
        return  # Keras builds it from the first batch (_maybe_symbolic_build)
    model.optimizer.build(model.trainable_variables)
    model.compute_metrics(None, np.zeros((1,), "int32"), np.zeros((1, num_classes), "float32"),
                          sample_weight=None)
    model.reset_metrics()


def device_trainer(net: keras.Model, splits, config: config_lib.Config) -> keras.Model:
    """`net` wrapped in device_input.AugmentedTrainer (augmentation inside the compiled step),
    compiled as build_model compiled it."""
    return compiled(device_input.AugmentedTrainer(net, splits.mean, splits.std), config,
                    net.optimizer, net.loss)


def input_path(config: config_lib.Config) -> str:
    """The input pipeline `config` trains through here, "tfdata" or "device"
    (device_input.resolve_pipeline); ConfigError where its settings need the other one."""
    try:
        path = device_input.resolve_pipeline(config.input_pipeline)
    except device_input.PipelineError as e:
        raise config_lib.ConfigError(str(e)) from None
    if path == "device" and config.augment and config.augmentation != "crop_flip":
        raise config_lib.ConfigError(
            f"augmentation {config.augmentation!r} runs on the tf.data input pipeline only; "
            "the device pipeline does 'crop_flip' (use input_pipeline 'tfdata')")
    config_lib.check_input_pipeline(config, path)
    return path


def inputs(config: config_lib.Config, splits, input_path: str, first: int, stop: int) -> tuple:
    """(train, val, test) for `input_path` ("tfdata" or "device"); train holds global batches
    first..stop-1. Data passes are keyed by pass, so a resumed run sees the same batches; they
    need not coincide with logging periods (log_every), so `first` may fall inside one."""
    if input_path == "tfdata":
        from cifar_resnet.data import pipeline  # imports TensorFlow
        make = dict(batch_size=config.batch_size, mean=splits.mean, std=splits.std)
        per_pass = config.iterations_per_pass(len(splits.train[0]))
        train_ds = pipeline.make_dataset(
            *splits.train, training=True, augment=config.augment, seed=config.seed,
            augmentation=config.augmentation, **make,
            epochs=(first // per_pass, math.ceil(stop / per_pass))).skip(first % per_pass)
        val_ds = (pipeline.make_dataset(*splits.val, training=False, **make) if splits.val
                  else None)
        return train_ds, val_ds, pipeline.make_dataset(*splits.test, training=False, **make)
    # device_input: uint8 batches, augmented inside the compiled step (device_trainer)
    train_ds = device_input.TrainBatches(
        *splits.train, batch_size=config.batch_size, seed=config.seed, start=first, stop=stop,
        augment=config.augment, drop_remainder=config.drop_remainder)
    eval_batch = config.eval_batch_size or config.batch_size
    val_ds = device_input.EvalBatches(*splits.val, batch_size=eval_batch) if splits.val else None
    return train_ds, val_ds, device_input.EvalBatches(*splits.test, batch_size=eval_batch)
