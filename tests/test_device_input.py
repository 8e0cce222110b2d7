"""The backend-neutral input path (cifar_resnet/data/device_input.py).

Runs under any Keras backend, with or without TensorFlow (marked `notf`: `.ci/run` runs it in an
environment without TensorFlow too). The comparisons with the tf.data path skip there.
"""

import importlib.util

import keras
import numpy as np
import pytest

from cifar_resnet.data import device_input as di

pytestmark = pytest.mark.notf
HAS_TF = importlib.util.find_spec("tensorflow") is not None
needs_tf = pytest.mark.skipif(not HAS_TF, reason="compares with the tf.data path")


def _reference_crop(x, mean, std, params):
    """Numpy: normalize, zero-pad 4, crop at (top, left), flip: the paper's augmentation."""
    padded = np.pad(di.normalize(x, mean, std), [(0, 0), (4, 4), (4, 4), (0, 0)])
    return np.stack([padded[i, t:t + 32, l:l + 32][:, ::-1 if f else 1]
                     for i, (t, l, f) in enumerate(params)])


def _stats():
    rng = np.random.default_rng(1)
    return (rng.random((32, 32, 3)).astype(np.float32),
            rng.uniform(0.5, 2, (1, 1, 3)).astype(np.float32))


def test_device_augment_crops_and_flips_each_image_as_told():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)
    params = di.draw_params(rng, 24)
    params[:4] = [[0, 0, 0], [8, 8, 1], [0, 8, 1], [8, 0, 0]]  # the corners
    mean, std = _stats()
    layer = di.DeviceAugment(mean, std)
    out = keras.ops.convert_to_numpy(layer([x, params], training=True))
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_array_equal(out, _reference_crop(x, mean, std, params))
    # Outside training, and with centred parameters, it is the normalized image.
    plain = keras.ops.convert_to_numpy(layer([x, params], training=False))
    np.testing.assert_array_equal(plain, di.normalize(x, mean, std))
    centred = keras.ops.convert_to_numpy(layer([x, di.centred_params(24)], training=True))
    np.testing.assert_array_equal(centred, plain)


def test_draw_params_distribution():
    """Crop offsets uniform over 0..8 in each axis, independent flips at rate 1/2."""
    n = 90_000
    params = di.draw_params(np.random.default_rng(3), n)
    for axis in (0, 1):
        counts = np.bincount(params[:, axis], minlength=9)
        assert len(counts) == 9 and params[:, axis].min() == 0
        # Each count ~ Binomial(n, 1/9): sd ~ 94; 5 sd either side.
        assert np.all(np.abs(counts - n / 9) < 5 * np.sqrt(n / 9 * 8 / 9)), counts
    assert abs(params[:, 2].mean() - 0.5) < 5 * np.sqrt(0.25 / n)
    assert set(np.unique(params[:, 2])) == {0, 1}
    # The two offsets are drawn independently of each other.
    joint = np.bincount(params[:, 0] * 9 + params[:, 1], minlength=81)
    assert np.all(np.abs(joint - n / 81) < 5 * np.sqrt(n / 81))


@needs_tf
def test_same_distribution_mean_and_scale_as_the_tfdata_path():
    """The tf.data path's augment_batch, read back through position-coded images, draws from
    the same distribution; both paths normalize to the same numbers."""
    import tensorflow as tf
    from cifar_resnet.data import pipeline

    n = 20_000
    # Pixel (r, c) holds r * 32 + c in channel 0: the crop's first pixel tells offset and flip.
    code = (np.arange(32)[:, None] * 32 + np.arange(32)[None, :]).astype(np.float32) + 1
    images = np.broadcast_to(code[None, :, :, None], (n, 32, 32, 1))
    out = pipeline.augment_batch(tf.constant(images), tf.constant([7, 11], tf.int64)).numpy()[..., 0]

    def read(out):  # the source pixel of the crop's centre column pair gives top/left and flip
        src_a, src_b = out[:, 16, 16], out[:, 16, 17]
        flip = (src_b < src_a).astype(int)
        row = (src_a - 1) // 32
        col = (src_a - 1) % 32
        top = row - 16 + 4
        left = np.where(flip, col - (31 - 16) + 4, col - 16 + 4)
        return np.stack([top, left, flip], axis=1).astype(int)

    tf_params = read(out)
    ours = di.draw_params(np.random.default_rng(5), n)
    # The device layer casts its input to float32, so the codes go through unrounded.
    layer = di.DeviceAugment(np.zeros((32, 32, 1)), np.ones((1, 1, 1)))
    dev = np.rint(keras.ops.convert_to_numpy(layer([images, ours], training=True)) * 255)
    # Read back from the device layer too: the read-out itself is checked, not assumed.
    np.testing.assert_array_equal(read(dev[..., 0]), ours)
    for axis in range(3):
        ca = np.bincount(tf_params[:, axis]) / n
        cb = np.bincount(ours[:, axis]) / n
        assert len(ca) == len(cb) == (2 if axis == 2 else 9), (ca, cb)
        # Two samples of 20k: proportions agree within 5 sd of their difference.
        assert np.all(np.abs(ca - cb) < 5 * np.sqrt(2 * cb * (1 - cb) / n)), (ca, cb)

    # Same mean and scale: the tf.data path's evaluation batches are our normalized images.
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    y = np.arange(10)
    mean, std = _stats()
    batch = next(iter(pipeline.make_dataset(x, y, batch_size=10, mean=mean, std=std,
                                        training=False)))[0].numpy()
    np.testing.assert_array_equal(batch, di.normalize(x, mean, std))
    layer_out = keras.ops.convert_to_numpy(di.DeviceAugment(mean, std)([x, di.centred_params(10)]))
    np.testing.assert_array_equal(layer_out, batch)
    # And crop_and_flip, the tf.data path's kernel, crops as the device layer does.
    params = di.draw_params(rng, 10)
    tf_crop = pipeline.crop_and_flip(tf.constant(batch), params[:, 0], params[:, 1],
                                 params[:, 2].astype(bool)).numpy()
    dev_crop = keras.ops.convert_to_numpy(di.DeviceAugment(mean, std)([x, params], training=True))
    np.testing.assert_array_equal(dev_crop, tf_crop)


def _all(ds):
    return [ds[i] for i in range(len(ds))]


def test_train_batches_cover_each_pass_once_and_resume_identically():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (100, 32, 32, 3), dtype=np.uint8)
    y = np.arange(100) % 10
    # 3 passes of 4 batches (32, 32, 32, 4 images), as the tf.data path batches a pass.
    full = di.TrainBatches(x, y, batch_size=32, seed=7, start=0, stop=12)
    assert len(full) == 12 and full.per_pass == 4
    batches = _all(full)
    assert [len(b[1]) for b in batches] == [32, 32, 32, 4] * 3
    for p in range(3):
        seen = np.concatenate([b[1] * 1000 + b[0][0][:, 0, 0, 0] for b in batches[4 * p:4 * p + 4]])
        every = y * 1000 + x[:, 0, 0, 0]
        np.testing.assert_array_equal(np.sort(seen), np.sort(every))  # each image once a pass
    assert not np.array_equal(batches[0][0][0], batches[4][0][0])  # passes reshuffle
    assert not np.array_equal(batches[0][0][1], batches[4][0][1][:32])  # and redraw
    # A run resumed at batch 6 (inside the second pass) sees exactly the rest.
    resumed = _all(di.TrainBatches(x, y, batch_size=32, seed=7, start=6, stop=12))
    for a, b in zip(batches[6:], resumed, strict=True):
        for u, v in zip((a[0][0], a[0][1], a[1]), (b[0][0], b[0][1], b[1])):
            np.testing.assert_array_equal(u, v)
    other_seed = di.TrainBatches(x, y, batch_size=32, seed=8, start=0, stop=12)[0]
    assert not np.array_equal(other_seed[0][1], batches[0][0][1])
    plain = di.TrainBatches(x, y, batch_size=32, seed=7, start=0, stop=4, augment=False)[0]
    np.testing.assert_array_equal(plain[0][1], di.centred_params(32))
    with pytest.raises(IndexError):
        full[12]


def test_resolve_pipeline():
    expected = "tfdata" if keras.backend.backend() == "tensorflow" else "device"
    assert di.resolve_pipeline("auto") == expected
    assert di.resolve_pipeline("device") == "device"
    with pytest.raises(di.PipelineError, match="'gpu' is not one of 'auto', 'tfdata', 'device'"):
        di.resolve_pipeline("gpu")
    if not HAS_TF:
        with pytest.raises(di.PipelineError, match="needs TensorFlow"):
            di.resolve_pipeline("tfdata")


@pytest.mark.slow
def test_trainer_trains_the_net_and_saves_it_plain(tmp_path):
    from cifar_resnet.nets import models
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, 64)
    mean, std = _stats()
    net = models.build_model(1, 8)
    trainer = di.AugmentedTrainer(net, mean, std)
    assert trainer.name == net.name
    trainer.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy",
                    metrics=["accuracy"])
    before = [np.array(w) for w in net.trainable_weights]
    trainer.fit(di.TrainBatches(x, y, batch_size=32, seed=0, start=0, stop=2), epochs=1,
                verbose=0, shuffle=False)
    after = [keras.ops.convert_to_numpy(w) for w in net.trainable_weights]
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))
    assert len(trainer.trainable_weights) == len(net.trainable_weights)
    trainer.save(tmp_path / "net.keras")
    loaded = keras.saving.load_model(tmp_path / "net.keras")
    assert [tuple(t.shape) for t in loaded.inputs] == [(None, 32, 32, 3)]
    assert loaded.name == net.name and len(loaded.layers) == len(net.layers)
    # The saved net on normalized images predicts what the trainer predicts on uint8 ones.
    want = trainer.predict(di.EvalBatches(x, y, batch_size=32), verbose=0)
    got = loaded.predict(di.NormalizedImages(x, mean=mean, std=std, batch_size=32), verbose=0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    flipped = loaded.predict(di.NormalizedImages(x[:, :, ::-1], mean=mean, std=std,
                                                 batch_size=32), verbose=0)
    np.testing.assert_allclose(
        loaded.predict(di.NormalizedImages(x, mean=mean, std=std, batch_size=32, flip=True),
                       verbose=0), flipped, rtol=1e-6)
