"""The backend-neutral input path: uint8 batches from numpy, augmentation inside the compiled step.

He et al. 2015 sec 4.2 train with per-pixel mean subtraction, 4 pixels of padding on each side,
a random 32x32 crop and a random horizontal flip. The tf.data path (`pipeline.make_dataset`) does
this on the host with TensorFlow. This module does the same without TensorFlow, as fast GPU
CIFAR trainers do, so that no host pipeline can starve an accelerator:

- the host (numpy) keeps the images as uint8 and, per batch, only gathers the images and draws
  each image's crop offsets and flip: three small ints an image (`TrainBatches`);
- the device normalizes, pads, crops and flips inside the compiled training step
  (`DeviceAugment`, run by `AugmentedTrainer`, written with `keras.ops` only).

The draws are a pure function of `(seed, pass)`, like the tf.data path's stateless shuffles: a
run resumed in the middle of a pass sees the same batches and augmentations as an unbroken one.
`AugmentedTrainer` wraps the net for training only: saving it saves the net, so `best.keras` and
`final.keras` are the same plain net, taking normalized float32 images, as on the tf.data path.

Config field `input_pipeline` chooses: "tfdata", "device", or "auto" (`resolve_pipeline`).
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import math

import keras
import numpy as np
from keras import ops

from cifar_resnet.spec.choices import check_choice
from cifar_resnet.spec.datasets import PAD  # 4 pixels of padding per side (He 2015 sec 4.2)
from cifar_resnet.spec.config import PIPELINES


class PipelineError(ValueError):
    """The input pipeline asked for cannot run here; the message is one line."""


def tensorflow_installed() -> bool:
    """Whether TensorFlow can be imported (it is not imported here)."""
    try:
        return importlib.util.find_spec("tensorflow") is not None
    except (ImportError, ValueError):  # e.g. blocked with sys.modules["tensorflow"] = None
        return False


def resolve_pipeline(name: str) -> str:
    """The input pipeline that `name` means for the current Keras backend.

    "auto" is "tfdata" under the TensorFlow backend (nothing changes there) and "device" under
    every other backend, so JAX and torch need no TensorFlow.

    Raises:
        PipelineError: `name` is unknown, or "tfdata" is asked for without TensorFlow.
    """
    check_choice("input_pipeline", name, PIPELINES, PipelineError)
    if name == "auto":
        return "tfdata" if keras.backend.backend() == "tensorflow" else "device"
    if name == "tfdata" and not tensorflow_installed():
        raise PipelineError("input_pipeline 'tfdata' needs TensorFlow, which is not installed; "
                            "use 'device' or 'auto'")
    return name


def normalize(images, mean, std) -> np.ndarray:
    """`(x / 255 - mean) / std` in float32, computed as the tf.data path computes it."""
    std = np.asarray(std, np.float32)
    scale = (1 / (255 * std)).astype(np.float32)
    shift = (np.asarray(mean, np.float32) / std).astype(np.float32)
    return np.asarray(images).astype(np.float32) * scale - shift


def centred_params(n: int) -> np.ndarray:
    """Augmentation parameters that leave `n` images unchanged: offset (PAD, PAD), no flip."""
    return np.tile(np.array([PAD, PAD, 0], np.int32), (n, 1))


def draw_params(rng: np.random.Generator, n: int) -> np.ndarray:
    """`(n, 3)` int32: crop top and left, uniform over 0..2*PAD, and flip with probability 1/2.

    The distribution of `pipeline.augment_batch` (the tf.data path), drawn by numpy.
    """
    offsets = rng.integers(0, 2 * PAD + 1, size=(n, 2), dtype=np.int32)
    flips = (rng.random(n) < 0.5).astype(np.int32)
    return np.concatenate([offsets, flips[:, None]], axis=1)


@keras.saving.register_keras_serializable(package="cifar_resnet")
class DeviceAugment(keras.layers.Layer):
    """Normalizes uint8 images and, in training, pads, crops and flips each one as told.

    Inputs are `[images, params]`: uint8 `(B, H, W, C)` images and int32 `(B, 3)` parameters
    (crop top, crop left, flip) from `draw_params`. The padding is added after normalization,
    so it is the mean image, as in fb.resnet.torch and `pipeline.augment_batch`. Outside training
    (and with `centred_params`) the output is the normalized image.

    Args:
        mean: Normalization mean, broadcastable to (H, W, C).
        std: Normalization std, broadcastable to (H, W, C).
    """

    def __init__(self, mean, std, **kwargs):
        kwargs.setdefault("dtype", "float32")  # float32 out; the net casts to its own policy
        super().__init__(**kwargs)
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)
        self.scale = (1 / (255 * self.std)).astype(np.float32)
        self.shift = (self.mean / self.std).astype(np.float32)

    def call(self, inputs, training=None):
        images, params = inputs
        x = ops.cast(images, "float32") * self.scale - self.shift
        if not training:
            return x
        height, width = x.shape[1], x.shape[2]
        padded = ops.pad(x, [[0, 0], [PAD, PAD], [PAD, PAD], [0, 0]])
        params = ops.cast(params, "int32")
        top, left, flip = params[:, 0:1], params[:, 1:2], params[:, 2:3]
        rows = top + ops.arange(height, dtype="int32")[None, :]
        cols = ops.arange(width, dtype="int32")[None, :]
        cols = left + ops.where(flip > 0, width - 1 - cols, cols)
        # One gather per axis, each image its own window (indices broadcast over the rest).
        x = ops.take_along_axis(padded, rows[:, :, None, None], axis=1)
        return ops.take_along_axis(x, cols[:, None, :, None], axis=2)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        return {**super().get_config(), "mean": self.mean.tolist(), "std": self.std.tolist()}


class AugmentedTrainer(keras.Model):
    """Trains `net` on `[uint8 images, params]`, with `DeviceAugment` inside the compiled step.

    It owns no weights of its own: its variables are the net's. Keras callbacks save the model
    they train, so `save` saves the net: `best.keras` and `final.keras` hold the plain net (its
    input the normalized float32 image), as on the tf.data path. `save_weights` and
    `load_weights` (the resume backups) work on the trainer, whose weights are the net's.

    Args:
        net: The Keras model to train.
        mean: Normalization mean of the training split.
        std: Normalization std of the training split.
    """

    def __init__(self, net: keras.Model, mean, std, **kwargs):
        super().__init__(name=kwargs.pop("name", net.name), **kwargs)
        self.net = net
        self.augment = DeviceAugment(mean, std, name="device_augment")
        self.built = True  # every variable already exists, in the net

    def call(self, inputs, training=None):
        return self.net(self.augment(inputs, training=training), training=training)

    def save(self, filepath, *args, **kwargs):
        """Saves the net (the augmentation is part of training, not of the model)."""
        return self.net.save(filepath, *args, **kwargs)


class TrainBatches(keras.utils.PyDataset):
    """Training batches `((uint8 images, int32 params), labels)` over several passes.

    Pass `p` is a permutation of the training set and one `draw_params` per image, both drawn
    from `numpy.random.default_rng([seed, p])`: a pure function of the seed and the pass, so a
    resumed run sees exactly the batches of an unbroken one. Batches are numbered across passes
    (`per_pass` each, the last of a pass smaller unless the set divides evenly, as on the
    tf.data path); this dataset holds batches `start` to `stop - 1`.

    Args:
        x: uint8 images (N, H, W, C), kept in memory as they are.
        y: int labels (N,).
        batch_size: Images per batch.
        seed: The run's seed.
        start: First global batch (a resumed run's first).
        stop: One past the last global batch.
        augment: False: every image gets `centred_params` (no crop, no flip).
        drop_remainder: each pass has `len(x) // batch_size` batches, all full: the last
            `len(x) % batch_size` images of each pass's permutation are left out (one
            training-step shape, one compile).
    """

    def __init__(self, x, y, *, batch_size, seed, start, stop, augment=True,
                 drop_remainder=False):
        super().__init__(workers=1, use_multiprocessing=False)
        if not 0 <= start < stop:
            raise ValueError(f"need 0 <= start < stop; got start={start}, stop={stop}")
        self.x, self.y = x, np.asarray(y)
        self.batch_size, self.seed, self.augment = batch_size, seed, augment
        self.start, self.stop = start, stop
        self.per_pass = (len(x) // batch_size if drop_remainder and len(x) >= batch_size
                         else math.ceil(len(x) / batch_size))

    def __len__(self):
        return self.stop - self.start

    def skip(self, count: int) -> "TrainBatches":
        """The same batches from `count` later on, as `tf.data.Dataset.skip` (resume.fit)."""
        out = copy.copy(self)
        out.start = self.start + count
        if not 0 <= out.start < out.stop:
            raise ValueError(f"need 0 <= start < stop; got start={out.start}, stop={out.stop}")
        return out

    @functools.lru_cache(maxsize=2)
    def pass_plan(self, p: int) -> tuple[np.ndarray, np.ndarray]:
        """`(order, params)` of pass `p`: the image order and each position's parameters."""
        rng = np.random.default_rng([self.seed, p])
        order = rng.permutation(len(self.x))
        params = draw_params(rng, len(self.x)) if self.augment else centred_params(len(self.x))
        return order, params

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(index)
        p, b = divmod(self.start + index, self.per_pass)
        order, params = self.pass_plan(p)
        window = slice(b * self.batch_size, (b + 1) * self.batch_size)
        indices = np.sort(order[window])  # sorted: a faster gather; the set is what is drawn
        # Parameters go with positions in the pass, images with the sorted indices: both are
        # fixed functions of (seed, pass), so the pairing is too.
        return (self.x[indices], params[window]), self.y[indices]


class EvalBatches(keras.utils.PyDataset):
    """Evaluation batches `((uint8 images, centred params), labels)` in order, for the trainer."""

    def __init__(self, x, y, *, batch_size):
        super().__init__(workers=1, use_multiprocessing=False)
        self.x, self.y, self.batch_size = x, np.asarray(y), batch_size

    def __len__(self):
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(index)
        window = slice(index * self.batch_size, (index + 1) * self.batch_size)
        images = self.x[window]
        return (images, centred_params(len(images))), self.y[window]


class NormalizedImages(keras.utils.PyDataset):
    """Normalized float32 batches of uint8 `x`, in order, for a saved net's `predict`.

    Args:
        x: uint8 images (N, H, W, C).
        mean: Normalization mean.
        std: Normalization std.
        batch_size: Images per batch.
        flip: Mirror each image left-right (flip test-time augmentation).
    """

    def __init__(self, x, *, mean, std, batch_size, flip=False):
        super().__init__(workers=1, use_multiprocessing=False)
        self.x, self.mean, self.std = x, mean, std
        self.batch_size, self.flip = batch_size, flip

    def __len__(self):
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(index)
        images = self.x[index * self.batch_size:(index + 1) * self.batch_size]
        images = images[:, :, ::-1] if self.flip else images
        return (normalize(images, self.mean, self.std),)
