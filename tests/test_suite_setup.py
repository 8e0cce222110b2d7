"""What the test suite needs and where it finds it (issue #40 item 9): the real CIFAR-10 found as
the command line finds it (tests/real_cifar10.py, conftest's `real_data` and `project_data`),
the project's copy told from other copies by its SHA-256, and the optional packages the tests
import installed by one command (`make setup-dev`) or documented."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess

import pytest

import optional
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


# ------------------------------------------------------------------------------------------------
# The optional packages: one command each, and `make test` installs the suite's.


def _requirements(name: str) -> set[str]:
    """The package names a requirements file installs, its `-r` includes followed."""
    names = set()
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r"):
            names |= _requirements(line[2:].strip())
        elif line and not line.startswith("-"):
            names.add(re.split(r"[\[=<>~ ]", line)[0].lower())
    return names


def _make_n(target, venv):
    """`make -n TARGET` for a venv that does not exist yet: every recipe line, none run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    result = subprocess.run(["make", "--no-print-directory", "-n", target, f"VENV={venv}"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


@pytest.mark.parametrize("target", ["test", "test-fast"])
def test_make_test_installs_what_the_suite_imports_before_running_it(target, tmp_path):
    lines = _make_n(target, tmp_path / "fresh")
    dev = next(i for i, line in enumerate(lines) if "pip install --quiet -r requirements-dev.txt"
               in line)
    pytest_line = next(i for i, line in enumerate(lines) if "-m pytest" in line)
    assert dev < pytest_line
    assert not any("requirements-torch.txt" in line for line in lines)  # 192 MB: on request


@pytest.mark.parametrize("module", sorted(optional.INSTALL))
def test_each_optional_package_is_installed_by_the_command_its_skip_names(module, tmp_path):
    command = optional.INSTALL[module]
    assert command in optional.reason(module)
    target = command.removeprefix("make ")
    installs = [line.split("-r ")[1].split()[0] for line in _make_n(target, tmp_path / "fresh")
                if "pip install" in line and "-r requirements-" in line]
    assert any(module in _requirements(name) for name in installs), (command, installs)


def test_tests_skip_for_optional_packages_only_through_tests_optional():
    """So every such skip names its install command: no bare importorskip or find_spec."""
    bare = [f"{path.name}:{n}" for path in sorted((ROOT / "tests").glob("*.py"))
            if path.name != "optional.py"
            for n, line in enumerate(path.read_text().splitlines(), 1)
            if re.search(r"pytest\.importorskip\(|find_spec\(\W*(jax|torch|scipy)", line)]
    assert not bare


def test_the_readme_and_testing_doc_say_what_skips_and_how_to_get_it():
    for doc in (ROOT / "README.md", ROOT / "docs" / "testing.md"):
        text = doc.read_text()
        for needed in ("make setup-dev", "make setup-torch", "$CIFAR10_DIR", "Keras cache",
                       "shared/data"):
            assert needed in text, (doc.name, needed)
