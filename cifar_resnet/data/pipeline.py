"""The tf.data input pipeline over in-memory images, and the paper's training augmentation.

He et al. 2015, section 4.2: "4 pixels are padded on each side, and a 32x32 crop is randomly
sampled from the padded image or its horizontal flip"; testing uses the original 32x32 image. The
arrays and their normalization statistics come from `datasets` (numpy only).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from cifar_resnet.spec.choices import check_choice
from cifar_resnet.spec.datasets import PAD


def crop_and_flip(images, offsets_y, offsets_x, flips):
    """Zero-pads a batch by `PAD` pixels per side, crops one window per image, flips some.

    Args:
        images: (B, H, W, C) batch.
        offsets_y: (B,) ints in [0, 2 * PAD], top row of each crop in the padded image.
        offsets_x: (B,) ints in [0, 2 * PAD], left column of each crop. Offsets (PAD, PAD)
            without a flip give back the image.
        flips: (B,) bools; mirror the crop left-right.

    Returns:
        The (B, H, W, C) crops, with the dtype of `images`.
    """
    images = tf.convert_to_tensor(images)
    height, width = images.shape[1], images.shape[2]
    padded = tf.pad(images, [[0, 0], [PAD, PAD], [PAD, PAD], [0, 0]])
    rows = tf.cast(offsets_y, tf.int32)[:, None] + tf.range(height)
    cols = tf.where(tf.convert_to_tensor(flips)[:, None], tf.range(width - 1, -1, -1),
                    tf.range(width))
    cols = tf.cast(offsets_x, tf.int32)[:, None] + cols
    # batch_dims=1 gives each image its own window in one op (tf.image.random_crop shares one).
    return tf.gather(tf.gather(padded, rows, axis=1, batch_dims=1), cols, axis=2, batch_dims=1)


def augment_batch(images, seed=None):
    """He et al. 2015 sec 4.2 training augmentation of a normalized float32 batch.

    Pads 4 zero pixels on each side (after normalization, so the padding is the mean image, as in
    fb.resnet.torch), crops 32x32 at an independent uniform offset per image and flips each image
    left-right with probability 1/2.

    Args:
        images: float32 (B, 32, 32, 3) normalized batch.
        seed: None for stateful random ops, or a shape-(2,) int tensor for stateless ones.

    Returns:
        The augmented float32 (B, 32, 32, 3) batch.
    """
    batch = tf.shape(images)[0]
    if seed is None:
        offsets = tf.random.uniform([2, batch], 0, 2 * PAD + 1, tf.int32)
        flips = tf.random.uniform([batch]) < 0.5
    else:
        seed_offsets, seed_flips = tf.unstack(tf.random.split(seed, 2))
        offsets = tf.random.stateless_uniform([2, batch], seed_offsets, 0, 2 * PAD + 1, tf.int32)
        flips = tf.random.stateless_uniform([batch], seed_flips) < 0.5
    return crop_and_flip(images, offsets[0], offsets[1], flips)


# The Keras example's ImageDataGenerator(width_shift_range=0.1, height_shift_range=0.1): each axis
# is shifted by up to this fraction of the image size (32 pixels: +-3.2).
SHIFT_RANGE = 0.1


def _shift_axis(images, offsets, axis):
    """Samples `images` at `index + offset` along `axis` (1: rows, 2: columns), bilinearly,
    with coordinates clamped to the image: edge pixels repeat ('nearest')."""
    size = images.shape[axis]
    pos = tf.clip_by_value(tf.range(size, dtype=tf.float32)[None, :] + offsets[:, None],
                           0.0, size - 1.0)  # (B, size)
    low = tf.floor(pos)
    weight = pos - low
    low = tf.cast(low, tf.int32)
    high = tf.minimum(low + 1, size - 1)
    a = tf.gather(images, low, axis=axis, batch_dims=1)
    b = tf.gather(images, high, axis=axis, batch_dims=1)
    weight = weight[:, :, None, None] if axis == 1 else weight[:, None, :, None]
    return a + (b - a) * tf.cast(weight, images.dtype)


def shift_and_flip(images, shifts, flips):
    """Translates each image by a fractional shift, bilinearly, edge pixels repeated; flips some.

    Keras 2's `ImageDataGenerator` (keras-preprocessing 1.0-1.1 `apply_affine_transform`):
    `scipy.ndimage.affine_transform(x, identity, offset=(tx, ty), order=1, mode='nearest')` per
    channel, that is output[i, j] = input(i + tx, j + ty), linear interpolation between the
    four neighbours, and a coordinate outside the image takes the nearest edge pixel's value.
    A translation is separable, so this resamples rows, then columns.

    Args:
        images: float (B, H, W, C) batch.
        shifts: float (B, 2): (row, column) offset of the sampled point, in pixels; positive
            moves the content up / left.
        flips: (B,) bools; mirror the result left-right (after the shift, as Keras did).

    Returns:
        The (B, H, W, C) batch.
    """
    images = tf.convert_to_tensor(images)
    shifts = tf.cast(shifts, tf.float32)
    out = _shift_axis(_shift_axis(images, shifts[:, 0], 1), shifts[:, 1], 2)
    return tf.where(tf.convert_to_tensor(flips)[:, None, None, None], tf.reverse(out, [2]), out)


def shift_flip_batch(images, seed=None):
    """The Keras example's training augmentation of a normalized float32 batch.

    `ImageDataGenerator(width_shift_range=0.1, height_shift_range=0.1, fill_mode='nearest',
    horizontal_flip=True)`: a shift drawn uniformly in [-3.2, 3.2] pixels per axis (continuous:
    `np.random.uniform(-0.1, 0.1) * 32`), and a left-right flip with probability 1/2, on the
    mean-subtracted image (the example subtracts the pixel mean before the generator).

    Args:
        images: float32 (B, H, W, C) normalized batch.
        seed: None for stateful random ops, or a shape-(2,) int tensor for stateless ones.
    """
    batch = tf.shape(images)[0]
    limit = SHIFT_RANGE * tf.constant([images.shape[1], images.shape[2]], tf.float32)
    if seed is None:
        unit = tf.random.uniform([batch, 2], -1.0, 1.0)
        flips = tf.random.uniform([batch]) < 0.5
    else:
        seed_shifts, seed_flips = tf.unstack(tf.random.split(seed, 2))
        unit = tf.random.stateless_uniform([batch, 2], seed_shifts, -1.0, 1.0)
        flips = tf.random.stateless_uniform([batch], seed_flips) < 0.5
    return shift_and_flip(images, unit * limit, flips)


# The config's `augmentation` names (config.AUGMENTATIONS) -> batch augmentation functions.
AUGMENTATIONS = {"crop_flip": augment_batch, "shift_flip": shift_flip_batch}


def make_dataset(x, y, *, batch_size, mean, std, training, augment=True, seed=0,
                 drop_remainder=False, epochs=None, augmentation="crop_flip") -> tf.data.Dataset:
    """Builds the input pipeline over in-memory uint8 images.

    Args:
        x: uint8 images (N, 32, 32, 3).
        y: int labels (N,).
        batch_size: Batch size.
        mean: Normalization mean, from `compute_normalization`.
        std: Normalization std, from `compute_normalization`.
        training: If True, reshuffle the whole set every epoch and augment; else keep the
            order and only normalize.
        augment: With `training`, whether to augment.
        augmentation: A key of `AUGMENTATIONS`: "crop_flip" (`augment_batch`, the paper's) or
            "shift_flip" (`shift_flip_batch`, the Keras example's).
        seed: Seed of the shuffle and augmentation: epochs differ, the sequence of epochs is
            reproducible.
        drop_remainder: Whether to drop the last incomplete batch.
        epochs: With `training`, `(first, stop)`: one dataset holding epochs first..stop-1 in
            turn, each shuffled and augmented as a pure function of `(seed, epoch)`, so a run
            resumed at epoch `first` sees exactly the batches of an uninterrupted one. None:
            one epoch per iteration over the dataset, a new one each time.

    Returns:
        A dataset of `(float32 (B, 32, 32, 3) images, int64 (B,) labels)`.
    """
    check_choice("augmentation", augmentation, AUGMENTATIONS)
    std = np.asarray(std, np.float32)
    scale = tf.constant(1 / (255 * std))
    shift = tf.constant(np.asarray(mean, np.float32) / std)

    def normalize(images):
        return tf.cast(images, tf.float32) * scale - shift

    if not training:
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size, drop_remainder)
        return ds.map(lambda images, labels: (normalize(images), labels),
                      num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    images_all, labels_all = tf.constant(x), tf.constant(y)
    num_batches = len(x) // batch_size if drop_remainder else -(-len(x) // batch_size)

    def one_epoch(key):
        # Stateless draws keyed by the epoch: no RNG state lives in the iterator, so none is
        # lost when a run is killed and resumed.
        epoch_seed = tf.random.experimental.stateless_fold_in(
            tf.constant([seed, 0], tf.int64), key)
        order_seed, batch_seed = tf.unstack(tf.random.split(epoch_seed, 2))
        order = tf.random.experimental.stateless_shuffle(tf.range(len(x), dtype=tf.int64),
                                                         order_seed)
        return tf.data.Dataset.zip(
            tf.data.Dataset.from_tensor_slices(order).batch(batch_size, drop_remainder),
            tf.data.Dataset.from_tensor_slices(tf.random.split(batch_seed, num_batches)))

    def load(indices, batch_seed):
        images = normalize(tf.gather(images_all, indices))
        return (AUGMENTATIONS[augmentation](images, batch_seed) if augment else images,
                tf.gather(labels_all, indices))

    keys = (tf.data.Dataset.range(*epochs) if epochs is not None
            else tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1))
    ds = keys.flat_map(one_epoch).apply(  # flat_map hides the length Keras uses for epochs
        tf.data.experimental.assert_cardinality(num_batches * len(keys)))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
