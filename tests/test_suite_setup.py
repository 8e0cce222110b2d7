"""What the test suite needs and where it finds it (issue #40 item 9): the real CIFAR-10 found as
the command line finds it (tests/real_cifar10.py, conftest's `real_data` and `project_data`),
the project's copy told from other copies by its SHA-256, and the optional packages the tests
import installed by one command (`make setup-dev`) or documented."""

from __future__ import annotations

import pathlib
import re

import pytest

import real_cifar10
from cifar_resnet.spec import dataid, datasets, files
from test_data import _write_tiny_cifar

ROOT = pathlib.Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------
# Finding the real data: $CIFAR10_DIR, the Keras cache, shared/data.


def test_cifar10_dir_is_found_as_train_finds_it(no_env, monkeypatch):
    folder, _ = _write_tiny_cifar(no_env / "mine")
    monkeypatch.setenv("CIFAR10_DIR", str(no_env / "mine"))
    copies, looked = real_cifar10.candidates(shared=no_env / "no-shared")
    assert copies == [folder.resolve()]  # the folder before the archive beside it, as find does
    assert f"$CIFAR10_DIR={no_env / 'mine'}" in looked and str(no_env / "no-shared") in looked


def test_the_keras_cache_is_found_then_shared_data(no_env):
    _, cached = _write_tiny_cifar(no_env / "home" / ".keras" / "datasets")
    shared, _ = _write_tiny_cifar(no_env / "shared")
    copies, looked = real_cifar10.candidates(shared=no_env / "shared")
    assert copies == [(no_env / "home" / ".keras" / "datasets" / datasets.FOLDER_NAME).resolve(),
                      shared.resolve()]
    assert looked.startswith(f"the Keras cache {no_env / 'home' / '.keras' / 'datasets'} and ")


def test_shared_data_unpacked_is_found_and_nothing_is_downloaded(no_env, monkeypatch):
    def refuse(*_):
        raise AssertionError("the tests must never download CIFAR-10")
    monkeypatch.setattr(datasets, "_download", refuse)
    assert real_cifar10.candidates(shared=no_env / "shared") == (
        [], f"the Keras cache {no_env / 'home' / '.keras' / 'datasets'} and {no_env / 'shared'}")
    folder, archive = _write_tiny_cifar(no_env / "shared")
    archive.unlink()  # only the unpacked folder: the old fixture wanted the archive
    assert real_cifar10.candidates(shared=no_env / "shared")[0] == [folder.resolve()]


def test_real_data_reason_names_every_place_looked(no_env, monkeypatch):
    monkeypatch.setenv("CIFAR10_DIR", str(no_env / "empty"))
    copies, looked = real_cifar10.candidates(shared=no_env / "shared")
    reason = real_cifar10.skip_reason(copies, looked, project=False)
    assert reason == (f"needs real CIFAR-10: none in $CIFAR10_DIR={no_env / 'empty'} and "
                      f"{no_env / 'shared'}")


# ------------------------------------------------------------------------------------------------
# The project's copy, by its SHA-256.


def test_the_project_copy_is_known_by_its_archive_without_loading(tmp_path, monkeypatch):
    _, archive = _write_tiny_cifar(tmp_path)
    monkeypatch.setattr(datasets, "load_cifar10", lambda *a, **k: pytest.fail("loaded"))
    assert real_cifar10.is_project_copy(archive, archive_sha256=files.sha256(archive))


def test_the_project_copy_is_known_by_its_content_unpacked(tmp_path):
    folder, archive = _write_tiny_cifar(tmp_path)
    content = dataid.fingerprint("cifar10", *datasets.load_cifar10(folder, download=False))
    assert real_cifar10.is_project_copy(folder, content=content)
    assert real_cifar10.is_project_copy(archive, content=content)  # another archive, same images
    assert not real_cifar10.is_project_copy(folder)  # the real project copy's content differs


def test_other_data_is_skipped_with_a_reason_naming_what_the_test_needs(no_env):
    folder, _ = _write_tiny_cifar(no_env / "shared")
    copies, looked = real_cifar10.candidates(shared=no_env / "shared")
    assert real_cifar10.project_copy(copies) is None
    reason = real_cifar10.skip_reason(copies, looked, project=True)
    content = real_cifar10.content_sha256(folder.resolve())
    assert "\n" not in reason
    assert reason.startswith("needs the project's JPEG-reconstructed CIFAR-10 (archive SHA-256 "
                             "38806c0e54ca, content sha256:671a4007d25a; shared/data/README.md)")
    assert reason.endswith(f"found in the Keras cache {no_env / 'home/.keras/datasets'} and "
                           f"{no_env / 'shared'}: "
                           f"{folder.resolve()} ({dataid.short(content)})")


def test_an_official_archive_is_other_data_without_loading(tmp_path, monkeypatch):
    _, archive = _write_tiny_cifar(tmp_path)
    monkeypatch.setattr(datasets, "OFFICIAL_SHA256", files.sha256(archive))
    monkeypatch.setattr(datasets, "load_cifar10", lambda *a, **k: pytest.fail("loaded"))
    assert not real_cifar10.is_project_copy(archive)


def test_the_project_identity_is_the_one_the_committed_runs_record():
    """The content fingerprint is every data.json of the committed reports (the shipped weights'
    runs included), not a number typed once."""
    records = [files.read_json(p) for p in (ROOT / "docs" / "full-repro").rglob("data.json")]
    assert records and {r["sha256"] for r in records} == {real_cifar10.PROJECT_CONTENT_SHA256}
    readme = ROOT.parent / "shared" / "data" / "README.md"
    if readme.exists():
        assert real_cifar10.PROJECT_ARCHIVE_SHA256 in readme.read_text()


def test_found_data_is_used_even_when_a_test_empties_the_environment(no_env, real_cifar10_copies):
    """conftest's copies are found once per session, before `no_env` (function-scoped) empties
    $CIFAR10_DIR and HOME for a test."""
    copies, looked = real_cifar10_copies
    assert str(no_env) not in looked
