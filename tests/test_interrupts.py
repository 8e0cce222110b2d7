"""Issues #5 and #26: a run stopped anyhow resumes as an unbroken run would. SIGKILL anywhere
(the last finished period), SIGTERM and SIGINT (the iteration they stop at, bit for bit).

docs/reliability.md maps each case to its test. Split from test_reliability.py so that the two
test processes share the slow ones.
"""

import dataclasses
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from cifar_resnet.run import reliability, train
from cifar_resnet.spec import files, rundir

from cli_runs import KILLER, ROOT, _At, _periods, _popen, _train_cmd

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

    assert _periods(run) == list(range(epochs))  # every epoch exactly once
    assert json.loads((run / "metrics.json").read_text())["iterations"] == 4 * epochs
    assert not (run / "backup").exists() and not list(run.glob(".*.tmp*"))
    _assert_final_weights_equal(run, tmp_path / "ref")


# ---------------------------------------------------------------------------------------------
# 2. SIGINT / SIGTERM: stop after the batch, one line, exit 128 + signal, resumable.


@pytest.mark.slow
def test_sigterm_stops_after_a_batch_exit_143_one_line_resumable(tmp_path):
    proc = _popen(_train_cmd(tmp_path, 200))
    deadline = time.monotonic() + 240
    while not (tmp_path / "backup" / rundir.METADATA).exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143
    last = proc.stderr.read().strip().splitlines()[-1]
    stopped = re.fullmatch(r"interrupted; rerun the same command to resume from iteration (\d+)",
                           last)
    assert stopped, last
    backup = reliability.Checkpointer(tmp_path / "backup")
    iteration = int(stopped.group(1))  # 4 iterations per epoch
    assert backup.resume_iteration(4) == iteration and backup.resume_epoch() == iteration // 4
    assert iteration >= 4 and _periods(tmp_path) == list(range(iteration // 4))  # nothing half-recorded


@pytest.mark.slow
def test_ctrl_c_with_stdout_piped_into_grep_exits_right_after_its_message(tmp_path):
    """Ctrl-C (SIGINT to the whole foreground group: the trainer and the grep it pipes into)
    ends the trainer within a second of its message, exit 130, with nothing about the pipe;
    the interpreter's teardown after the message took seconds (up to a minute on a bigger
    net)."""
    err = tmp_path / "stderr"
    train = " ".join([sys.executable, "-m", "cifar_resnet",
                      *_train_cmd(tmp_path / "run", 200)])
    shell = subprocess.Popen(
        ["bash", "-c", f"{train} 2>{err} | grep -v zzz >/dev/null; exit ${{PIPESTATUS[0]}}"],
        cwd=ROOT, start_new_session=True)  # its own group, as a terminal's foreground job
    deadline = time.monotonic() + 240
    while not (tmp_path / "run" / "backup" / rundir.METADATA).exists():  # training under way
        assert shell.poll() is None and time.monotonic() < deadline, err.read_text()
        time.sleep(0.05)
    os.killpg(shell.pid, signal.SIGINT)
    while "interrupted;" not in err.read_text():
        assert time.monotonic() < deadline, err.read_text()
        time.sleep(0.01)
    said = time.monotonic()
    assert shell.wait(timeout=120) == 130
    assert time.monotonic() - said < 1.0, "exited %.1f s after its message" % (
        time.monotonic() - said)
    last = err.read_text().strip().splitlines()
    assert last[-1].startswith("interrupted; rerun the same command to resume from iteration")
    assert not any("BrokenPipe" in line or "Exception ignored" in line for line in last)


@pytest.mark.slow
def test_sigint_in_process_raises_interrupted_then_the_rerun_completes(tiny_config, tmp_path):
    sigint = _At(1, lambda model: os.kill(os.getpid(), signal.SIGINT), batch=1)
    # Python's default_int_handler, or SIG_IGN where the process started with SIGINT ignored
    # (a background job of a script, a pytest-xdist worker).
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(reliability.Interrupted) as stopped:
        train.run_experiment(tiny_config, tmp_path, callbacks=[sigint], verbose=0)
    assert stopped.value.exit_status == 130
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored
    assert stopped.value.iteration == 6  # 4 per epoch: the state at iteration 6 is saved
    assert _periods(tmp_path) == [0]  # the half epoch is not recorded
    train.run_experiment(tiny_config, tmp_path, verbose=0)
    assert _periods(tmp_path) == [0, 1]


class _SignalAt(keras.callbacks.Callback):
    """Sends SIGINT to this process at the end of the batch that completes iteration
    `iteration` (1-based); SignalStop's handler records it at once, before the next callback."""

    def __init__(self, iteration):
        super().__init__()
        self.iteration = iteration

    def on_train_batch_end(self, batch, logs=None):
        if int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)) == self.iteration:
            os.kill(os.getpid(), signal.SIGINT)


def _history_without_times(workdir):
    """history.csv's cells as written, but for the timing columns (period_time, wall_time)."""
    header, *rows = (workdir / "history.csv").read_text().splitlines()
    keep = [i for i, name in enumerate(header.split(",")) if name not in ("period_time",
                                                                          "wall_time")]
    return [[row.split(",")[i] for i in keep] for row in [header, *rows]]


def _assert_final_weights_equal(run, reference):
    """The two runs' final.keras hold bitwise equal weights."""
    got = keras.saving.load_model(run / "final.keras").get_weights()
    want = keras.saving.load_model(reference / "final.keras").get_weights()
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)  # bitwise


@pytest.mark.slow
@pytest.mark.parametrize("pipeline", ["tfdata", "device"])
def test_ctrl_c_mid_period_saves_that_iteration_and_resumes_bit_identical(tiny_config, tmp_path,
                                                                          pipeline, capsys):
    """Issue #26: Ctrl-C saves the state at its iteration (the paper's schedule is by
    iteration), and the reruns end with the weights and history of an unbroken run, bit for
    bit: stopped in the very first period (which used to restart at 0), in the middle of a
    later one right after a mid-period resume, then (tf.data) in a period's last batch, and
    once more from a mid-period state reached by the fallback from a corrupt latest state."""
    config = dataclasses.replace(tiny_config, epochs=3, deterministic=True,
                                 input_pipeline=pipeline)  # 3 periods of 4 iterations
    train.run_experiment(config, tmp_path / "unbroken", verbose=0)
    run, backup = tmp_path / "run", tmp_path / "run" / "backup"

    def stop_at(iteration):
        with pytest.raises(reliability.Interrupted) as stopped:
            train.run_experiment(config, run, callbacks=[_SignalAt(iteration)], verbose=0)
        return stopped.value.iteration, json.loads((backup / rundir.METADATA).read_text())

    # Inside the first period: its 2 iterations are kept, with the period's accumulators.
    iteration, meta = stop_at(2)
    assert iteration == 2 and not (run / "history.csv").exists()
    assert (meta["epoch"], meta["iterations"], meta["weights"]) == (0, 2, "epoch0-iter2.weights.h5")
    assert "previous" not in meta and meta["metrics"]["loss/count"] == 128  # 2 batches of 64
    assert reliability.Checkpointer(backup).resume_iteration(4) == 2
    # Resumed at 2, period 0 ends (backed up) and period 1 stops after its 3rd iteration.
    iteration, meta = stop_at(7)
    assert (iteration, meta["epoch"], meta["iterations"]) == (7, 1, 7) and _periods(run) == [0]
    assert meta["previous"] == {"epoch": 1, "weights": "epoch1.weights.h5",
                                "sha256": files.sha256(backup / "epoch1.weights.h5")}
    if pipeline == "device":  # the same mechanism; the input's start and skip are what differ
        train.run_experiment(config, run, verbose=0)
        assert _history_without_times(run) == _history_without_times(tmp_path / "unbroken")
        _assert_final_weights_equal(run, tmp_path / "unbroken")
        return
    # In the last batch of period 1: the period ends (row, backup), then the stop.
    iteration, meta = stop_at(8)
    assert (iteration, meta["epoch"], meta.get("iterations")) == (8, 2, None)
    assert _periods(run) == [0, 1] and meta["previous"]["iterations"] == 7
    assert sorted(p.name for p in backup.glob("*.h5")) == ["epoch1-iter7.weights.h5",
                                                           "epoch2.weights.h5"]
    # A truncated latest state: the previous, mid-period one (iteration 7) is used whole.
    latest = backup / "epoch2.weights.h5"
    latest.write_bytes(latest.read_bytes()[:1000])
    capsys.readouterr()
    train.run_experiment(config, run, verbose=0)
    assert f"checkpoint {latest} is corrupt or truncated" in capsys.readouterr().err

    assert _history_without_times(run) == _history_without_times(tmp_path / "unbroken")
    assert _periods(run) == [0, 1, 2] and not backup.exists()
    _assert_final_weights_equal(run, tmp_path / "unbroken")


@pytest.mark.slow
def test_iterations_are_trained_exactly_and_a_ctrl_c_in_the_short_last_period_resumes(
        tiny_config, tmp_path):
    """`iterations` N trains N: the last period is short (10 = 4 + 4 + 2), the lr drops at 50%
    and 75% of N; before, 10 trained 12. A Ctrl-C in that short period resumes to the unbroken
    run's history and weights, bit for bit."""
    config = dataclasses.replace(tiny_config, epochs=None, iterations=10, deterministic=True)
    metrics = train.run_experiment(config, tmp_path / "unbroken", verbose=0)
    history = rundir.read_history(tmp_path / "unbroken" / "history.csv")
    assert [r["iterations"] for r in history] == [4, 8, 10]
    # The rate of each period's last batch: iteration 4 (< 5), 8 (< 7.5), 10.
    assert [r["lr"] for r in history] == pytest.approx([0.1, 0.01, 0.001])
    assert (metrics["iterations"], metrics["epochs"]) == (10, 2.5)
    final = keras.saving.load_model(tmp_path / "unbroken" / "final.keras")
    assert int(keras.ops.convert_to_numpy(final.optimizer.iterations)) == 10
    assert json.loads((tmp_path / "unbroken" / "config.json").read_text())["whole_passes"] is False

    run = tmp_path / "run"
    with pytest.raises(reliability.Interrupted) as stopped:
        train.run_experiment(config, run, callbacks=[_SignalAt(9)], verbose=0)
    assert stopped.value.iteration == 9 and _periods(run) == [0, 1]
    train.run_experiment(config, run, verbose=0)
    assert _history_without_times(run) == _history_without_times(tmp_path / "unbroken")
    _assert_final_weights_equal(run, tmp_path / "unbroken")


@pytest.mark.slow
def test_a_mid_period_state_saved_before_the_cross_entropy_metric_resumes_bit_identical(
        tiny_config, tmp_path):
    """A state saved at an iteration by the code before `cross_entropy` was logged holds no
    accumulators for it: the rest of that period starts them at zero, and training (weights,
    history) is as an unbroken run's."""
    config = dataclasses.replace(tiny_config, epochs=2, deterministic=True)
    train.run_experiment(config, tmp_path / "unbroken", verbose=0)
    run, meta_path = tmp_path / "run", tmp_path / "run" / "backup" / rundir.METADATA
    with pytest.raises(reliability.Interrupted):
        train.run_experiment(config, run, callbacks=[_SignalAt(2)], verbose=0)
    meta = json.loads(meta_path.read_text())
    assert any(k.startswith(reliability.DATA_LOSS) for k in meta["metrics"])
    meta["metrics"] = {k: v for k, v in meta["metrics"].items()
                       if not k.startswith(reliability.DATA_LOSS)}
    meta_path.write_text(json.dumps(meta))
    train.run_experiment(config, run, verbose=0)
    assert _history_without_times(run) == _history_without_times(tmp_path / "unbroken")
    _assert_final_weights_equal(run, tmp_path / "unbroken")


def test_resume_iteration_of_period_end_mid_period_and_old_metadata(tmp_path, capsys):
    """A state without "iterations" (period ends, and the metadata of earlier versions, with
    their "batch": 0) is k whole periods; a mid-period state names its iteration, and its
    fallback is the previous state, whole."""
    backup = tmp_path / "backup"
    backup.mkdir()
    (backup / "epoch1.weights.h5").write_bytes(b"state after period 1")
    old = {"batch": 0, "epoch": 1, "weights": "epoch1.weights.h5",
           "sha256": files.sha256(backup / "epoch1.weights.h5")}
    (backup / rundir.METADATA).write_text(json.dumps(old))
    checkpointer = reliability.Checkpointer(backup)
    assert (checkpointer.resume_epoch(), checkpointer.resume_iteration(4)) == (1, 4)

    (backup / "epoch1-iter6.weights.h5").write_bytes(b"state at iteration 6")
    mid = {"epoch": 1, "iterations": 6, "weights": "epoch1-iter6.weights.h5",
           "sha256": files.sha256(backup / "epoch1-iter6.weights.h5"), "metrics": {},
           "previous": {k: v for k, v in old.items() if k != "batch"}}
    (backup / rundir.METADATA).write_text(json.dumps(mid))
    checkpointer = reliability.Checkpointer(backup)
    assert (checkpointer.resume_epoch(), checkpointer.resume_iteration(4)) == (1, 6)
    (backup / "epoch1-iter6.weights.h5").write_bytes(b"damaged")
    checkpointer = reliability.Checkpointer(backup)
    assert (checkpointer.resume_epoch(), checkpointer.resume_iteration(4)) == (1, 4)
    assert "epoch1-iter6.weights.h5 is corrupt or truncated" in capsys.readouterr().err
    # Unreadable metadata: only period-end files name their state.
    (backup / rundir.METADATA).write_text("{")
    assert reliability.Checkpointer(backup).resume_state()["weights"] == "epoch1.weights.h5"
