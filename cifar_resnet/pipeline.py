"""The tf.data input pipeline over in-memory images, and the paper's training augmentation.

He et al. 2015, section 4.2: "4 pixels are padded on each side, and a 32x32 crop is randomly
sampled from the padded image or its horizontal flip"; testing uses the original 32x32 image. The
arrays and their normalization statistics come from `datasets` (numpy only).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from cifar_resnet.datasets import PAD


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


def make_dataset(x, y, *, batch_size, mean, std, training, augment=True, seed=0,
                 drop_remainder=False, epochs=None) -> tf.data.Dataset:
    """Builds the input pipeline over in-memory uint8 images.

    Args:
        x: uint8 images (N, 32, 32, 3).
        y: int labels (N,).
        batch_size: Batch size.
        mean: Normalization mean, from `compute_normalization`.
        std: Normalization std, from `compute_normalization`.
        training: If True, reshuffle the whole set every epoch and augment; else keep the
            order and only normalize.
        augment: With `training`, whether to apply `augment_batch`.
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
        return (augment_batch(images, batch_seed) if augment else images,
                tf.gather(labels_all, indices))

    keys = (tf.data.Dataset.range(*epochs) if epochs is not None
            else tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1))
    ds = keys.flat_map(one_epoch).apply(  # flat_map hides the length Keras uses for epochs
        tf.data.experimental.assert_cardinality(num_batches * len(keys)))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
