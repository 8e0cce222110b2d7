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
import random
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from cifar_resnet import __main__ as cli
from cifar_resnet.run import config as config_lib
from cifar_resnet.run import reliability, train

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Run directories written by the code before resume used public Keras APIs (README.md there).
EARLIER = ROOT / "tests" / "fixtures" / "keras3.15-v1-depth8"
TINY = ["--dataset", "synthetic", "--depth", "8", "--batch-size", "64",
        "--set", "synthetic_train=256", "--set", "synthetic_test=128"]

# Runs the CLI, SIGKILLing itself just before the N-th os.replace onto a file named NAME: after
# the temporary file is complete, before it takes the real name (KILL_BEFORE="NAME:N").
KILLER = """
import os, signal, sys
name, n = os.environ["KILL_BEFORE"].split(":")
real, seen = os.replace, [0]
def replace(src, dst):
    if str(dst).endswith(name):
        seen[0] += 1
        if seen[0] == int(n):
            os.kill(os.getpid(), signal.SIGKILL)
    real(src, dst)
os.replace = replace
from cifar_resnet.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def _train_cmd(workdir, epochs, *extra):
    return ["train", *TINY, "--epochs", str(epochs), "--workdir", str(workdir), *extra]


def _popen(args, env=None, code=None):
    cmd = [sys.executable, *(["-c", code] if code else ["-m", "cifar_resnet"]), *args]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **(env or {})})


def _epochs(workdir):
    return [int(r["epoch"]) for r in train.read_history(workdir / "history.csv")]


class _At(keras.callbacks.Callback):
    """Calls `action(model)` at the start of epoch `epoch` (after batch `batch` if given)."""

    def __init__(self, epoch, action, batch=None):
        super().__init__()
        self.epoch, self.action, self.batch, self.current = epoch, action, batch, -1

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch
        if epoch == self.epoch and self.batch is None:
            self.action(self.model)

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch and batch == self.batch:
            self.action(self.model)


def _interrupt(model):
    raise KeyboardInterrupt


# ---------------------------------------------------------------------------------------------
# 1. SIGKILL anywhere, rerun: every epoch once, and the same weights as an unbroken run.


@pytest.mark.slow
def test_sigkill_anywhere_then_rerun_completes_and_matches_an_unbroken_run(tmp_path):
    epochs, det = 4, ["--set", "deterministic=true"]
    reference = _popen(_train_cmd(tmp_path / "ref", epochs, *det))
    run = tmp_path / "run"
    # Before the weights of epoch 2 take their name; between those weights and the metadata
    # that points to them; then at a random moment of training.
    for kill_before in ("epoch2.weights.h5:1", "training_metadata.json:2"):
        proc = _popen(_train_cmd(run, epochs, *det), env={"KILL_BEFORE": kill_before},
                      code=KILLER)
        assert proc.wait(timeout=300) == -signal.SIGKILL, proc.stderr.read()
    proc = _popen(_train_cmd(run, epochs, *det))
    for line in proc.stderr:  # the start line: TensorFlow is up, the model is built
        if "params" in line:
            break
    time.sleep(random.uniform(0.0, 2.0))
    proc.kill()
    proc.wait(timeout=60)
    final = subprocess.run([sys.executable, "-m", "cifar_resnet", *_train_cmd(run, epochs, *det)],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    assert reference.wait(timeout=300) == 0, reference.stderr.read()

    assert _epochs(run) == list(range(epochs))  # every epoch exactly once
    assert json.loads((run / "metrics.json").read_text())["iterations"] == 4 * epochs
    assert not (run / "backup").exists() and not list(run.glob(".*.tmp*"))
    got = keras.saving.load_model(run / "final.keras").get_weights()
    want = keras.saving.load_model(tmp_path / "ref" / "final.keras").get_weights()
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)  # bitwise


# ---------------------------------------------------------------------------------------------
# 2. SIGINT / SIGTERM: stop after the batch, one line, exit 128 + signal, resumable.


@pytest.mark.slow
def test_sigterm_stops_after_a_batch_exit_143_one_line_resumable(tmp_path):
    proc = _popen(_train_cmd(tmp_path, 200))
    deadline = time.monotonic() + 240
    while not (tmp_path / "backup" / reliability.METADATA).exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143
    assert proc.stderr.read().strip().splitlines()[-1] == (
        "interrupted; rerun the same command to resume from the last finished epoch "
        "(logging period; the iterations after it are trained again)")
    done = reliability.Checkpointer(tmp_path / "backup").resume_epoch()
    assert done >= 1 and _epochs(tmp_path) == list(range(done))  # nothing half-recorded


def test_sigint_in_process_raises_interrupted_then_the_rerun_completes(tiny_config, tmp_path):
    sigint = _At(1, lambda model: os.kill(os.getpid(), signal.SIGINT), batch=1)
    # Python's default_int_handler, or SIG_IGN where the process started with SIGINT ignored
    # (a background job of a script, a pytest-xdist worker).
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(reliability.Interrupted) as stopped:
        train.run_experiment(tiny_config, tmp_path, callbacks=[sigint], verbose=0)
    assert stopped.value.exit_status == 130
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored
    assert _epochs(tmp_path) == [0]  # the half epoch is neither recorded nor backed up
    train.run_experiment(tiny_config, tmp_path, verbose=0)
    assert _epochs(tmp_path) == [0, 1]


# ---------------------------------------------------------------------------------------------
# Atomic, checksummed checkpoints; a corrupt latest one falls back to the previous.


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
    model = train.build_model(config)
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
    assert _epochs(tmp_path) == [0, 1, 2] and metrics["iterations"] == 12


def test_run_directories_of_earlier_versions_load_and_resume(tmp_path):
    complete = keras.saving.load_model(EARLIER / "complete" / "final.keras")
    assert complete.name == "resnet8_v1" and int(complete.optimizer.iterations) == 4
    run = tmp_path / "interrupted"
    shutil.copytree(EARLIER / "interrupted", run)
    assert reliability.Checkpointer(run / "backup").resume_epoch() == 1
    metrics = train.run_experiment(config_lib.load(run / "config.json"), run, verbose=0)
    assert metrics["status"] == "complete" and metrics["iterations"] == 4
    assert _epochs(run) == [0, 1] and not (run / "backup").exists()
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


def test_nan_loss_fails_with_the_step_and_keeps_the_last_good_checkpoint(tiny_config, tmp_path):
    def poison(model):
        kernel = model.get_layer("stem_conv").kernel
        kernel.assign(np.full(kernel.shape, np.nan, "float32"))

    config = dataclasses.replace(tiny_config, epochs=3)
    with pytest.raises(train.TrainingError, match="iteration 5 "):
        train.run_experiment(config, tmp_path, callbacks=[_At(1, poison)], verbose=0)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "failed" and metrics["step"] == 5 and metrics["epoch"] == 2
    assert _epochs(tmp_path) == [0]
    backup = reliability.Checkpointer(tmp_path / "backup")
    assert backup.resume_epoch() == 1
    model = train.build_model(config)
    model.optimizer.build(model.trainable_variables)
    model.load_weights(tmp_path / "backup" / backup.resume_state()["weights"])
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_cli_nan_loss_exits_1_with_one_line(tmp_path, capsys):
    rc = cli.main(_train_cmd(tmp_path, 1, "--lr", "1e30", "--set", "momentum=0"))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err[-1].startswith("error: ") and "diverged" in err[-1]
    assert json.loads((tmp_path / "metrics.json").read_text())["step"] >= 1


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


# ---------------------------------------------------------------------------------------------
# 6. Run-directory lock.


def test_second_process_on_a_run_directory_is_refused(tiny_config, tmp_path, capsys):
    with reliability.run_lock(tmp_path):
        with pytest.raises(reliability.RunLocked, match=f"in use by process {os.getpid()}"):
            train.run_experiment(tiny_config, tmp_path, verbose=0)
        assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]  # nothing else written
        rc = cli.main(_train_cmd(tmp_path, 2))
        assert rc == 2 and "is in use by process" in capsys.readouterr().err
    train.run_experiment(tiny_config, tmp_path, verbose=0)  # the lock is free again
    assert _epochs(tmp_path) == [0, 1]


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
    from cifar_resnet.run import files
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
