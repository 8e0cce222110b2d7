"""Where the tests find the real CIFAR-10, and whether it is the project's copy.

Tests that need real data look where the command line does (`$CIFAR10_DIR`, else the Keras
cache `~/.keras/datasets`; `cifar_resnet.spec.datasets.find`), then in `shared/data` beside the
repository's folder, the project's development copy. Any copy serves a test that only needs
*some* CIFAR-10 (`real_data` in conftest). A test that asserts numbers measured on the project's
copy (the shipped weights' errors, their training images' mean) needs that copy itself
(`project_data`): it is a JPEG reconstruction (shared/data/README.md), and the official files
give other errors. Such a copy is recognised by its archive's SHA-256 (fast: no loading) or,
unpacked or repacked, by the SHA-256 of its content (`cifar_resnet.spec.dataid.fingerprint`, as
every `data.json` in docs/ records it).
"""

from __future__ import annotations

import functools
import os
import pathlib
from typing import Optional

from cifar_resnet.spec import dataid, datasets, files

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
# The project's copy: its archive as shared/data/README.md gives it (not the official
# datasets.OFFICIAL_SHA256), and its content as every data.json of docs/full-repro records it.
PROJECT_ARCHIVE_SHA256 = "38806c0e54ca4d69a635edd58ab46b255656161d93c96b83a1a6b486dd3e802a"
PROJECT_CONTENT_SHA256 = "671a4007d25af5001d1e081e1b2cc9b759177743a1e7d3ccc8ce6e27916b2efa"
PROJECT_COPY = (f"the project's JPEG-reconstructed CIFAR-10 (archive SHA-256 "
                f"{PROJECT_ARCHIVE_SHA256[:12]}, content {dataid.short(PROJECT_CONTENT_SHA256)}; "
                "shared/data/README.md)")


def candidates(shared: pathlib.Path = SHARED) -> tuple[list[pathlib.Path], str]:
    """Every CIFAR-10 copy the tests may use, in the order they are tried.

    Args:
        shared: The project's shared data folder (`shared/data` beside the repository).

    Returns:
        The copies found (each a `cifar-10-batches-py` folder or an archive; none twice), and
        where they were looked for, for a skip reason.
    """
    cli_place = (f"$CIFAR10_DIR={os.environ[datasets.CIFAR10.env]}"
                 if os.environ.get(datasets.CIFAR10.env)
                 else f"the Keras cache {datasets._keras_cache()}")
    found, looked = [], [cli_place, str(shared)]
    for data_dir in (None, shared):  # None: where `train` reads it without --data-dir
        try:
            path = datasets.find_cifar10(data_dir, download=False).resolve()
        except datasets.DataError:
            continue
        if path not in found:
            found.append(path)
    return found, " and ".join(looked)


@functools.lru_cache(maxsize=None)
def content_sha256(path: pathlib.Path) -> str:
    """The copy's identity as `data.json` records it (loads it: about 5 s for CIFAR-10)."""
    train, test = datasets.load_cifar10(path, download=False)
    return dataid.fingerprint("cifar10", train, test)


@functools.lru_cache(maxsize=None)
def is_project_copy(path: pathlib.Path, archive_sha256: str = PROJECT_ARCHIVE_SHA256,
                    content: str = PROJECT_CONTENT_SHA256) -> bool:
    """Whether `path` holds the project's copy: the archive itself, else the same content.

    Args:
        path: A copy `candidates` returned.
        archive_sha256: The project archive's SHA-256 (a test may pass another).
        content: The project copy's content fingerprint (a test may pass another).
    """
    if path.is_file():
        digest = files.sha256(path)
        if digest == archive_sha256:
            return True
        if digest == datasets.OFFICIAL_SHA256:  # the official archive: other data, not loaded
            return False
    return content_sha256(path) == content


def project_copy(copies: list[pathlib.Path]) -> Optional[pathlib.Path]:
    """The first of `copies` that is the project's copy, else None."""
    return next((path for path in copies if is_project_copy(path)), None)


def skip_reason(copies: list[pathlib.Path], looked: str, project: bool) -> str:
    """One line: what a skipped test needs, where it looked, and what it found instead."""
    if not project:
        return f"needs real CIFAR-10: none in {looked}"
    found = ", ".join(f"{p} ({dataid.short(content_sha256(p))})" for p in copies) or "none"
    return (f"needs {PROJECT_COPY}, on which its errors were measured; found in {looked}: "
            f"{found}")
