"""Tests of cifar_resnet.data: file formats, resolution order, augmentation, statistics."""

from __future__ import annotations

import io
import os
import pathlib
import pickle
import tarfile
import time

import numpy as np
import pytest

from cifar_resnet.data import pipeline
from cifar_resnet.spec import datasets

PER_BATCH = 4  # Images per tiny batch file.


def _write_batch(path, images_nchw, labels):
    path.write_bytes(pickle.dumps({b"data": images_nchw.reshape(len(labels), -1),
                                   b"labels": list(labels), b"batch_label": b"tiny",
                                   b"filenames": [b"x.png"] * len(labels)}))


def _write_tiny_cifar(root: pathlib.Path, seed=0):
    """Writes the official layout with PER_BATCH images per file, plus its tar.gz; returns both."""
    rng = np.random.default_rng(seed)
    folder = root / datasets.FOLDER_NAME
    folder.mkdir(parents=True)
    for name in (*datasets.TRAIN_FILES, datasets.TEST_FILE):
        images = rng.integers(0, 256, (PER_BATCH, 3, 32, 32), dtype=np.uint8)
        _write_batch(folder / name, images, rng.integers(0, 10, PER_BATCH))
    archive = root / datasets.ARCHIVE_NAME
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=datasets.FOLDER_NAME)
    return folder, archive



def test_folder_and_archive_load_identically_in_nhwc(tmp_path):
    folder, archive = _write_tiny_cifar(tmp_path)
    # A known value in the G plane (c=1) at row 5, column 7 of the first test image.
    test = pickle.loads((folder / datasets.TEST_FILE).read_bytes())
    test[b"data"][0] = 0
    test[b"data"][0, 1 * 1024 + 5 * 32 + 7] = 200
    (folder / datasets.TEST_FILE).write_bytes(pickle.dumps(test))
    archive.unlink()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=datasets.FOLDER_NAME)

    from_folder = datasets.load_cifar10(folder, download=False)
    from_archive = datasets.load_cifar10(archive, download=False)
    from_parent = datasets.load_cifar10(tmp_path, download=False)
    (x_train, y_train), (x_test, y_test) = from_folder
    assert x_train.shape == (5 * PER_BATCH, 32, 32, 3) and x_train.dtype == np.uint8
    assert y_train.shape == (5 * PER_BATCH,) and y_train.dtype == np.int64
    assert x_test.shape == (PER_BATCH, 32, 32, 3)
    for other in (from_archive, from_parent):
        for a, b in zip(from_folder, other):
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1], b[1])
    assert x_test[0, 5, 7, 1] == 200 and x_test[0].sum() == 200
    first = pickle.loads((folder / "data_batch_1").read_bytes())
    np.testing.assert_array_equal(x_train[:PER_BATCH],
                                  first[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(y_train[:PER_BATCH], first[b"labels"])


def test_resolution_order(no_env, monkeypatch):
    arg, _ = _write_tiny_cifar(no_env / "arg")
    env, _ = _write_tiny_cifar(no_env / "env")
    cache = no_env / "home" / ".keras" / "datasets"
    _, cache_archive = _write_tiny_cifar(cache)
    (cache / datasets.FOLDER_NAME).rename(cache / "unused")  # Leave only the archive in the cache.

    assert datasets.find_cifar10(download=False) == cache_archive
    monkeypatch.setenv("CIFAR10_DIR", str(no_env / "env"))
    assert datasets.find_cifar10(download=False) == env
    assert datasets.find_cifar10(no_env / "arg", download=False) == arg
    monkeypatch.setenv("KERAS_HOME", str(no_env / "elsewhere"))
    monkeypatch.delenv("CIFAR10_DIR")
    with pytest.raises(datasets.DataError, match="Keras cache"):
        datasets.find_cifar10(download=False)


def test_nothing_found_names_places_and_fix(no_env, monkeypatch):
    with pytest.raises(datasets.DataError) as error:
        datasets.load_cifar10(download=False)
    message = str(error.value)
    assert "\n" not in message
    assert str(no_env / "home" / ".keras" / "datasets") in message
    assert "--data-dir" in message and "CIFAR10_DIR" in message
    # An explicit place that holds nothing is an error, never a fall-back or a download.
    with pytest.raises(datasets.DataError, match=str(no_env / "nowhere")):
        datasets.find_cifar10(no_env / "nowhere")
    monkeypatch.setenv("CIFAR10_DIR", str(no_env))
    with pytest.raises(datasets.DataError, match="CIFAR10_DIR"):
        datasets.find_cifar10()


def test_failed_download_is_one_line_data_error(no_env, monkeypatch):
    from cifar_resnet.spec import datasets

    def offline(*args, **kwargs):
        raise OSError("URL fetch failure on https://...: None -- [Errno -3]\nno network")

    monkeypatch.setattr(datasets, "_download", offline)
    with pytest.raises(datasets.DataError, match="network") as error:
        datasets.find_cifar10()
    assert "\n" not in str(error.value) and "--data-dir" in str(error.value)


@pytest.mark.parametrize("batch, problem", [
    ([1, 2, 3], "dict"),
    ({b"data": np.zeros((4, 3000), np.uint8), b"labels": [0] * 4}, "3072"),
    ({b"data": np.zeros((4, 3072), np.float32), b"labels": [0] * 4}, "uint8"),
    ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2]}, "4 ints"),
    ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 10]}, "0..9"),
    ({b"labels": [0] * 4}, "b'data'"),
])
def test_malformed_batch_names_the_file(tmp_path, batch, problem):
    folder, _ = _write_tiny_cifar(tmp_path)
    (folder / "data_batch_3").write_bytes(pickle.dumps(batch))
    with pytest.raises(datasets.DataError, match="data_batch_3") as error:
        datasets.load_cifar10(folder, download=False)
    assert problem in str(error.value)


def test_truncated_or_missing_files(tmp_path):
    folder, archive = _write_tiny_cifar(tmp_path)
    archive.write_bytes(archive.read_bytes()[:200])
    with pytest.raises(datasets.DataError, match=str(archive)):
        datasets.load_cifar10(archive, download=False)
    (folder / "test_batch").write_bytes(b"\x80\x04garbage")
    with pytest.raises(datasets.DataError, match="test_batch"):
        datasets.load_cifar10(folder, download=False)
    (folder / "test_batch").unlink()
    with pytest.raises(datasets.DataError, match="missing test_batch"):
        datasets.load_cifar10(folder, download=False)


def test_crop_and_flip_exact_pixels():
    images = np.arange(2 * 32 * 32 * 3, dtype=np.float32).reshape(2, 32, 32, 3) + 1
    identity = pipeline.crop_and_flip(images, [4, 4], [4, 4], [False, False]).numpy()
    np.testing.assert_array_equal(identity, images)
    flipped = pipeline.crop_and_flip(images, [4, 4], [4, 4], [True, False]).numpy()
    np.testing.assert_array_equal(flipped[0], images[0, :, ::-1])
    np.testing.assert_array_equal(flipped[1], images[1])

    out = pipeline.crop_and_flip(images, [0, 8], [2, 7], [False, True]).numpy()
    # Image 0 moves down 4 and right 2: zero padding enters at the top and left.
    np.testing.assert_array_equal(out[0, 4:, 2:], images[0, :28, :30])
    assert not out[0, :4].any() and not out[0, :, :2].any()
    # Image 1 moves up 4 and left 3, then is mirrored.
    expected = np.zeros_like(images[1])
    expected[:28, :29] = images[1, 4:, 3:]
    np.testing.assert_array_equal(out[1], expected[:, ::-1])


def test_augment_batch_draws_per_image_offsets():
    image = np.arange(32 * 32 * 3, dtype=np.float32).reshape(32, 32, 3) + 1
    batch = np.repeat(image[None], 256, axis=0)
    out = pipeline.augment_batch(batch, seed=np.array([1, 2])).numpy()
    assert out.shape == (256, 32, 32, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out, pipeline.augment_batch(batch, seed=np.array([1, 2])).numpy())
    # Recover (offset_y, offset_x, flip) of every output among the 162 possible crops.
    grid = [(oy, ox, f) for oy in range(9) for ox in range(9) for f in (False, True)]
    candidates = pipeline.crop_and_flip(np.repeat(image[None], len(grid), 0), *map(list, zip(*grid)))
    candidates = candidates.numpy().reshape(len(grid), -1)
    match = (out.reshape(256, 1, -1) == candidates[None]).all(-1)
    assert (match.sum(1) == 1).all()  # Every output is exactly one legal crop.
    drawn = np.array(grid)[match.argmax(1)]
    assert len({tuple(d) for d in drawn}) > 80  # ~155 distinct expected; one shared offset gives 1.
    assert set(drawn[:, 0]) == set(range(9)) and set(drawn[:, 1]) == set(range(9))
    assert 0.35 < drawn[:, 2].mean() < 0.65
    assert pipeline.augment_batch(batch).shape == (256, 32, 32, 3)  # Stateful (seed=None) path.


def test_normalization_uses_training_images_only(tmp_path):
    folder, _ = _write_tiny_cifar(tmp_path)
    splits = datasets.load_dataset("cifar10", folder, val_fraction=4 / (5 * PER_BATCH))
    x_train = splits.train[0]
    assert len(x_train) == 5 * PER_BATCH - 4
    np.testing.assert_allclose(splits.mean, x_train.mean(0) / 255, rtol=1e-6)
    assert splits.mean.shape == (32, 32, 3) and splits.mean.dtype == np.float32
    assert (splits.std == 1).all()
    # Neither test nor validation images enter: changing them leaves the statistics unchanged.
    _write_batch(folder / datasets.TEST_FILE, np.full((PER_BATCH, 3, 32, 32), 255, np.uint8),
                 [0] * PER_BATCH)
    last = pickle.loads((folder / "data_batch_5").read_bytes())
    _write_batch(folder / "data_batch_5", last[b"data"] // 2 + 128, last[b"labels"])
    for mode in datasets.NORMALIZATIONS:
        before = datasets.compute_normalization(x_train, mode)
        after = datasets.load_dataset("cifar10", folder, val_fraction=4 / (5 * PER_BATCH),
                                  normalization=mode)
        assert after.test[0].min() == 255
        np.testing.assert_array_equal(before[0], after.mean)
        np.testing.assert_array_equal(before[1], after.std)
    channel_mean, channel_std = datasets.compute_normalization(x_train, "channel_std")
    pixels = x_train.reshape(-1, 3) / 255
    np.testing.assert_allclose(channel_mean.ravel(), pixels.mean(0), rtol=1e-5)
    np.testing.assert_allclose(channel_std.ravel(), pixels.std(0), rtol=1e-5)
    none_mean, none_std = datasets.compute_normalization(x_train, "none")
    assert not none_mean.any() and (none_std == 1).all()
    with pytest.raises(ValueError, match="pixel_mean"):
        datasets.compute_normalization(x_train, "zca")


def test_synthetic_is_deterministic_balanced_and_learnable():
    (x_train, y_train), (x_test, y_test) = datasets.make_synthetic(1000, 500, seed=3)
    again = datasets.make_synthetic(1000, 500, seed=3)
    np.testing.assert_array_equal(x_train, again[0][0])
    np.testing.assert_array_equal(y_test, again[1][1])
    assert not np.array_equal(x_train, datasets.make_synthetic(1000, 500, seed=4)[0][0])
    assert x_train.shape == (1000, 32, 32, 3) and x_train.dtype == np.uint8
    assert y_train.dtype == np.int64
    assert (np.bincount(y_train) == 100).all() and (np.bincount(y_test) == 50).all()
    assert x_train.std() > 20  # Not a constant image.
    # A nearest-class-mean classifier on raw pixels is far above chance (10%).
    means = np.stack([x_train[y_train == c].reshape(-1, 3072).mean(0) for c in range(10)])
    flat = x_test.reshape(len(x_test), -1).astype(np.float64)
    distances = (flat**2).sum(1)[:, None] - 2 * flat @ means.T + (means**2).sum(1)
    assert (distances.argmin(1) == y_test).mean() > 0.5


def test_make_dataset_batches():
    (x, y), _ = datasets.make_synthetic(100, 10)
    mean, std = datasets.compute_normalization(x)
    test_ds = pipeline.make_dataset(x, y, batch_size=32, mean=mean, std=std, training=False)
    batches = list(test_ds.as_numpy_iterator())
    assert [len(b[1]) for b in batches] == [32, 32, 32, 4]
    images = np.concatenate([b[0] for b in batches])
    assert images.dtype == np.float32 and images.shape == (100, 32, 32, 3)
    np.testing.assert_allclose(images, x / 255 - mean, atol=1e-6)  # Same order, no augmentation.
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y)
    assert np.issubdtype(batches[0][1].dtype, np.integer)
    again = np.concatenate([b[0] for b in test_ds.as_numpy_iterator()])
    np.testing.assert_array_equal(images, again)

    train_ds = pipeline.make_dataset(x, y, batch_size=32, mean=mean, std=std, training=True,
                                 drop_remainder=True, seed=1)
    epoch1, epoch2 = ([b for b in train_ds.as_numpy_iterator()] for _ in range(2))
    assert [b[0].shape for b in epoch1] == [(32, 32, 32, 3)] * 3
    labels1 = np.concatenate([b[1] for b in epoch1])
    assert not np.array_equal(labels1, np.concatenate([b[1] for b in epoch2]))  # Reshuffled.
    full = list(pipeline.make_dataset(x, y, batch_size=100, mean=mean, std=std, training=True,
                                  seed=1).as_numpy_iterator())
    np.testing.assert_array_equal(np.sort(full[0][1]), np.sort(y))  # A permutation of the set.
    same_seed = list(pipeline.make_dataset(x, y, batch_size=100, mean=mean, std=std, training=True,
                                       seed=1).as_numpy_iterator())
    np.testing.assert_array_equal(full[0][0], same_seed[0][0])  # Reproducible for a seed.


def test_split_validation():
    x, y = np.arange(100).reshape(100, 1), np.arange(100)
    (x_tr, y_tr), (x_val, y_val) = datasets.split_validation(x, y, val_size=10)
    assert len(x_tr) == 90 and len(x_val) == 10
    np.testing.assert_array_equal(y_val, np.arange(90, 100))  # The last images.
    assert datasets.split_validation(x, y, val_size=0) == ((x, y), None)
    for bad in (-1, 100, 500):
        with pytest.raises(datasets.DataError, match="val_size"):
            datasets.split_validation(x, y, val_size=bad)


def test_load_dataset_synthetic_and_errors():
    splits = datasets.load_dataset("synthetic", val_fraction=0.1, synthetic_size=(200, 50))
    assert len(splits.train[0]) == 180 and len(splits.val[0]) == 20 and len(splits.test[0]) == 50
    assert splits.num_classes == 10
    assert datasets.load_dataset("synthetic", val_fraction=0, synthetic_size=(200, 50)).val is None
    assert len(datasets.load_dataset("synthetic", synthetic_size=(200, 50),
                                 val_fraction=0.25).val[0]) == 50
    with pytest.raises(ValueError, match="cifar10"):
        datasets.load_dataset("imagenet", val_fraction=0)
    with pytest.raises(ValueError, match="channel_std"):
        datasets.load_dataset("synthetic", val_fraction=0, normalization="zca")


def test_real_cifar10(real_data):
    start = time.perf_counter()
    (x_train, y_train), (x_test, y_test) = datasets.load_cifar10(real_data, download=False)
    seconds = time.perf_counter() - start
    print(f"load_cifar10 from {real_data.name}: {seconds:.1f} s")
    assert x_train.shape == (50000, 32, 32, 3) and x_test.shape == (10000, 32, 32, 3)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.int64
    assert (np.bincount(y_train, minlength=10) == 5000).all()
    assert (np.bincount(y_test, minlength=10) == 1000).all()
    assert seconds < 30


# ---------------------------------------------------------------------------------------------
# Hostile data files (docs/reliability.md, case 3): data files never run code; archives stay
# inside; downloads are verified; full-size batches hold every class.


def _tiny_batch(n=4, labels=None):
    return {b"data": np.zeros((n, 3072), np.uint8),
            b"labels": list(range(n)) if labels is None else labels}


def _folder(tmp_path, **replace):
    folder = tmp_path / datasets.FOLDER_NAME
    folder.mkdir()
    for name in (*datasets.TRAIN_FILES, datasets.TEST_FILE):
        (folder / name).write_bytes(replace.get(name, pickle.dumps(_tiny_batch())))
    return folder


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_with_code_is_refused_and_never_run(tmp_path):
    evil = _Evil()
    evil.marker = tmp_path / "pwned"
    folder = _folder(tmp_path, data_batch_2=pickle.dumps({b"data": evil, b"labels": [0]}))
    with pytest.raises(datasets.DataError, match="data_batch_2: refused to unpickle global") as e:
        datasets.load_cifar10(folder, download=False)
    assert "system" in str(e.value) and "\n" not in str(e.value)
    assert not evil.marker.exists()
    # The same structure without code loads (the real files: test_data.py::test_real_cifar10).
    (folder / "data_batch_2").write_bytes(pickle.dumps(_tiny_batch()))
    assert len(datasets.load_cifar10(folder, download=False)[0][0]) == 20


@pytest.mark.parametrize("kind, problem", [
    ("absolute", "an absolute path"), ("dotdot", "a '..' path"), ("symlink", "a link"),
    ("hardlink", "a link")])
def test_archive_members_outside_the_folder_or_links_are_refused(kind, problem, tmp_path):
    archive = tmp_path / datasets.ARCHIVE_NAME
    batch = pickle.dumps(_tiny_batch())
    with tarfile.open(archive, "w:gz") as tar:
        for name in (*datasets.TRAIN_FILES, datasets.TEST_FILE):
            info = tarfile.TarInfo(f"{datasets.FOLDER_NAME}/{name}")
            if name == "data_batch_4":
                info.name = {"absolute": f"/tmp/{name}", "dotdot": f"../{name}"}.get(kind,
                                                                                   info.name)
                if kind in ("symlink", "hardlink"):
                    info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
                    info.linkname = "/etc/passwd"
                    tar.addfile(info)
                    continue
            info.size = len(batch)
            tar.addfile(info, io.BytesIO(batch))
    with pytest.raises(datasets.DataError, match=f"refusing archive member .*data_batch_4.*{problem}"):
        datasets.load_cifar10(archive, download=False)


def test_download_with_a_wrong_checksum_is_refused_and_kept_aside(tmp_path, monkeypatch):
    monkeypatch.delenv("CIFAR10_DIR", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))

    from cifar_resnet.spec import datasets

    def fake_download(url, part):
        part.parent.mkdir(parents=True, exist_ok=True)
        part.write_bytes(b"not the CIFAR-10 archive")

    monkeypatch.setattr(datasets, "_download", fake_download)
    cache = tmp_path / "keras" / "datasets"
    with pytest.raises(datasets.DataError, match="not the official .* refused it and kept it as"):
        datasets.find_cifar10()
    assert (cache / (datasets.ARCHIVE_NAME + ".bad")).read_bytes() == b"not the CIFAR-10 archive"
    assert not (cache / datasets.ARCHIVE_NAME).exists()
    with pytest.raises(datasets.DataError, match="not found"):  # the bad file is never used
        datasets.find_cifar10(download=False)


def test_full_size_batch_with_wrong_class_counts_is_named(tmp_path):
    labels = [0] * 2000 + [i % 9 + 1 for i in range(8000)]  # class 0 twice as frequent
    folder = _folder(tmp_path, test_batch=pickle.dumps(_tiny_batch(10000, labels)))
    with pytest.raises(datasets.DataError, match="test_batch: class counts \\[2000, 889"):
        datasets.load_cifar10(folder, download=False)


# Issue #25: a memory bomb inside allowed opcodes; protocol 0 and 2 files of Python 3.


def _nested(levels):
    """`levels` nested lists, each holding the one below twice (shared): a few hundred bytes
    of pickle expanding to 2**levels items."""
    inner = [0]
    for _ in range(levels):
        inner = [inner, inner]
    return inner


def _bomb(levels):
    return pickle.dumps({b"data": np.zeros((4, 3072), np.uint8), b"labels": _nested(levels)})


@pytest.mark.parametrize("levels", [24])  # more would exhaust memory if the check regressed
def test_nested_shared_lists_are_refused_before_they_expand(tmp_path, levels):
    assert len(pickle.dumps(_nested(levels))) < 1000  # 2**60 items if anything expanded them
    folder = _folder(tmp_path, data_batch_4=_bomb(levels))
    # This thread's CPU time: the process's counts TensorFlow threads left by other tests.
    start = time.thread_time()
    with pytest.raises(datasets.DataError, match=r"data_batch_4: refused: its containers expand "
                                                 r"to more than 1,000,000 items") as e:
        datasets.load_cifar10(folder, download=False)
    assert time.thread_time() - start < 2 and "\n" not in str(e.value)
    # Below the budget, the same structure is only a malformed labels entry.
    (folder / "data_batch_4").write_bytes(_bomb(3))
    with pytest.raises(datasets.DataError, match="data_batch_4: b'labels' must be 4 ints"):
        datasets.load_cifar10(folder, download=False)


def test_a_container_holding_itself_is_refused(tmp_path):
    loop = [1]
    loop.append(loop)
    folder = _folder(tmp_path, test_batch=pickle.dumps({b"data": np.zeros((1, 3072), np.uint8),
                                                        b"labels": loop}))
    with pytest.raises(datasets.DataError, match="test_batch: refused: a container holds itself"):
        datasets.load_cifar10(folder, download=False)


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_batches_of_every_pickle_protocol_load(tmp_path, protocol):
    """Python 3 writes bytes as `_codecs.encode(text, 'latin1')` under protocols 0-2."""
    rng = np.random.default_rng(protocol)
    batches = {name: {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
                      b"labels": [int(v) for v in rng.integers(0, 10, 4)],
                      b"batch_label": b"tiny \xff", b"filenames": [b"x.png"] * 4}
               for name in (*datasets.TRAIN_FILES, datasets.TEST_FILE)}
    folder = tmp_path / datasets.FOLDER_NAME
    folder.mkdir()
    for name, batch in batches.items():
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    if protocol <= 2:
        assert b"_codecs" in (folder / datasets.TEST_FILE).read_bytes()
    (x_train, y_train), (x_test, y_test) = datasets.load_cifar10(folder, download=False)
    want = batches[datasets.TEST_FILE]
    np.testing.assert_array_equal(
        x_test, want[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    assert y_test.tolist() == want[b"labels"] and len(x_train) == 20


def test_codecs_encode_is_allowed_with_latin1_only(tmp_path):
    class Utf16:  # a pickle calling _codecs.encode(text, "utf-16")
        def __reduce__(self):
            import _codecs
            return (_codecs.encode, ("abc", "utf-16"))

    folder = _folder(tmp_path, data_batch_1=pickle.dumps(
        {b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 3], b"x": Utf16()},
        protocol=2))
    with pytest.raises(datasets.DataError, match="data_batch_1: refused to unpickle global "
                                                 "_codecs.encode with encoding 'utf-16'"):
        datasets.load_cifar10(folder, download=False)


# Issue #38: a pickle of a few hundred bytes calling an allowed numpy constructor with a large
# shape; numpy would allocate it before any check of the result.


def _asks(function, *args):
    """An object whose pickle calls `function(*args)`."""
    class Call:
        def __reduce__(self):
            return (function, args)
    return Call()


_RECONSTRUCT = np.empty(0).__reduce__()[0]
_FROMBUFFER = np.empty(1).__reduce_ex__(5)[0]
_HUGE = (1_000_000, 3072)  # 3 GB as uint8


@pytest.mark.parametrize("call", [
    (np.ndarray, _HUGE, "u1"),
    (np.ndarray, (1000,), np.dtype(("u1", (1000, 3072)))),  # a subarray dtype of 3 MB
    (_RECONSTRUCT, np.ndarray, _HUGE, b"B"),
    (_FROMBUFFER, b"\0" * 8, np.dtype("u1"), _HUGE, "C"),  # a strided view: sized all the same
], ids=["ndarray", "ndarray-void", "_reconstruct", "_frombuffer"])
def test_an_array_larger_than_the_release_allows_is_refused_before_it_is_made(tmp_path, call):
    payload = pickle.dumps({b"data": _asks(*call), b"labels": [0]}, protocol=2)
    assert len(payload) < 400
    folder = _folder(tmp_path, data_batch_1=payload)
    start = time.thread_time()  # this thread's CPU time, as above
    with pytest.raises(datasets.DataError, match=r"data_batch_1: refused: it asks for an array "
                                                 r"of 3,072,000,000 bytes, more than the \d+ its "
                                                 r"file can hold") as e:
        datasets.load_cifar10(folder, download=False)
    assert time.thread_time() - start < 1 and "\n" not in str(e.value)


def test_arrays_are_bounded_by_the_file_and_by_the_release(tmp_path):
    folder = _folder(tmp_path)
    # A 10,000-image batch's worth is allowed from a file that holds it (the official size) ...
    full = pickle.dumps(_tiny_batch(10000, [i % 10 for i in range(10000)]))
    (folder / "data_batch_2").write_bytes(full)
    assert len(datasets.load_cifar10(folder, download=False)[0][0]) == 10000 + 4 * 4
    # ... but not made by a constructor from a small file, nor beyond the release's largest file.
    assert datasets._array_budget(datasets.CIFAR10, 1000) == 1000
    assert datasets._array_budget(datasets.CIFAR10) == 10000 * (3072 + 16)
    assert datasets._array_budget(datasets.CIFAR100) == 50000 * (3072 + 16)
    small = pickle.dumps({b"data": _asks(np.ndarray, (4, 3072), "u1"), b"labels": [0] * 4})
    (folder / "data_batch_2").write_bytes(small)
    with pytest.raises(datasets.DataError, match=f"12,288 bytes, more than the {len(small)} "):
        datasets.load_cifar10(folder, download=False)


def test_reconstruct_of_another_class_is_refused(tmp_path):
    payload = pickle.dumps({b"data": _asks(_RECONSTRUCT, np.dtype, (0,), b"B")}, protocol=2)
    folder = _folder(tmp_path, test_batch=payload)
    with pytest.raises(datasets.DataError, match="refused to unpickle global numpy "
                                                 "_reconstruct of anything but numpy.ndarray"):
        datasets.load_cifar10(folder, download=False)


@pytest.mark.slow
def test_six_bombs_through_the_cli_stay_under_500_mb_and_exit_2(tmp_path):
    import subprocess
    import sys
    payload = pickle.dumps({b"data": _asks(np.ndarray, _HUGE, "u1"), b"labels": [0]})
    folder = _folder(tmp_path, **{name: payload
                                  for name in (*datasets.TRAIN_FILES, datasets.TEST_FILE)})
    # The CLI, then its own peak memory on a last line: VmHWM in kB, not ru_maxrss, which
    # Linux carries over from the forking test process (TensorFlow loaded) across exec.
    code = ("import re, sys\nfrom cifar_resnet.__main__ import main\nstatus = main()\n"
            "print(re.search(r'VmHWM:\\s*(\\d+)', open('/proc/self/status').read())[1], "
            "file=sys.stderr)\nsys.exit(status)")
    done = subprocess.run(
        [sys.executable, "-c", code, "train", "--depth", "8", "--iterations", "10",
         "--data-dir", str(folder), "--workdir", str(tmp_path / "run")],
        cwd=pathlib.Path(__file__).resolve().parents[1], capture_output=True, text=True,
        timeout=120)
    *said, peak_kb = done.stderr.splitlines()
    assert done.returncode == 2 and len(said) == 1, done.stderr
    assert "data_batch_1: refused: it asks for an array of 3,072,000,000 bytes" in said[0]
    assert int(peak_kb) < 500 * 1024
