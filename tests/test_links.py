"""A run folder that others can write cannot be turned against its user (issue #38, item 1):
a symbolic link planted where a run's file or folder belongs is refused with one line, never
followed, and the file it points to is left as it was."""

import os
import pathlib
import subprocess
import sys

import pytest

from cifar_resnet.run import reliability
from cifar_resnet.spec import files, rundir

ROOT = pathlib.Path(__file__).resolve().parents[1]
PRECIOUS = "the victim's own content\n"

# Every place a run writes: its entries, and files inside its folders.
PLACES = sorted(rundir.RUN_DIR_ENTRIES) + [
    f"{rundir.BACKUP}/{rundir.METADATA}", f"{rundir.BACKUP}/epoch2.weights.h5",
    f"{rundir.TENSORBOARD}/train", f"{rundir.EVAL}/test-final.json"]


@pytest.fixture
def victim(tmp_path):
    path = tmp_path / "elsewhere" / "victim.txt"
    path.parent.mkdir()
    path.write_text(PRECIOUS)
    return path


@pytest.mark.parametrize("place", PLACES)
def test_a_link_anywhere_a_run_writes_is_refused(tmp_path, victim, place):
    workdir = tmp_path / "run"
    link = workdir / place
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(victim)
    with pytest.raises(files.LinkError, match=f"^{link} is a symbolic link;.*remove it"):
        rundir.refuse_links(workdir)
    assert victim.read_text() == PRECIOUS and link.is_symlink()


def test_the_run_folder_itself_may_be_a_link(tmp_path):
    real = tmp_path / "disk" / "run"
    real.mkdir(parents=True)
    (real / rundir.BACKUP).mkdir()
    (tmp_path / "run").symlink_to(real)
    rundir.refuse_links(tmp_path / "run")  # the owner's choice of where runs live


def test_run_lock_never_writes_through_a_linked_lock(tmp_path, victim):
    (tmp_path / rundir.LOCK).symlink_to(victim)
    files.write_json(tmp_path / rundir.METRICS, {"status": "complete"})  # would unlink .lock
    with pytest.raises(files.LinkError, match="is a symbolic link"):
        with reliability.run_lock(tmp_path):
            pass
    assert victim.read_text() == PRECIOUS and (tmp_path / rundir.LOCK).is_symlink()
    assert rundir.lock_holder(tmp_path) is None  # not read through the link either


def test_run_lock_refuses_a_link_inside_the_run_with_the_lock_held(tmp_path, victim):
    (tmp_path / rundir.HISTORY).symlink_to(victim)
    with pytest.raises(files.LinkError, match=f"{tmp_path / rundir.HISTORY} is a symbolic"):
        with reliability.run_lock(tmp_path):
            pytest.fail("the run started")
    assert victim.read_text() == PRECIOUS


def test_a_fifo_where_a_file_belongs_neither_blocks_nor_is_used(tmp_path):
    fifo = tmp_path / rundir.LOCK
    os.mkfifo(fifo)
    with pytest.raises(files.LinkError, match="is not a regular file"):
        files.open_nofollow(fifo, os.O_RDWR | os.O_CREAT)
    assert rundir.lock_holder(tmp_path) is None


def test_atomic_writes_and_copies_never_go_through_a_link(tmp_path, victim):
    link = tmp_path / "metrics.json"
    link.symlink_to(victim)
    with pytest.raises(files.LinkError):
        files.read_bytes(link)  # a report's copy of a run's files reads this way
    files.atomic_write_text(link, "{}\n")  # replaces the link, not its target
    assert victim.read_text() == PRECIOUS and not link.is_symlink()


def test_train_refuses_a_linked_lock_in_one_line_before_writing(tmp_path, victim):
    workdir = tmp_path / "shared" / "run"
    workdir.mkdir(parents=True)
    (workdir / rundir.LOCK).symlink_to(victim)
    done = subprocess.run(
        [sys.executable, "-m", "cifar_resnet", "train", "--dataset", "synthetic", "--depth",
         "8", "--iterations", "60", "--workdir", str(workdir)],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"error: {workdir / rundir.LOCK} is a symbolic link; a run reads and writes only its "
        "own files, never through a link (it could overwrite the file it points to); remove "
        "it and rerun"]
    assert victim.read_text() == PRECIOUS
    assert sorted(p.name for p in workdir.iterdir()) == [rundir.LOCK]  # nothing written
