"""Runs are keyed by their data's content: the same CIFAR-10 by any route resumes, other data
is refused naming both identities, and run directories from before data.json still resume."""

import pathlib
import pickle
import tarfile

import keras
import numpy as np
import pytest

from cifar_resnet.spec import config as config_lib, dataid, datasets, files, rundir
from cifar_resnet.run import train
from cifar_resnet.spec.config import ConfigError

PER_BATCH = 64  # images per batch file: 320 training, 64 test images


def write_cifar(root: pathlib.Path, seed=0):
    """Writes the official `cifar-10-batches-py/` layout and its tar.gz under `root`."""
    rng = np.random.default_rng(seed)
    folder = root / datasets.FOLDER_NAME
    folder.mkdir(parents=True)
    for name in (*datasets.TRAIN_FILES, datasets.TEST_FILE):
        images = rng.integers(0, 256, (PER_BATCH, 3 * 32 * 32), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, PER_BATCH)]
        (folder / name).write_bytes(pickle.dumps({b"data": images, b"labels": labels}))
    archive = root / datasets.ARCHIVE_NAME
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=datasets.FOLDER_NAME)
    return folder, archive


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt


@pytest.fixture
def places(tmp_path, monkeypatch):
    """The same tiny CIFAR-10 as a folder, an archive, under $CIFAR10_DIR and in a Keras cache,
    and a different one; no environment variable points anywhere yet."""
    monkeypatch.delenv("CIFAR10_DIR", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "nowhere"))
    folder, archive = write_cifar(tmp_path / "a")
    env_dir = tmp_path / "env"
    write_cifar(env_dir)
    cache = tmp_path / "keras_home"
    _, cached = write_cifar(cache / "datasets")
    import shutil
    shutil.rmtree(cache / "datasets" / datasets.FOLDER_NAME)  # the cache holds only the archive
    other, _ = write_cifar(tmp_path / "other", seed=1)
    return dict(folder=folder, archive=archive, env=env_dir, cache=cache, other=other)


def _config(data_dir, epochs=2):
    return config_lib.resolve(overrides=dict(
        depth=8, epochs=epochs, batch_size=64, val_fraction=0.0,
        data_dir=None if data_dir is None else str(data_dir)))


@pytest.mark.slow
def test_the_same_data_by_any_route_resumes_and_is_then_complete(places, tmp_path, monkeypatch):
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train.run_experiment(_config(places["folder"]), run, callbacks=[_Interrupt()], verbose=0)
    recorded = dataid.read(run)
    assert recorded["source"] == str(places["folder"].resolve())
    assert len(recorded["sha256"]) == 64

    # Resumed from the archive: trains only the second epoch.
    metrics = train.run_experiment(_config(places["archive"]), run, verbose=0)
    assert [r["period"] for r in rundir.read_history(run / "history.csv")] == [0, 1]
    assert metrics["status"] == "complete"
    assert dataid.read(run) == {**recorded, "source": str(places["archive"].resolve())}
    history = (run / "history.csv").read_text()

    # Complete by every other route: $CIFAR10_DIR, the Keras cache, the folder again.
    monkeypatch.setenv("CIFAR10_DIR", str(places["env"]))
    assert train.run_experiment(_config(None), run, verbose=0) == metrics
    monkeypatch.delenv("CIFAR10_DIR")
    monkeypatch.setenv("KERAS_HOME", str(places["cache"]))
    assert train.run_experiment(_config(None), run, verbose=0) == metrics
    assert train.run_experiment(_config(places["folder"]), run, verbose=0) == metrics
    assert (run / "history.csv").read_text() == history


@pytest.mark.slow
def test_other_data_is_refused_naming_both_identities(places, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train.run_experiment(_config(places["folder"]), run, callbacks=[_Interrupt()], verbose=0)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    ours = dataid.short(dataid.read(run)["sha256"])
    (x, y), test = datasets.load_cifar10(places["other"], download=False)
    theirs = dataid.short(dataid.fingerprint("cifar10", (x, y), test))
    assert ours != theirs
    for epochs in (2, 1):  # resuming, and a run that would be complete
        if epochs == 1:
            train.run_experiment(_config(places["folder"], 1), tmp_path / "done", verbose=0)
            run = tmp_path / "done"
            before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
        with pytest.raises(ConfigError) as error:
            train.run_experiment(_config(places["other"], epochs), run, verbose=0)
        message = str(error.value)
        assert "other data" in message and ours in message and theirs in message
        assert "\n" not in message
        assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


@pytest.mark.slow
def test_a_run_from_before_data_json_resumes_and_records_its_data(places, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train.run_experiment(_config(places["folder"]), run, callbacks=[_Interrupt()], verbose=0)
    (run / rundir.DATA).unlink()  # as written before this change: config.json has data_dir
    assert files.read_json(run / "config.json")["data_dir"] == str(places["folder"])
    metrics = train.run_experiment(_config(places["archive"]), run, verbose=0)
    assert metrics["status"] == "complete" and metrics["epochs"] == 2
    assert dataid.read(run)["source"] == str(places["archive"].resolve())


def test_the_identity_is_the_content_split_or_not():
    train_set, test_set = datasets.make_synthetic(64, 16)
    whole = dataid.fingerprint("synthetic", train_set, test_set)
    (xt, yt), val = datasets.split_validation(*train_set, val_size=16)
    assert dataid.fingerprint("synthetic", (xt, yt), test_set, val) == whole
    changed = train_set[0].copy()
    changed[5, 1, 2, 0] ^= 1
    assert dataid.fingerprint("synthetic", (changed, train_set[1]), test_set) != whole
    relabelled = train_set[1].copy()
    relabelled[0] = (relabelled[0] + 1) % 10
    assert dataid.fingerprint("synthetic", (train_set[0], relabelled), test_set) != whole
    assert dataid.fingerprint("cifar10", train_set, test_set) != whole
