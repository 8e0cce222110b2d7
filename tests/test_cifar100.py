"""CIFAR-100 as one registry entry: the official python layout read safely, fine and coarse
labels, and `--dataset cifar100` through training and evaluation. Every archive is made here,
small, in the official layout (cifar-100-python/ with train, test, meta)."""

from __future__ import annotations

import json
import os
import pickle
import tarfile

import numpy as np
import pytest

from cifar_resnet.spec import config as config_lib, datasets

FOLDER = datasets.CIFAR100.folder


def _batch(n, rng, fine=None):
    fine = rng.permutation(np.arange(n) % 100) if fine is None else np.asarray(fine)
    return {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"fine_labels": [int(v) for v in fine],
            b"coarse_labels": [int(v) // 5 for v in fine],  # any 0..19 mapping will do here
            b"filenames": [b"x.png"] * n, b"batch_label": b"tiny"}


def _meta():
    return {b"fine_label_names": [n.encode() for n in datasets.CIFAR100_FINE_NAMES],
            b"coarse_label_names": [n.encode() for n in datasets.CIFAR100_COARSE_NAMES]}


def write_cifar100(root, n_train=200, n_test=100, seed=0, **replace):
    """The official layout with small files (and its tar.gz); `replace` swaps a file's bytes."""
    rng = np.random.default_rng(seed)
    folder = root / FOLDER
    folder.mkdir(parents=True)
    content = {"train": _batch(n_train, rng), "test": _batch(n_test, rng), "meta": _meta()}
    for name, value in content.items():
        (folder / name).write_bytes(replace.get(name, pickle.dumps(value)))
    archive = root / datasets.CIFAR100.archive
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=FOLDER)
    return folder, archive, content



def test_registry_entry():
    entry = datasets.DATASETS["cifar100"]
    assert entry.num_classes() == 100 and entry.num_classes("coarse") == 20
    assert entry.release.url == "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
    assert len(entry.release.sha256) == 64
    assert entry.class_names["fine"][:3] == ("apple", "aquarium_fish", "baby")
    config = config_lib.resolve(overrides=dict(dataset="cifar100", label_mode="coarse"))
    assert config.num_classes == 20
    with pytest.raises(config_lib.ConfigError, match="label_mode 'coarse' is not one of 'fine'"):
        config_lib.resolve(overrides=dict(dataset="cifar10", label_mode="coarse"))


def test_folder_archive_env_and_keras_cache_load_the_same_fine_and_coarse(no_env, monkeypatch):
    folder, archive, content = write_cifar100(no_env / "data")
    (x_train, y_train), (x_test, y_test) = datasets.load_cifar100(folder, download=False)
    assert x_train.shape == (200, 32, 32, 3) and x_test.shape == (100, 32, 32, 3)
    np.testing.assert_array_equal(y_train, content["train"][b"fine_labels"])
    # CHW rows to NHWC: the G plane of the first image is channel 1.
    np.testing.assert_array_equal(x_train[0, :, :, 1],
                                  content["train"][b"data"][0, 1024:2048].reshape(32, 32))
    for where in (archive, no_env / "data"):
        got = datasets.load_cifar100(where, download=False)
        np.testing.assert_array_equal(got[0][0], x_train)
    monkeypatch.setenv("CIFAR100_DIR", str(archive))
    np.testing.assert_array_equal(datasets.load_cifar100(download=False)[1][1], y_test)
    monkeypatch.delenv("CIFAR100_DIR")
    cache = no_env / "home" / ".keras" / "datasets" / f"{FOLDER}-target"
    write_cifar100(cache)
    assert datasets.find(datasets.CIFAR100, download=False) == cache / FOLDER
    coarse = datasets.load_cifar100(folder, download=False, label_mode="coarse")
    np.testing.assert_array_equal(coarse[0][1], content["train"][b"coarse_labels"])
    assert coarse[0][1].max() < 20
    splits = datasets.load_dataset("cifar100", folder, val_fraction=0.1, label_mode="coarse")
    assert splits.num_classes == 20 and len(splits.val[0]) == 20


def test_nothing_found_names_the_cifar100_places(no_env):
    with pytest.raises(datasets.DataError, match="CIFAR-100 not found.*CIFAR100_DIR") as e:
        datasets.load_cifar100(download=False)
    assert "\n" not in str(e.value)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_code_in_a_pickle_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    evil = pickle.dumps({b"data": _Evil(marker), b"fine_labels": [0]})
    _, archive, _ = write_cifar100(tmp_path, test=evil)
    with pytest.raises(datasets.DataError, match="test: refused to unpickle global"):
        datasets.load_cifar100(archive, download=False)
    assert not marker.exists()


def test_wrong_meta_missing_meta_and_links_are_refused(tmp_path):
    wrong = _meta()
    wrong[b"fine_label_names"] = wrong[b"fine_label_names"][::-1]
    folder, _, _ = write_cifar100(tmp_path / "a", meta=pickle.dumps(wrong))
    with pytest.raises(datasets.DataError, match="meta: b'fine_label_names' does not name"):
        datasets.load_cifar100(folder, download=False)
    folder, _, _ = write_cifar100(tmp_path / "b")
    (folder / "meta").unlink()
    with pytest.raises(datasets.DataError, match="missing meta"):
        datasets.load_cifar100(folder, download=False)
    archive = tmp_path / "link.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo(f"{FOLDER}/train")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(datasets.DataError, match="refusing archive member .*train.*a link"):
        datasets.load_cifar100(archive, download=False)


def test_full_size_test_file_must_hold_100_images_per_class(tmp_path):
    rng = np.random.default_rng(0)
    fine = np.arange(10000) % 100
    fine[:50] = 0  # class 0 gains what others lose
    folder, _, _ = write_cifar100(tmp_path, test=pickle.dumps(_batch(10000, rng, fine)))
    with pytest.raises(datasets.DataError, match="test: class counts .* outside 100..100"):
        datasets.load_cifar100(folder, download=False)


def test_download_is_verified_against_the_official_sha256(no_env, monkeypatch):
    def fake_download(url, part):
        assert url == datasets.CIFAR100.url
        part.parent.mkdir(parents=True, exist_ok=True)
        part.write_bytes(b"not the archive")

    monkeypatch.setattr(datasets, "_download", fake_download)
    with pytest.raises(datasets.DataError, match="not the official 85cd44d0"):
        datasets.find(datasets.CIFAR100)
    cache = no_env / "home" / ".keras" / "datasets"
    assert (cache / (datasets.CIFAR100.archive + ".bad")).exists()


@pytest.mark.slow
def test_cifar100_trains_and_evaluates_with_100_classes(tmp_path):
    from cifar_resnet.results import evaluate
    from cifar_resnet.run import train

    _, archive, _ = write_cifar100(tmp_path / "data", n_train=400, n_test=200)
    config = config_lib.resolve(overrides=dict(
        dataset="cifar100", data_dir=str(archive), depth=8, epochs=1, batch_size=100))
    workdir = tmp_path / "run"
    metrics = train.run_experiment(config, workdir, verbose=0)
    assert metrics["status"] == "complete"
    import keras
    model = keras.saving.load_model(workdir / "final.keras", compile=False)
    assert model.output_shape == (None, 100)
    report = evaluate.evaluate(workdir, checkpoint="final")
    assert report["num_images"] == 200 and len(report["class_names"]) == 100
    assert report["class_names"][0] == "apple"
    assert np.asarray(report["confusion_matrix"]).shape == (100, 100)
    assert set(report["per_class_accuracy"]) == set(datasets.CIFAR100_FINE_NAMES)
    saved = json.loads((workdir / "eval" / "test-final.json").read_text())
    assert saved["error"] == report["error"]
    assert config_lib.default_workdir(config).parent.name == "resnet8_v1-cifar100"
