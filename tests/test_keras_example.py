"""The keras-example preset as the Keras example really behaved (issue 12, item 4).

Augmentation: Keras 2's `ImageDataGenerator(width_shift_range=0.1, height_shift_range=0.1,
fill_mode='nearest', horizontal_flip=True)`. Learning rate: its `LearningRateScheduler` sets the
rate at every epoch start, after `ReduceLROnPlateau` cut it at the end of the epoch before, so the
plateau's cuts reach no batch.
"""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import optional
from cifar_resnet.spec import config as config_lib, schedules
from cifar_resnet.run import callbacks
from cifar_resnet.data import pipeline


def _ramp(axis, n=4096):
    """n images whose value is the row (axis 1) or column (axis 2) index, in every channel."""
    index = np.arange(32, dtype=np.float32)
    image = np.broadcast_to(index[:, None, None] if axis == 1 else index[None, :, None],
                            (32, 32, 3))
    return np.broadcast_to(image, (n, 32, 32, 3)).copy()


def test_shifts_are_continuous_and_uniform_within_3_2_pixels_per_axis():
    for axis in (1, 2):
        out = pipeline.shift_flip_batch(tf.constant(_ramp(axis)), tf.constant([3, axis])).numpy()
        # Bilinear resampling reproduces a ramp exactly away from the clamped edges: the value
        # at the centre minus its index is the shift of the sampled point.
        if axis == 1:
            shift = out[:, 15, 15, 0] - 15
        else:  # a mirrored image holds the shifted column 15 at column 16
            row = out[:, 15, :, 0]
            mirrored = row[:, 0] > row[:, -1]
            shift = np.where(mirrored, row[:, 16], row[:, 15]) - 15
        assert shift.min() >= -3.2 - 1e-5 and shift.max() <= 3.2 + 1e-5
        assert shift.min() < -3.1 and shift.max() > 3.1
        # Uniform: each of 8 equal bins holds 1/8 (4096 draws: sd of a bin's share 0.005).
        counts, _ = np.histogram(shift, bins=8, range=(-3.2, 3.2))
        np.testing.assert_allclose(counts / len(shift), 1 / 8, atol=0.025)
        # Continuous, not whole pixels: fractional parts spread over [0, 1).
        frac = np.mod(shift, 1.0)
        assert np.histogram(frac, bins=4, range=(0, 1))[0].min() > 0.2 * len(shift)
        assert abs(np.mean(shift)) < 0.1 and abs(np.var(shift) - 6.4**2 / 12) < 0.25


def test_a_half_pixel_shift_averages_neighbours_and_edges_repeat():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(1, 32, 32, 3)).astype(np.float32)
    no_flip = tf.constant([False])
    down = pipeline.shift_and_flip(image, tf.constant([[0.5, 0.0]]), no_flip).numpy()[0]
    np.testing.assert_allclose(down[:31], (image[0, :31] + image[0, 1:]) / 2, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(down[31], image[0, 31])  # beyond the last row: the last row
    left = pipeline.shift_and_flip(image, tf.constant([[0.0, -2.5]]), no_flip).numpy()[0]
    # Columns 0..2 sample -2.5, -1.5, -0.5: all clamp to column 0, the edge repeated.
    for j in range(3):
        np.testing.assert_allclose(left[:, j], image[0, :, 0], atol=1e-6)
    np.testing.assert_allclose(left[:, 3], (image[0, :, 0] + image[0, :, 1]) / 2, atol=1e-6)
    np.testing.assert_allclose(left[:, 31], (image[0, :, 28] + image[0, :, 29]) / 2, atol=1e-6)
    same = pipeline.shift_and_flip(image, tf.constant([[0.0, 0.0]]), no_flip).numpy()
    np.testing.assert_array_equal(same, image)
    mirrored = pipeline.shift_and_flip(image, tf.constant([[0.0, 0.0]]), tf.constant([True])).numpy()
    np.testing.assert_array_equal(mirrored, image[:, :, ::-1])


def test_matches_scipy_affine_transform_as_keras_2_called_it():
    ndimage = optional.importorskip("scipy.ndimage")
    rng = np.random.default_rng(1)
    images = rng.normal(size=(6, 32, 32, 3)).astype(np.float32)
    shifts = rng.uniform(-3.2, 3.2, size=(6, 2)).astype(np.float32)
    ours = pipeline.shift_and_flip(images, shifts, tf.constant([False] * 6)).numpy()
    for image, (tx, ty), got in zip(images, shifts, ours):
        # keras-preprocessing 1.0.x apply_affine_transform: per channel, identity matrix,
        # offset (tx, ty), order=1, mode='nearest'.
        want = np.stack([ndimage.affine_transform(image[..., c].astype(np.float64), np.eye(2),
                                                  (tx, ty), order=1, mode="nearest")
                         for c in range(3)], axis=-1)
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_flip_rate_is_one_half():
    images = tf.constant(_ramp(2))
    out = pipeline.shift_flip_batch(images, tf.constant([5, 6])).numpy()
    flipped = out[:, 0, 0, 0] > out[:, 0, -1, 0]
    assert abs(flipped.mean() - 0.5) < 0.03  # 4096 draws: sd 0.008


def test_the_preset_selects_shift_flip_and_the_pipeline_uses_it():
    config = config_lib.resolve(overrides={"preset": "keras-example"})
    assert config.augmentation == "shift_flip" and not config.plateau_survives_schedule
    assert config_lib.resolve().augmentation == "crop_flip"
    x = np.repeat(np.arange(32, dtype=np.uint8)[None, None, :, None], 3, -1)
    x = np.broadcast_to(x, (64, 32, 32, 3)).copy()
    mean, std = np.zeros((1, 1, 3), np.float32), np.ones((1, 1, 3), np.float32) / 255
    kw = dict(batch_size=64, mean=mean, std=std, training=True, epochs=(0, 1))
    shifted = next(iter(pipeline.make_dataset(x, np.zeros(64), augmentation="shift_flip", **kw)))[0]
    cropped = next(iter(pipeline.make_dataset(x, np.zeros(64), **kw)))[0]
    fractional = lambda b: np.any(np.abs(b - np.round(b)) > 1e-3)
    assert fractional(shifted.numpy()) and not fractional(cropped.numpy())


class _Plateau(keras.callbacks.Callback):
    """A val_loss that never improves: the same value at every epoch's end."""

    def on_epoch_end(self, epoch, logs=None):
        logs["val_loss"] = 1.0


class _BatchRates(keras.callbacks.Callback):
    """The learning rate each batch trained with, per epoch."""

    def __init__(self):
        super().__init__()
        self.rates = []

    def on_epoch_begin(self, epoch, logs=None):
        self.rates.append([])

    def on_train_batch_end(self, batch, logs=None):
        self.rates[-1].append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))


def _fit(lr_callbacks, epochs=6, steps=3):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(keras.optimizers.Adam(1e-3), loss="mse")
    rates = _BatchRates()
    x, y = np.ones((steps * 2, 4)), np.zeros((steps * 2, 2))
    model.fit(x, y, batch_size=2, epochs=epochs, verbose=0, shuffle=False,
              callbacks=[_Plateau(), *lr_callbacks, rates])
    return rates.rates


def _example_schedule(epoch):
    """The shape of the example's lr_schedule at a scale of 6 epochs: 1e-3, /10 after epoch 2,
    /100 after epoch 4 (its `epoch > 80`, `epoch > 120` ...)."""
    return 1e-3 * (1e-2 if epoch > 4 else 1e-1 if epoch > 2 else 1)


def test_plateau_cuts_reach_no_batch_as_in_the_example():
    # The example: callbacks=[checkpoint, ReduceLROnPlateau(...), LearningRateScheduler(...)],
    # here with Keras's own callbacks (their semantics are Keras 2's: the scheduler's
    # one-argument function is called as schedule(epoch) and overwrites the rate).
    reducer = dict(monitor="val_loss", factor=math.sqrt(0.1), patience=1, min_lr=0.5e-6)
    example = _fit([keras.callbacks.ReduceLROnPlateau(**reducer),
                    keras.callbacks.LearningRateScheduler(_example_schedule)])
    expected = [[_example_schedule(e)] * 3 for e in range(6)]
    np.testing.assert_allclose(example, expected, rtol=1e-6)
    # The preset's callbacks: the iteration-based schedule (3 steps per epoch, drops after
    # epochs 3 and 5 = at 3/6 and 5/6 of the 18 iterations), plateau_survives_schedule=False.
    config = config_lib.resolve(overrides=dict(preset="keras-example", epochs=6, plateau_patience=1,
                                               lr_milestones=(0.5, 5 / 6), lr_factors=(0.1, 0.01)))
    lr_fn = schedules.learning_rate(config, 18)
    ours = _fit(callbacks.lr_callbacks(config, lr_fn, monitor="val_loss"))
    np.testing.assert_allclose(ours, expected, rtol=1e-6)
    # The plateau did fire: kept as a multiplier (the paper preset's rule), it would compound.
    kept = _fit(callbacks.lr_callbacks(
        config_lib.resolve(overrides=dict(preset="keras-example", epochs=6, plateau_patience=1,
                                          lr_milestones=(0.5, 5 / 6), lr_factors=(0.1, 0.01),
                                          plateau_survives_schedule=True)),
        lr_fn, monitor="val_loss"))
    # First cut at the end of epoch 1 (epoch 0 sets the best value), one more per epoch.
    np.testing.assert_allclose(kept[:2], expected[:2], rtol=1e-6)
    np.testing.assert_allclose(kept[2], np.multiply(expected[2], math.sqrt(0.1)), rtol=1e-5)
    np.testing.assert_allclose(kept[3], np.multiply(expected[3], 0.1), rtol=1e-5)


def test_augmentation_names_are_one_list_and_a_bad_one_is_one_line():
    assert tuple(pipeline.AUGMENTATIONS) == config_lib.AUGMENTATIONS
    with pytest.raises(config_lib.ConfigError,
                       match=r"augmentation 'rotate' is not one of 'crop_flip', 'shift_flip'"):
        config_lib.resolve(overrides={"augmentation": "rotate"})


def test_a_resumed_run_starts_from_the_schedule_not_from_a_cut_rate():
    # A restored optimizer whose rate a plateau had cut: without keep_reductions the rate of
    # the next batch is the schedule's again.
    schedule = callbacks.StepSchedule(lambda step: 1e-3 if step < 4 else 1e-4,
                                      keep_reductions=False)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(keras.optimizers.Adam(1e-3), loss="mse")
    model.optimizer.iterations.assign(4)
    model.optimizer.learning_rate = 1e-5  # cut
    rates = _BatchRates()
    model.fit(np.ones((4, 4)), np.zeros((4, 2)), batch_size=2, epochs=1, verbose=0,
              callbacks=[schedule, rates])
    np.testing.assert_allclose(rates.rates, [[1e-4, 1e-4]], rtol=1e-6)


@pytest.mark.slow
def test_the_runner_trains_the_keras_example_preset(tmp_path):
    from cifar_resnet.run import train
    config = config_lib.resolve(overrides=dict(
        preset="keras-example", dataset="synthetic", depth=8, epochs=1, batch_size=64,
        synthetic_train=256, synthetic_test=128, plateau_patience=0))
    metrics = train.run_experiment(config, tmp_path, verbose=0)
    assert metrics["status"] == "complete" and (tmp_path / "best.keras").exists()
    saved = config_lib.load(tmp_path / "config.json")
    assert (saved.augmentation, saved.plateau_survives_schedule) == ("shift_flip", False)
