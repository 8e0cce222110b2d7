"""A run's data, identified by content: the same images by any route are the same data.

A run directory records which data it trained on in `data.json`: the SHA-256 of the loaded
arrays (training images and labels, then test images and labels, in the order of the official
files), and, for information only, where they were read from. Resuming a run, or rerunning a
finished one, compares the content, not the path: the official folder, the archive,
`$CIFAR10_DIR` or the Keras cache give the same identity for the same files, and different data
is refused, naming both identities. Hashing CIFAR-10's 184 MB of arrays took 0.5 s on a busy
2-core CPU, against 5 s to read the archive.

A run directory written before `data.json` existed has no identity to compare; it resumes, and
gets its `data.json` then.
"""

from __future__ import annotations

import hashlib
from typing import Optional

import numpy as np

from cifar_resnet.spec import datasets, files, rundir

SHORT = 12  # hex digits shown to people: collisions among a user's data sets are not a concern


class DataMismatch(ValueError):
    """A run directory holds a run on other data; the message names both identities."""


def fingerprint(dataset: str, train, test, val=None) -> str:
    """The SHA-256 (hex) of a data set's content.

    Args:
        dataset: The dataset's name ("cifar10", "synthetic"); part of the identity.
        train: `(x, y)` training images and labels (before, or without, the validation split).
        test: `(x, y)` test images and labels.
        val: `(x, y)` held out from the END of the training set, or None; `train` then `val`
            is hashed as the one training set they came from, so the identity does not depend
            on the split.

    Returns:
        64 hex digits.
    """
    parts = [train] + ([val] if val is not None else [])
    x_train = [np.ascontiguousarray(x, np.uint8) for x, _ in parts]
    y_train = [np.ascontiguousarray(y, "<i8") for _, y in parts]
    x_test, y_test = np.ascontiguousarray(test[0], np.uint8), np.ascontiguousarray(test[1], "<i8")
    shape = x_test.shape[1:]
    digest = hashlib.sha256(f"{dataset} train {sum(len(x) for x in x_train)} test "
                            f"{len(x_test)} image {shape}\n".encode())
    for array in (*x_train, *y_train, x_test, y_test):
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def short(sha256: str) -> str:
    """The identity as people see it: `sha256:` and the first SHORT hex digits."""
    return f"sha256:{sha256[:SHORT]}"


def describe(config, splits, source: Optional[str]) -> dict:
    """The `data.json` record of a run's data: dataset, sha256 of the content, source path."""
    return {"dataset": config.dataset,
            "sha256": fingerprint(config.dataset, splits.train, splits.test, splits.val),
            "source": source}


def source_of(config) -> Optional[str]:
    """Where `config`'s data would be read from now (absolute), without reading it; None when
    it is not on disk yet (a download) or the dataset is generated."""
    release = datasets.DATASETS[config.dataset].release
    if release is None:
        return None
    try:
        return str(datasets.find(release, config.data_dir, download=False).resolve())
    except datasets.DataError:
        return None


def read(workdir) -> Optional[dict]:
    """The run directory's recorded data identity, or None (none recorded yet)."""
    path = rundir.RunDir(workdir).data
    return files.read_json(path) if path.exists() else None


def same_source(config, workdir) -> bool:
    """Whether `config` would read its data from where the run recorded reading it, so a
    finished run can be reported complete without reading the data again."""
    recorded = read(workdir)
    if recorded is None or recorded.get("dataset") != config.dataset:
        return False
    if datasets.DATASETS[config.dataset].release is None:
        return True  # generated: a function of the config, which is compared already
    current = source_of(config)
    return current is not None and current == recorded.get("source")


def check(workdir, record: dict) -> None:
    """Raises DataMismatch when `workdir` recorded other data than `record` describes.

    Args:
        workdir: A run directory.
        record: From `describe`, for the data now loaded.
    """
    recorded = read(workdir)
    if recorded is None or recorded.get("sha256") == record["sha256"]:
        return
    was = f"{short(recorded['sha256'])}" + (f" from {recorded['source']}"
                                            if recorded.get("source") else "")
    now = f"{short(record['sha256'])}" + (f" from {record['source']}"
                                          if record.get("source") else "")
    raise DataMismatch(f"{workdir} holds a run on other data ({recorded.get('dataset')} {was}; "
                       f"given {record['dataset']} {now}); use another --workdir, or the data it "
                       "was trained on to resume")


def save(workdir, record: dict) -> None:
    """Records `record` as the run's data identity."""
    files.write_json(rundir.RunDir(workdir).data, record)
