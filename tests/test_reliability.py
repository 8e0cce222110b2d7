"""Issue #5: crash-safe resume, clean stops, locks, full disks (hostile data files: test_data.py).

docs/reliability.md maps each case to the test here that proves it. Subprocess tests cost a
TensorFlow import each (~6 s), so there are few, on a depth-8 net and 256 synthetic images.
"""

import dataclasses
import errno
import fcntl
import json
import math
import os
import pathlib
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

from cifar_resnet import __main__ as cli
from cifar_resnet.spec import config as config_lib, files, rundir
from cifar_resnet.run import build, reliability, train

from cli_runs import EARLIER, ROOT, _At, _periods, _interrupt, _popen, _train_cmd, earlier_run




# ---------------------------------------------------------------------------------------------
# Atomic, checksummed checkpoints; a corrupt latest one falls back to the previous.


@pytest.mark.slow
def test_full_disk_keeps_the_previous_checkpoint_and_a_corrupt_latest_falls_back(
        tiny_config, tmp_path, monkeypatch, capsys):
    config = dataclasses.replace(tiny_config, epochs=3)
    with pytest.raises(KeyboardInterrupt):
        train.run_experiment(config, tmp_path, callbacks=[_At(2, _interrupt)], verbose=0)

    def disk_full(self, filepath, overwrite=True):
        pathlib.Path(filepath).write_bytes(b"\x89HDF partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(filepath))

    monkeypatch.setattr(keras.Model, "save_weights", disk_full)
    with pytest.raises(train.TrainingError) as error:
        train.run_experiment(config, tmp_path, verbose=0)
    assert "epoch3.weights.h5 (no space left on device)" in str(error.value)
    assert "earlier checkpoints are intact" in str(error.value)
    monkeypatch.undo()
    backup = reliability.Checkpointer(tmp_path / "backup")
    assert backup.resume_epoch() == 2  # verified by its checksum
    model = build.build_model(config)
    model.optimizer.build(model.trainable_variables)
    latest = tmp_path / "backup" / "epoch2.weights.h5"
    model.load_weights(latest)
    assert not list((tmp_path / "backup").glob(".*tmp*"))

    # A truncated latest state is named, and the previous one (epoch 1) is used.
    latest.write_bytes(latest.read_bytes()[:1000])
    capsys.readouterr()
    assert reliability.Checkpointer(tmp_path / "backup").resume_epoch() == 1
    assert f"checkpoint {latest} is corrupt or truncated" in capsys.readouterr().err
    metrics = train.run_experiment(config, tmp_path, verbose=0)
    assert _periods(tmp_path) == [0, 1, 2] and metrics["iterations"] == 12


# Runs the CLI; just after the N-th os.replace onto a file named NAME, fills the file system
# of FILL_DIR so that only LEAVE bytes stay free (FILL_AFTER="NAME:N:LEAVE"). NO_PRECHECK=1
# turns off atomic_save's free-space check, so that h5py itself meets the full disk.
FILLER = """
import os, shutil, sys
name, n, leave = os.environ["FILL_AFTER"].split(":")
real, seen = os.replace, [0]
def replace(src, dst):
    real(src, dst)
    if str(dst).endswith(name):
        seen[0] += 1
        if seen[0] == int(n):
            free = shutil.disk_usage(os.environ["FILL_DIR"]).free
            with open(os.path.join(os.environ["FILL_DIR"], "filler"), "wb") as f:
                f.write(b"\\0" * max(0, free - int(leave)))
os.replace = replace
if os.environ.get("NO_PRECHECK"):
    from cifar_resnet.run import reliability
    reliability._free_space_ok = lambda *args: True
from cifar_resnet.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 3 MB tmpfs (a depth-8 checkpoint is ~0.7 MB); skipped where mounting is not allowed."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.mark.slow
@pytest.mark.parametrize("fill_after, precheck, failing", [
    ("training_metadata.json:1:147456", True, "epoch2.weights.h5 (no space left on device: "),
    # Without the free-space check h5py meets ENOSPC itself; its clean-up used to segfault.
    ("training_metadata.json:1:147456", False, "epoch2.weights.h5 (no space left on device)"),
    ("training_metadata.json:1:0", True, "history.csv (no space left on device)"),
])
def test_full_disk_mid_run_one_line_exit_1_no_crash_then_resumes(small_tmpfs, fill_after,
                                                                 precheck, failing):
    """Issue #25: a full disk during a checkpoint or history write crashed (signal 11) or
    printed a traceback. Now: one line naming the file, exit 1, epoch 1's state intact, and
    the same command completes once space is freed."""
    run = small_tmpfs / "run"
    proc = _popen(_train_cmd(run, 3), code=FILLER, env={
        "FILL_AFTER": fill_after, "FILL_DIR": str(small_tmpfs),
        "NO_PRECHECK": "" if precheck else "1", "PYTHONPATH": str(ROOT)})
    out, err = proc.communicate(timeout=300)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1, (proc.returncode, err[-3000:])
    assert len(errors) == 1 and failing in errors[0], err[-3000:]
    assert err.rstrip().splitlines()[-1] == errors[0]  # nothing after it: no traceback
    assert "Traceback" not in err and "Segmentation" not in err
    assert reliability.Checkpointer(run / "backup").resume_epoch() == 1
    assert not list(run.rglob(".*.tmp*"))  # no temporary file left behind
    (small_tmpfs / "filler").unlink()
    rc = cli.main(_train_cmd(run, 3))
    assert rc == 0 and _periods(run) == [0, 1, 2]


# Fills the file system of FILL_DIR (to 0 bytes free) just before the N-th checkpoint write
# (FILL_AT=N), after atomic_save's free-space check: another process filling the disk while a
# checkpoint is written (issue #38, where h5py's write and clean-up then segfaulted, exit 139).
RACE = """
import os, sys
from cifar_resnet.run import reliability
real, seen = reliability._write_new, [0]
def write_new(path, data):
    seen[0] += 1
    if seen[0] == int(os.environ["FILL_AT"]):
        with open(os.path.join(os.environ["FILL_DIR"], "filler"), "wb") as f:
            try:
                while True:
                    f.write(b"\\0" * 4096)
                    f.flush()
            except OSError:
                pass
    return real(path, data)
reliability._write_new = write_new
from cifar_resnet.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_disk_filled_by_another_process_during_a_checkpoint_write_is_one_line(small_tmpfs):
    run = small_tmpfs / "run"
    proc = _popen(_train_cmd(run, 3), code=RACE, env={
        "FILL_AT": "2", "FILL_DIR": str(small_tmpfs), "PYTHONPATH": str(ROOT)})
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, (proc.returncode, err[-3000:])
    assert err.rstrip().splitlines()[-1].startswith(
        f"error: cannot write checkpoint {run / 'backup' / 'epoch2.weights.h5'} (no space left "
        "on device); earlier checkpoints are intact"), err[-3000:]
    assert "Traceback" not in err and "Segmentation" not in err
    assert reliability.Checkpointer(run / "backup").resume_epoch() == 1
    assert not list(run.rglob(".*.tmp*"))
    (small_tmpfs / "filler").unlink()
    assert cli.main(_train_cmd(run, 3)) == 0 and _periods(run) == [0, 1, 2]


@pytest.mark.parametrize("weights_only", [True, False])
def test_a_checkpoint_is_made_in_memory_and_written_by_python(tmp_path, monkeypatch,
                                                              weights_only):
    """Issue #38: libhdf5 never writes a checkpoint to the disk (a full disk there segfaulted);
    the bytes on disk are the checksummed ones, and they load to the same values."""
    import h5py
    opened, real = [], h5py.File

    def spy(name, *args, **kwargs):
        opened.append(name)
        return real(name, *args, **kwargs)

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="mse")
    model.fit(np.ones((8, 4)), np.ones((8, 3)), verbose=0)
    path = tmp_path / ("state.weights.h5" if weights_only else "model.keras")
    monkeypatch.setattr(h5py, "File", spy)
    digest = reliability.atomic_save(model, path, weights_only=weights_only)
    monkeypatch.undo()
    assert opened and not [n for n in opened if isinstance(n, (str, os.PathLike))], opened
    assert digest == files.sha256(path) and [p.name for p in tmp_path.iterdir()] == [path.name]
    if weights_only:
        again = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        again.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="mse")
        again.optimizer.build(again.trainable_variables)
        again.load_weights(path)
        pairs = zip(model.variables + model.optimizer.variables,
                    again.variables + again.optimizer.variables)
    else:
        again = keras.saving.load_model(path)
        pairs = zip(model.variables, again.variables)
    assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in pairs)


def test_read_only_mount_is_refused_in_one_line_before_tensorflow(small_tmpfs, tmp_path):
    subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True)
    cases = [(small_tmpfs / "run", "is read-only or not writable"),
             (tmp_path / "file" / "run", "is a file, not a folder")]
    (tmp_path / "file").write_text("in the way")
    code = ("import sys\n"
            "from cifar_resnet.__main__ import main\n"
            "status = main(sys.argv[1:])\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
            "sys.exit(status)\n")
    for workdir, message in cases:
        result = subprocess.run([sys.executable, "-c", code, *_train_cmd(workdir, 1)], cwd=ROOT,
                                capture_output=True, text=True, timeout=120)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and len(lines) == 1, result.stderr
        assert lines[0].startswith("error: cannot ") and message in lines[0], lines


def test_library_on_a_read_only_mount_raises_write_error_naming_the_folder(small_tmpfs,
                                                                           tiny_config):
    subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True)
    with pytest.raises(files.WriteError, match=f"cannot write {small_tmpfs / 'run'} "
                                               r"\(read-only file system\)"):
        train.run_experiment(tiny_config, small_tmpfs / "run", verbose=0)


class _EpochsRun(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


@pytest.mark.slow
def test_damaged_metadata_resumes_from_the_newest_checkpoint_file_and_says_so(
        tiny_config, tmp_path, capsys):
    """Issue #25: a truncated or zeroed training_metadata.json restarted the run from epoch 0
    without a word and cut history.csv to 0 rows."""
    config = dataclasses.replace(tiny_config, epochs=3)
    with pytest.raises(KeyboardInterrupt):
        train.run_experiment(config, tmp_path, callbacks=[_At(2, _interrupt)], verbose=0)
    meta = tmp_path / "backup" / rundir.METADATA
    # Zeroed: the resume point is the newest checkpoint file (read only, nothing trained).
    meta.write_bytes(b"\0" * 131)
    capsys.readouterr()
    state = reliability.Checkpointer(tmp_path / "backup").resume_state()
    assert (state["epoch"], state["weights"]) == (2, "epoch2.weights.h5")
    assert f"warning: {meta} is " in capsys.readouterr().err
    # Truncated: the run resumes from that file and trains only the missing epoch.
    meta.write_bytes(b'{"epoch": 2, "weig')
    ran = _EpochsRun()
    metrics = train.run_experiment(config, tmp_path, callbacks=[ran], verbose=0)
    err = capsys.readouterr().err
    assert f"warning: {meta} is " in err and (
        f"resuming from the newest checkpoint file {tmp_path / 'backup' / 'epoch2.weights.h5'} "
        "(2 period(s) done)") in err
    assert ran.epochs == [2]  # only the missing epoch trained: not from zero
    assert _periods(tmp_path) == [0, 1, 2] and metrics["iterations"] == 12


@pytest.mark.parametrize("rows, message", [
    (None, "is missing, but the checkpoint in B has done 3 periods (periods 1-3 missing;"),
    ([0], "holds 1 of the 3 rows, but the checkpoint in B has done 3 periods (periods 2-3 "
              "missing;"),
    ([0, 2], "holds 2 of the 3 rows, but the checkpoint in B has done 3 periods (period 2 "
              "missing;"),
    ([1], "holds 1 of the 3 rows, but the checkpoint in B has done 3 periods (2 periods "
              "missing;"),
    ([0, 1, 2], None), ([0, 1, 2, 3], None),  # rows past the checkpoint: trimmed later
])
def test_a_history_shorter_than_its_checkpoint_is_named(tmp_path, rows, message):
    path = tmp_path / "history.csv"
    if rows is not None:
        path.write_text(",".join(rundir.HISTORY_FIELDS) + "\n"
                        + "".join(f"{e},{e + 1}\n" for e in rows))
    if message is None:
        rundir.check_history(path, 3, "B")
        return
    with pytest.raises(rundir.HistoryError) as error:
        rundir.check_history(path, 3, "B")
    assert str(error.value).startswith(f"{path} {message}")
    assert str(error.value).endswith("or delete B and history.csv to train this run again "
                                     "from zero")


def _backup_of_two_states(folder: pathlib.Path) -> dict:
    """A backup folder as a run leaves it after two periods (files of any bytes: only their
    names and checksums are read before a load); returns the metadata."""
    folder.mkdir()
    states = []
    for epoch in (1, 2):
        path = folder / f"epoch{epoch}.weights.h5"
        path.write_bytes(f"state {epoch}".encode())
        states.append({"epoch": epoch, "weights": path.name, "sha256": files.sha256(path)})
    return {**states[1], "previous": states[0]}


@pytest.mark.parametrize("edit, corrupt, resumed", [
    (lambda meta: {}, False, 2),                                   # the probe of issue #38
    (lambda meta: {"previous": meta["previous"]}, False, 2),
    (lambda meta: {**meta, "epoch": "2"}, False, 2),
    (lambda meta: {**meta, "weights": "../../victim"}, False, 2),
    (lambda meta: {**meta, "sha256": None}, False, 2),
    (lambda meta: {**meta, "iterations": -1}, False, 2),
    (lambda meta: {**meta, "previous": "x"}, True, 1),              # was an AttributeError
    (lambda meta: {**meta, "previous": {"epoch": 1}}, True, 1),
])
def test_metadata_that_parses_but_lacks_what_it_needs_resumes_from_the_newest_file(
        tmp_path, capsys, edit, corrupt, resumed):
    """Issue #38: `{}` in training_metadata.json said "starting from scratch" and trained from
    iteration 0 beside two intact checkpoints; `"previous": "x"` raised AttributeError. Such
    metadata is now read as unreadable metadata is: the newest checkpoint file that is not known
    to be corrupt, with a warning naming what is missing."""
    backup = tmp_path / "backup"
    meta = edit(_backup_of_two_states(backup))
    files.write_json(backup / rundir.METADATA, meta)
    if corrupt:  # the latest file fails its checksum: the previous state is what is left
        (backup / "epoch2.weights.h5").write_bytes(b"truncated")
    state = reliability.Checkpointer(backup).resume_state()
    assert (state["epoch"], state["weights"]) == (resumed, f"epoch{resumed}.weights.h5")
    assert state["sha256"] == files.sha256(backup / state["weights"])
    err = capsys.readouterr().err
    assert f"warning: {backup / rundir.METADATA} is not usable (its " in err
    assert f"resuming from the newest checkpoint file {backup / state['weights']}" in err


def test_malformed_metadata_without_a_good_file_refuses_in_one_line(tmp_path):
    backup = tmp_path / "backup"
    meta = _backup_of_two_states(backup)
    for path in backup.glob("epoch*.weights.h5"):
        path.unlink()
    files.write_json(backup / rundir.METADATA, {**meta, "previous": "x", "sha256": 5})
    with pytest.raises(reliability.ResumeError, match=r"is not usable \(its latest state has no "
                                                      r"SHA-256.*; its previous state is a str, "
                                                      r"not a mapping\) and .* holds no "
                                                      r"checkpoint; delete") as error:
        reliability.Checkpointer(backup).resume_state()
    assert "\n" not in str(error.value)


def test_a_save_after_malformed_metadata_keeps_the_state_it_resumed_from(tmp_path):
    """The malformed latest state must not become the new "previous" (its missing "weights"
    would let the save delete the checkpoint it resumed from)."""
    backup = tmp_path / "backup"
    _backup_of_two_states(backup)
    files.write_json(backup / rundir.METADATA, {"note": "hand-edited"})
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    checkpointer = reliability.Checkpointer(backup)
    checkpointer.set_model(model)
    resumed = checkpointer.resume_state()
    checkpointer.save(3)
    meta = files.read_json(backup / rundir.METADATA)
    assert meta["previous"] == resumed and meta["weights"] == "epoch3.weights.h5"
    assert sorted(p.name for p in backup.glob("epoch*.weights.h5")) == [
        "epoch2.weights.h5", "epoch3.weights.h5"]


@pytest.mark.slow
def test_damaged_metadata_without_checkpoints_refuses_and_says_how_to_restart(tiny_config,
                                                                              tmp_path):
    config = dataclasses.replace(tiny_config, epochs=3)
    with pytest.raises(KeyboardInterrupt):
        train.run_experiment(config, tmp_path, callbacks=[_At(2, _interrupt)], verbose=0)
    for state in (tmp_path / "backup").glob("epoch*.weights.h5"):
        state.unlink()
    (tmp_path / "backup" / rundir.METADATA).write_bytes(b"\0" * 10)
    history = (tmp_path / "history.csv").read_text()
    with pytest.raises(reliability.ResumeError, match="holds no checkpoint; delete .*backup and "
                                                      ".*history.csv to restart this run from "
                                                      "zero") as error:
        train.run_experiment(config, tmp_path, verbose=0)
    assert "\n" not in str(error.value)
    assert (tmp_path / "history.csv").read_text() == history  # nothing lost


@pytest.mark.slow
def test_damaged_history_row_or_metrics_json_one_line_naming_the_file(tiny_config, tmp_path,
                                                                     capsys):
    config = dataclasses.replace(tiny_config, epochs=3)
    with pytest.raises(KeyboardInterrupt):
        train.run_experiment(config, tmp_path, callbacks=[_At(2, _interrupt)], verbose=0)
    path = tmp_path / "history.csv"
    good = path.read_text()
    path.write_text(good + "garbage,row\n")
    with pytest.raises(rundir.HistoryError, match=f"{path}: line 4 is not a history row .*fix "
                                                 "or delete that line"):
        train.run_experiment(config, tmp_path, verbose=0)
    assert path.read_text() == good + "garbage,row\n"  # not rewritten
    rc = cli.main(_train_cmd(tmp_path, 3, "--set", "val_fraction=0.1"))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err[-1].startswith(f"error: {path}: line 4"), err

    # Issue #38: history.csv removed, or cut short, beside a checkpoint of 2 periods: the rerun
    # finished with fewer rows and no word. Now refused in one line, before the net is built,
    # nothing changed.
    header, first, _ = good.splitlines(keepends=True)
    for damaged, what in ((None, "is missing"), (header + first, "holds 1 of the 2 rows")):
        if damaged is None:
            path.unlink()
        else:
            path.write_text(damaged)
        backup = sorted(p.name for p in (tmp_path / "backup").iterdir())
        with pytest.raises(rundir.HistoryError, match=f"{path} {what}, but the checkpoint "
                                                     f"in .*backup has done 2 periods"):
            train.run_experiment(config, tmp_path, verbose=0)
        assert (path.read_text() if damaged else path.exists()) == (damaged or False)
        assert sorted(p.name for p in (tmp_path / "backup").iterdir()) == backup
    rc = cli.main(_train_cmd(tmp_path, 3, "--set", "val_fraction=0.1"))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err[-1].startswith(f"error: {path} holds 1 of the 2 rows"), err

    # metrics.json damaged while the backup is there: said, ignored, rewritten at the end.
    path.write_text(good)
    (tmp_path / "metrics.json").write_text("{not json")
    metrics = train.run_experiment(config, tmp_path, verbose=0)
    assert "metrics.json is unreadable" in capsys.readouterr().err
    assert metrics["status"] == "complete" and _periods(tmp_path) == [0, 1, 2]
    # ... and of a finished run (no backup left): refused, since training again would replace
    # its final.keras.
    (tmp_path / "metrics.json").write_text("")
    with pytest.raises(train.TrainingError, match="metrics.json is unreadable .* no backup left "
                                                  ".*delete metrics.json to train this run "
                                                  "again from zero"):
        train.run_experiment(config, tmp_path, verbose=0)


@pytest.mark.slow
def test_run_directories_of_earlier_versions_load_and_resume(tmp_path):
    complete = keras.saving.load_model(EARLIER / "complete" / "final.keras")
    assert complete.name == "resnet8_v1" and int(complete.optimizer.iterations) == 4
    run = tmp_path / "interrupted"
    shutil.copytree(EARLIER / "interrupted", run)
    # Its config.json is refused, in one line naming the script, until migrated once.
    with pytest.raises(config_lib.ConfigError, match=r"is not of this version "
                       r"\(lacks .*\); .* migrate it once: python -m "
                       r"benchmarks.migrate_config_json .*config\.json$"):
        config_lib.load(run / "config.json")
    shutil.rmtree(run)
    run = earlier_run("interrupted", run)
    assert config_lib.load(run / "config.json").whole_passes is True  # as that code trained
    assert reliability.Checkpointer(run / "backup").resume_epoch() == 1
    metrics = train.run_experiment(config_lib.load(run / "config.json"), run, verbose=0)
    assert metrics["status"] == "complete" and metrics["iterations"] == 4
    assert _periods(run) == [0, 1] and not (run / "backup").exists()
    # Its history.csv, whose header said `epoch` and `epoch_time` (issue #39), was rewritten
    # once under today's header with the new row: one header naming every row, the old row's
    # cells as they were.
    old_header, old_row = (EARLIER / "interrupted" / "history.csv").read_text().splitlines()
    header, *rows = (run / "history.csv").read_text().splitlines()
    assert old_header.startswith("epoch,") and header == ",".join(rundir.HISTORY_FIELDS)
    assert len(rows) == 2 and rows[0] == old_row
    assert all(len(row.split(",")) == len(rundir.HISTORY_FIELDS) for row in rows)
    resumed = keras.saving.load_model(run / "final.keras")
    assert int(resumed.optimizer.iterations) == 4
    # The old state's weights, SGD momentum and iteration count were all restored: the resumed
    # run ends where the unbroken one did. Bit for bit on the machine that wrote the fixture
    # (checked); the tolerance leaves room for another CPU's float32 rounding in epoch 2 only.
    # Momentum lost or the schedule restarted would differ by ~1e-3 or more.
    pairs = list(zip(resumed.weights + resumed.optimizer.variables,
                     complete.weights + complete.optimizer.variables))
    assert len(pairs) == len(complete.weights) + len(complete.optimizer.variables)
    for got, want in pairs:
        assert got.path.split("/")[1:] == want.path.split("/")[1:]  # optimizer: sgd_<k>/
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-7,
                                   err_msg=got.path)


def test_best_checkpoint_saves_only_improvements_over_the_resumed_best(tmp_path, monkeypatch):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    best = reliability.BestCheckpoint(tmp_path / "best.keras", monitor="val_accuracy",
                                      mode="max", best=0.5)  # a resumed run's best so far
    best.set_model(model)
    saved, save = [], reliability.atomic_save
    monkeypatch.setattr(reliability, "atomic_save",
                        lambda m, path: saved.append(float(m.layers[0].bias[0])) or save(m, path))
    for accuracy in (0.4, 0.5, float("nan"), 0.6, 0.55, 0.7, 0.65):
        model.layers[0].bias.assign([0.0 if math.isnan(accuracy) else accuracy])
        best.on_epoch_end(0, {"val_accuracy": accuracy})
    assert saved == pytest.approx([0.6, 0.7]) and best.best == 0.7
    loaded = keras.saving.load_model(tmp_path / "best.keras")
    assert float(loaded.layers[0].bias[0]) == pytest.approx(0.7)  # the best epoch's weights
    assert not list(tmp_path.glob(".*tmp*"))


# ---------------------------------------------------------------------------------------------
# 5. NaN / Inf loss.


@pytest.mark.slow
def test_nan_loss_fails_with_the_step_and_keeps_the_last_good_checkpoint(tiny_config, tmp_path):
    def poison(model):
        kernel = model.get_layer("stem_conv").kernel
        kernel.assign(np.full(kernel.shape, np.nan, "float32"))

    config = dataclasses.replace(tiny_config, epochs=3)
    with pytest.raises(train.TrainingError, match="iteration 5 "):
        train.run_experiment(config, tmp_path, callbacks=[_At(1, poison)], verbose=0)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    # The logging period it diverged in (issue #39: `epoch` before), and those finished.
    assert metrics["status"] == "failed" and metrics["step"] == 5 and metrics["period"] == 2
    assert metrics["finished_periods"] == 1 and not {"epoch", "finished_epochs"} & set(metrics)
    assert rundir.read_metrics(tmp_path) == metrics
    assert _periods(tmp_path) == [0]
    backup = reliability.Checkpointer(tmp_path / "backup")
    assert backup.resume_epoch() == 1
    model = build.build_model(config)
    model.optimizer.build(model.trainable_variables)
    model.load_weights(tmp_path / "backup" / backup.resume_state()["weights"])
    assert all(np.isfinite(w).all() for w in model.get_weights())


@pytest.mark.slow
def test_cli_nan_loss_exits_1_with_one_line(tmp_path, capsys):
    rc = cli.main(_train_cmd(tmp_path, 1, "--lr", "1e30", "--set", "momentum=0"))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err[-1].startswith("error: ") and "diverged" in err[-1]
    assert json.loads((tmp_path / "metrics.json").read_text())["step"] >= 1


def _poison_bn_variance(model):
    """Sets one BatchNorm moving variance to inf: a finite loss, but a diverged model."""
    layer = next(l for l in model._flatten_layers() if isinstance(l, keras.layers.BatchNormalization))
    layer.moving_variance.assign(np.full(layer.moving_variance.shape, np.inf, "float32"))


@pytest.mark.slow
def test_non_finite_weights_after_the_last_batch_stop_before_the_checkpoint(tiny_config,
                                                                           tmp_path):
    """Issue #25: the last batch's update lands after its loss is logged; an inf BatchNorm
    statistic at an epoch's end must not be backed up, recorded or end as "complete"."""
    config = dataclasses.replace(tiny_config, epochs=3)
    steps = config.plan(230)[0]  # 230 of the 256 images train (val_fraction 0.1)
    with pytest.raises(train.TrainingError, match=r"1 variable\(s\) hold NaN or Inf "
                                                  r"\(.*moving_variance\) at iteration 8 "):
        train.run_experiment(config, tmp_path,
                             callbacks=[_At(1, _poison_bn_variance, batch=steps - 1)], verbose=0)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "failed" and metrics["finished_periods"] == 1
    assert _periods(tmp_path) == [0] and not (tmp_path / "final.keras").exists()
    backup = reliability.Checkpointer(tmp_path / "backup")
    assert backup.resume_epoch() == 1  # the last finite state is the resume point
    model = build.build_model(config)
    model.optimizer.build(model.trainable_variables)
    model.load_weights(tmp_path / "backup" / backup.resume_state()["weights"])
    assert not reliability.non_finite_variables(model)


def test_a_huge_finite_loss_is_divergence(tiny_config, tmp_path):
    stop = reliability.DivergenceStop(steps_per_epoch=4)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    stop.set_model(model)
    stop.on_epoch_end(0, {"loss": reliability.MAX_LOSS})  # the bound itself passes
    with pytest.raises(reliability.Diverged, match=r"loss 1e\+25 is above 10000 at iteration 8 "
                                                   r"\(period 2\)"):
        stop.on_epoch_end(1, {"loss": 1e25})
    with pytest.raises(reliability.Diverged, match="loss nan"):
        stop.on_epoch_end(1, {"loss": float("nan")})


def test_the_cross_entropy_not_the_weight_decay_term_decides_divergence():
    stop = reliability.DivergenceStop(steps_per_epoch=4)
    stop.set_model(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
    stop.on_epoch_end(0, {"loss": 1e8, "cross_entropy": 2.5})  # weight decay: training goes on
    with pytest.raises(reliability.Diverged, match=r"the period's cross-entropy 5e\+04 is above "
                                                   r"10000 at iteration 8 \(period 2\)"):
        stop.on_epoch_end(1, {"loss": 1e8, "cross_entropy": 5e4})


def test_the_cross_entropy_bound_is_three_times_chance_the_same_on_every_backend():
    """Issue #38: under JAX, whose cross-entropy clips the probabilities (at most 16.1), `--lr
    100` never passed MAX_LOSS and ended "complete"; its first period's cross-entropy was 13.9."""
    stop = reliability.DivergenceStop(steps_per_epoch=20, num_classes=10)
    stop.set_model(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
    stop.on_epoch_end(0, {"loss": 1e6, "cross_entropy": 3 * math.log(10)})  # the bound passes
    with pytest.raises(reliability.Diverged, match=r"the period's cross-entropy 13.9 is above "
                                                   r"6.91 \(3 times chance's 2.3\) at iteration "
                                                   r"40 \(period 2\)"):
        stop.on_epoch_end(1, {"loss": 37.7, "cross_entropy": 13.9})
    hundred = reliability.DivergenceStop(steps_per_epoch=20, num_classes=100)
    hundred.set_model(stop.model)
    hundred.on_epoch_end(0, {"cross_entropy": 13.8})  # CIFAR-100: 3 ln 100 = 13.8
    with pytest.raises(reliability.Diverged, match="above 13.8"):
        hundred.on_epoch_end(0, {"cross_entropy": 13.9})


def test_the_compiled_cross_entropy_is_the_loss_without_weight_decay(tiny_config):
    model = build.build_model(dataclasses.replace(tiny_config, weight_decay=1.0))
    x = np.random.default_rng(0).normal(size=(16, 32, 32, 3)).astype("float32")
    y = np.arange(16) % 10
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    penalty = sum(float(keras.ops.convert_to_numpy(loss)) for loss in model.losses)
    assert penalty > 10 * logs[reliability.DATA_LOSS]  # the weight-decay term dominates here
    assert logs[reliability.DATA_LOSS] == pytest.approx(logs["loss"] - penalty, rel=1e-3)


@pytest.mark.slow
def test_a_deep_plain_net_whose_kernels_grow_a_billionfold_trains_on(tmp_path):
    """Plain-110 at lr 0.1: gradient explosion at initialization lengthens the kernels behind
    BatchNorm so far that the weight-decay term alone is above MAX_LOSS (docs/full-repro,
    "Plain-56"); the cross-entropy stays in range and the run must not end as "diverged"."""
    config = config_lib.resolve(overrides=dict(
        dataset="synthetic", depth=110, plain=True, epochs=1, batch_size=64,
        synthetic_train=128, synthetic_test=64, warmup_iterations=0))
    metrics = train.run_experiment(config, tmp_path, verbose=0)
    assert metrics.get("status") != "failed"
    [row] = rundir.read_history(tmp_path / "history.csv")
    assert row["loss"] > reliability.MAX_LOSS  # nearly all of it the weight-decay term
    assert (tmp_path / "final.keras").exists()


@pytest.mark.slow
def test_cli_lr_100_diverges_exit_1_one_line_never_complete(tmp_path, capsys):
    """The issue's probe: `--lr 100` trained to loss ~1e25 and inf BatchNorm variances and
    ended "complete"."""
    rc = cli.main(_train_cmd(tmp_path, 4, "--lr", "100"))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err[-1].startswith("error: ") and "diverged" in err[-1], err
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "failed"
    assert not (tmp_path / "final.keras").exists()


# ---------------------------------------------------------------------------------------------
# 4. Bad configuration or CLI values: exit 2, one line, nothing written.


@pytest.mark.parametrize("args, message", [
    (["--preset", "nope"], "preset 'nope'"),
    (["--config", "BINARY"], "cannot read config file"),
    # All 256 synthetic images train: no validation split by default (the paper's 50k).
    (["--batch-size", "4096"], "batch_size 4096 is larger than the 256 training images"),
    (["--set", "no_such_field=1"], "expected KEY=VALUE"),
])
def test_cli_bad_values_exit_2_one_line_nothing_written(args, message, tmp_path, capsys):
    binary = tmp_path / "bad.yaml"
    binary.write_bytes(b"\xff\xfe\x00 not utf-8")
    args = [str(binary) if a == "BINARY" else a for a in args]
    rc = cli.main(_train_cmd(tmp_path / "run", 1, *args))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "run").exists()


NO_TF = ("import sys\n"
         "from cifar_resnet.__main__ import main\n"
         "status = main(sys.argv[1:])\n"
         "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
         "sys.exit(status)\n")


@pytest.mark.slow
def test_a_finished_run_answers_without_tensorflow(tmp_path, capsys):
    """Issue #25: rerunning a finished run took 13.6 s (TensorFlow imported, data read)."""
    assert cli.main(_train_cmd(tmp_path, 1)) == 0
    final = capsys.readouterr().out.strip().splitlines()[-1]
    result = subprocess.run([sys.executable, "-c", NO_TF, *_train_cmd(tmp_path, 1)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == f"{tmp_path}: already complete; nothing to do"
    assert result.stdout.strip() == final


# ---------------------------------------------------------------------------------------------
# 6. Run-directory lock.


@pytest.mark.slow
def test_second_process_on_a_run_directory_is_refused(tiny_config, tmp_path, capsys):
    with reliability.run_lock(tmp_path):
        with pytest.raises(reliability.RunLocked, match=f"in use by process {os.getpid()}"):
            train.run_experiment(tiny_config, tmp_path, verbose=0)
        assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]  # nothing else written
        rc = cli.main(_train_cmd(tmp_path, 2))
        assert rc == 2 and "is in use by process" in capsys.readouterr().err
        # Refused before TensorFlow is imported (issue #25: it took 15 s).
        result = subprocess.run([sys.executable, "-c", NO_TF, *_train_cmd(tmp_path, 2)],
                                cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and result.stderr.strip() == (
            f"error: {tmp_path} is in use by process {os.getpid()}; wait for it to finish or "
            "use another --workdir")
    train.run_experiment(tiny_config, tmp_path, verbose=0)  # the lock is free again
    assert _periods(tmp_path) == [0, 1]


def test_lock_of_a_killed_process_is_taken_over(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(tmp_path / '.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.write(fd, str(os.getpid()).encode()); print('locked', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(reliability.RunLocked, match=f"process {holder.pid};"):
        with reliability.run_lock(tmp_path):
            pass
    holder.kill()
    holder.wait()
    with reliability.run_lock(tmp_path) as lock:  # the dead process's lock file is taken over
        assert lock.read_text().strip() == str(os.getpid())
        fd = os.open(lock, os.O_RDWR)
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(fd)


def test_a_finished_run_removes_its_lock_while_holding_it(tmp_path):
    from cifar_resnet.spec import files
    with reliability.run_lock(tmp_path) as lock:
        files.write_json(tmp_path / "metrics.json", {"status": "complete"})
        assert lock.exists()
    assert not lock.exists()
    with reliability.run_lock(tmp_path / "") as lock:  # not finished: the file stays
        (tmp_path / "metrics.json").unlink()
    assert lock.exists()


def test_a_lock_file_removed_before_its_flock_was_taken_is_not_held(tmp_path, monkeypatch):
    """Issue #26: a finished run unlinks its .lock while holding it. A process that opened the
    old file just before the removal, and flocks it just after, holds nothing: run_lock opens the
    path again (else two processes would each hold "the" lock)."""
    real_flock, taken = fcntl.flock, []

    def flock_then_the_finished_run_removes_the_file(fd, operation):
        real_flock(fd, operation)
        taken.append(fd)
        if len(taken) == 1:
            os.unlink(tmp_path / ".lock")

    monkeypatch.setattr(reliability.fcntl, "flock", flock_then_the_finished_run_removes_the_file)
    with reliability.run_lock(tmp_path) as lock:
        assert lock.exists() and len(taken) == 2  # the path opened and locked again
        monkeypatch.setattr(reliability.fcntl, "flock", real_flock)
        fd = os.open(lock, os.O_RDWR)
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(fd)
