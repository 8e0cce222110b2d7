"""The training runner end to end on synthetic data: files, checkpoints, resume, failures."""

import dataclasses
import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

from cifar_resnet.spec import config as config_lib, cpu, datasets, rundir
from cifar_resnet.run import build, train
from cifar_resnet.data import pipeline
from cifar_resnet.spec.config import ConfigError


class _Interrupt(keras.callbacks.Callback):
    def __init__(self, at_epoch):
        super().__init__()
        self.at_epoch = at_epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at_epoch:
            raise KeyboardInterrupt


def test_the_training_step_is_traced_once(tiny_config, tmp_path, monkeypatch):
    # Keras' TensorFlow trainer, without a strategy, makes the optimizer's slots and the metrics'
    # variables inside the first trace, and TensorFlow then traces the step a second time
    # (plain-110: 30 s of a 2-core Intel Xeon). build.compiled makes them first.
    traces = []
    step = keras.Model.train_step
    monkeypatch.setattr(keras.Model, "train_step",
                        lambda self, data: traces.append(1) or step(self, data))
    # 256 images in batches of 64: one batch shape, so one trace is all the step needs.
    config = dataclasses.replace(tiny_config, epochs=2, val_fraction=0.0)
    train.run_experiment(config, tmp_path, verbose=0)
    assert len(traces) == 1


def test_one_run_writes_its_files_and_a_checkpoint_that_predicts_the_same(tiny_config, tmp_path):
    metrics = train.run_experiment(tiny_config, tmp_path, verbose=0)
    for name in ("config.json", "history.csv", "metrics.json", "best.keras", "final.keras"):
        assert (tmp_path / name).exists(), name
    assert not (tmp_path / "backup").exists()  # removed once training completes
    # config.json states the precision the run used.
    assert config_lib.load(tmp_path / "config.json") == dataclasses.replace(
        tiny_config, precision="float32", whole_passes=False)
    history = rundir.read_history(tmp_path / "history.csv")
    assert [r["period"] for r in history] == [0, 1]
    assert [r["iterations"] for r in history] == [4, 8]  # 230 training images, batch 64
    assert all(0 <= r[k] <= 1 for r in history for k in ("error", "val_error", "test_error"))
    assert metrics["status"] == "complete" and metrics["epochs"] == 2
    assert metrics["params"] == 75_290  # v1 depth 8, option A: 75,770 with BN moving stats
    assert metrics["final_test_error"] == history[-1]["test_error"]

    splits = datasets.load_dataset("synthetic", val_fraction=0.1, synthetic_size=(256, 128))
    test_ds = pipeline.make_dataset(*splits.test, batch_size=64, mean=splits.mean, std=splits.std,
                                training=False)
    final = keras.saving.load_model(tmp_path / "final.keras")
    acc = final.evaluate(test_ds, verbose=0, return_dict=True)["accuracy"]
    assert 1 - acc == pytest.approx(metrics["final_test_error"], abs=1e-6)
    best = keras.saving.load_model(tmp_path / "best.keras")
    x = next(iter(test_ds))[0]
    assert best(x).shape == (64, 10)


@pytest.mark.slow
def test_by_default_a_run_trains_on_every_image_and_keeps_only_the_final_model(tiny_config,
                                                                                tmp_path):
    config = dataclasses.replace(tiny_config, val_fraction=config_lib.Config.val_fraction)
    metrics = train.run_experiment(config, tmp_path, verbose=0)
    assert config_lib.load(tmp_path / "config.json").val_fraction == 0.0
    assert (tmp_path / "final.keras").exists() and not (tmp_path / "best.keras").exists()
    history = rundir.read_history(tmp_path / "history.csv")
    assert [r["iterations"] for r in history] == [4, 8]  # all 256 images, batch 64
    assert all(np.isnan(r["val_error"]) for r in history)
    assert metrics["final_test_error"] == history[-1]["test_error"]
    assert not {"best_val_period", "best_val_iterations", "best_val_error",
                "best_test_error"} & set(metrics)


@pytest.mark.slow
def test_interrupted_run_resumes_with_every_epoch_once(tiny_config, tmp_path):
    config = dataclasses.replace(tiny_config, epochs=3)
    with pytest.raises(KeyboardInterrupt):
        train.run_experiment(config, tmp_path, callbacks=[_Interrupt(2)], verbose=0)
    assert [r["period"] for r in rundir.read_history(tmp_path / "history.csv")] == [0, 1]
    assert not (tmp_path / "metrics.json").exists()
    metrics = train.run_experiment(config, tmp_path, verbose=0)
    history = rundir.read_history(tmp_path / "history.csv")
    assert [r["period"] for r in history] == [0, 1, 2]
    assert [r["iterations"] for r in history] == [4, 8, 12]
    assert history[2]["wall_time"] > history[1]["wall_time"]
    assert metrics["epochs"] == 3 and metrics["iterations"] == 12


@pytest.mark.slow
def test_rows_written_after_the_last_backup_are_dropped_on_resume(tiny_config, tmp_path):
    config = dataclasses.replace(tiny_config, epochs=3)
    with pytest.raises(KeyboardInterrupt):
        train.run_experiment(config, tmp_path, callbacks=[_Interrupt(2)], verbose=0)
    # A crash between the history row and the backup of epoch 1 leaves a row the backup lacks.
    meta = tmp_path / "backup" / "training_metadata.json"
    meta.write_text(json.dumps({"epoch": 1, "batch": 0}))
    train.run_experiment(config, tmp_path, verbose=0)
    assert [r["period"] for r in rundir.read_history(tmp_path / "history.csv")] == [0, 1, 2]


@pytest.mark.slow
def test_a_complete_run_is_not_redone(tiny_config, tmp_path):
    first = train.run_experiment(tiny_config, tmp_path, verbose=0)
    before = (tmp_path / "history.csv").read_text()
    assert train.run_experiment(tiny_config, tmp_path, verbose=0) == first
    assert (tmp_path / "history.csv").read_text() == before


@pytest.mark.slow
def test_another_config_in_the_same_workdir_is_refused(tiny_config, tmp_path):
    train.run_experiment(tiny_config, tmp_path, verbose=0)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    with pytest.raises(ConfigError, match=r"another config \(depth: 8 -> 14\)"):
        train.run_experiment(dataclasses.replace(tiny_config, depth=14), tmp_path, verbose=0)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_linear_warmup_longer_than_the_run_writes_nothing(tiny_config, tmp_path):
    config = dataclasses.replace(tiny_config, lr_schedule="linear", warmup_iterations=100)
    with pytest.raises(ConfigError, match="warmup_iterations 100 must be below the planned 8"):
        train.run_experiment(config, tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_batch_larger_than_the_data_writes_nothing(tiny_config, tmp_path):
    with pytest.raises(ConfigError, match="batch_size 4096 is larger than the 230 training"):
        train.run_experiment(dataclasses.replace(tiny_config, batch_size=4096), tmp_path / "r")
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_nan_loss_stops_the_run_and_marks_it_failed(tiny_config, tmp_path):
    config = dataclasses.replace(tiny_config, lr=1e30, momentum=0.0)
    with pytest.raises(train.TrainingError, match="diverged"):
        train.run_experiment(config, tmp_path, verbose=0)
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "failed"


def test_paper_weight_decay_flows_through_momentum():
    """L2(wd/2) in Keras == the paper's SGD: v = m*v + g + wd*w; w -= lr*v."""
    wd, lr, m = 1e-4, 0.1, 0.9
    layer = keras.layers.Dense(3, use_bias=False, kernel_regularizer=keras.regularizers.L2(wd / 2))
    model = keras.Sequential([keras.Input((2,)), layer])
    model.compile(keras.optimizers.SGD(lr, momentum=m), loss=lambda y, p: 0.0 * p)
    w = model.get_weights()[0].astype("float64")
    v = np.zeros_like(w)
    for _ in range(3):
        v = m * v + wd * w
        w = w - lr * v
    model.fit(np.ones((3, 2)), np.zeros((3, 3)), batch_size=1, epochs=1, verbose=0, shuffle=False)
    np.testing.assert_allclose(model.get_weights()[0], w, rtol=1e-5)


def test_fast_recipe_options_reach_the_optimizer_loss_and_regularizers(tiny_config):
    def regularized(config):
        model = build.build_model(config)
        return model, {w.path.split("/")[-1] for layer in model.layers
                       for attr, w in (("gamma_regularizer", getattr(layer, "gamma", None)),
                                       ("kernel_regularizer", getattr(layer, "kernel", None)))
                       if w is not None and getattr(layer, attr, None) is not None}

    model, paper = regularized(tiny_config)
    assert paper == {"gamma", "kernel"}  # Torch's decay: BN too
    assert model.optimizer.nesterov is False and model.loss == "sparse_categorical_crossentropy"
    model, kernels = regularized(dataclasses.replace(
        tiny_config, weight_decay_on="kernels", nesterov=True, label_smoothing=0.1))
    assert kernels == {"kernel"} and model.optimizer.nesterov is True
    labels, probs = np.array([2, 0]), np.full((2, 10), 0.01, "float32")
    probs[0, 2] = probs[1, 0] = 0.91
    target = np.full((2, 10), 0.01)  # (1 - 0.1) * one-hot + 0.1 / 10
    target[0, 2] = target[1, 0] = 0.91
    expected = -(target * np.log(probs)).sum(axis=1).mean()
    assert float(model.loss(labels, probs)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.slow
def test_a_run_with_the_fast_recipe_options_trains_and_its_model_loads(tiny_config, tmp_path):
    config = dataclasses.replace(tiny_config, label_smoothing=0.1, nesterov=True,
                                 weight_decay_on="kernels", lr_schedule="cosine", val_fraction=0.0)
    metrics = train.run_experiment(config, tmp_path, verbose=0)
    assert metrics["status"] == "complete"
    history = rundir.read_history(tmp_path / "history.csv")
    # The rate of the epoch's last iteration (7 of 8): the half cosine, near its end.
    assert history[1]["lr"] == pytest.approx(0.1 * (1 + np.cos(np.pi * 7 / 8)) / 2, rel=1e-5)
    final = keras.saving.load_model(tmp_path / "final.keras")  # compiled, with its loss
    assert final.loss.label_smoothing == 0.1 and final.optimizer.nesterov is True


@pytest.mark.parametrize("overrides,message", [
    (dict(label_smoothing=1.0), "label_smoothing must be in [0, 1); got 1.0"),
    (dict(nesterov=True, optimizer="adam"), "nesterov applies to optimizer 'sgd' only"),
    (dict(weight_decay_on="bn"), "weight_decay_on 'bn' is not one of"),
])
def test_fast_recipe_options_are_validated(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        config_lib.resolve(overrides=overrides)


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "cifar_resnet", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args,message", [
    (["--depth", "21"], "depth 21"),
    (["--shortcut", "Z"], "shortcut 'Z'"),
    (["--epochs", "0"], "epochs must be >= 1"),
    (["--epochs", "x"], "invalid int value"),
    (["--config", "missing.yaml"], "cannot read config file"),
    # Issue #39: validated against its preset before config.json was written, not at build.
    (["--preset", "keras-example", "--version", "2", "--block", "basic", "--dataset",
      "synthetic"], "preset 'keras-example') has only block='bottleneck'"),
])
def test_cli_bad_input_is_one_line_exit_2_and_writes_nothing(args, message, tmp_path):
    import pathlib
    root = pathlib.Path(__file__).resolve().parents[1]
    result = _cli("train", "--workdir", str(tmp_path / "run"), *args, cwd=root)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_cli_trains_and_resumes(tmp_path):
    import pathlib
    root = pathlib.Path(__file__).resolve().parents[1]
    args = ["train", "--dataset", "synthetic", "--depth", "8", "--epochs", "1", "--batch-size", "64",
            "--set", "synthetic_train=256", "--set", "synthetic_test=128",
            "--workdir", str(tmp_path)]
    first = _cli(*args, cwd=root)
    assert first.returncode == 0, first.stderr
    assert "final test error" in first.stdout
    again = _cli(*args, cwd=root)
    assert again.returncode == 0 and "already complete" in again.stderr
    # A run of another split (the default held out 10% once) is not this command's: refused in
    # one line naming the field, nothing changed.
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["val_fraction"] == 0.0
    (tmp_path / "config.json").write_text(json.dumps({**saved, "val_fraction": 0.1}))
    other = _cli(*args, cwd=root)
    assert other.returncode == 2 and "another config (val_fraction: 0.1 -> 0.0)" in other.stderr
    assert other.stderr.count("\n") == 1, other.stderr


@pytest.mark.slow
def test_a_tiny_net_learns_real_cifar10_in_one_short_epoch(real_data, tmp_path):
    # 150 iterations: one short epoch (19,200 images).
    config = config_lib.resolve(overrides=dict(depth=8, iterations=150, data_dir=str(real_data)))
    metrics = train.run_experiment(config, tmp_path, verbose=0)
    assert metrics["final_test_error"] < 0.75  # chance is 0.90


@pytest.mark.slow
def test_log_every_logs_periods_and_resumes_mid_pass_to_the_same_weights(tiny_config, tmp_path):
    # 4 iterations per pass over the data, logged every 3: periods end mid-pass.
    config = dataclasses.replace(tiny_config, epochs=2, log_every=3)
    metrics = train.run_experiment(config, tmp_path / "a", verbose=0)
    # 2 passes (8 iterations) exactly, the last period short; whole periods (9) before.
    assert metrics["epochs"] == 2  # passes over the data, not periods
    history = rundir.read_history(tmp_path / "a" / "history.csv")
    assert [r["iterations"] for r in history] == [3, 6, 8]
    with pytest.raises(KeyboardInterrupt):
        train.run_experiment(config, tmp_path / "b", callbacks=[_Interrupt(1)], verbose=0)
    train.run_experiment(config, tmp_path / "b", verbose=0)  # resumes at iteration 3 of 8
    assert [r["iterations"] for r in rundir.read_history(tmp_path / "b" / "history.csv")] == [3, 6, 8]
    a, b = (keras.saving.load_model(tmp_path / d / "final.keras") for d in "ab")
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# Precision: resolved before config.json is written, recorded, and kept across resumes.


@pytest.mark.slow
def test_config_and_metrics_state_the_precision_and_the_cpu(tiny_config, tmp_path, monkeypatch):
    monkeypatch.setattr(cpu, "has_native_bf16", lambda flags=None: True)
    config = dataclasses.replace(tiny_config, epochs=1, precision="auto")
    metrics = train.run_experiment(config, tmp_path, verbose=0)
    assert json.loads((tmp_path / "config.json").read_text())["precision"] == "mixed_bfloat16"
    assert metrics["precision"] == "mixed_bfloat16"
    model = keras.saving.load_model(tmp_path / "final.keras")
    assert {layer.dtype_policy.name for layer in model.layers
            if isinstance(layer, keras.layers.Conv2D)} == {"mixed_bfloat16"}
    assert metrics["cpu"]["native_bf16"] is cpu.describe()["native_bf16"]
    assert metrics["cpu"]["onednn"]["TF_ENABLE_ONEDNN_OPTS"] == os.environ.get(
        "TF_ENABLE_ONEDNN_OPTS")


@pytest.mark.slow
def test_auto_on_a_cpu_without_bf16_trains_float32_and_says_why(tiny_config, tmp_path,
                                                                  monkeypatch, capsys):
    monkeypatch.setattr(cpu, "has_native_bf16", lambda flags=None: False)
    config = dataclasses.replace(tiny_config, epochs=1, precision="auto")
    metrics = train.run_experiment(config, tmp_path, verbose=0)
    assert metrics["precision"] == "float32"
    assert config_lib.load(tmp_path / "config.json").precision == "float32"
    notes = [line for line in capsys.readouterr().err.splitlines() if "native bfloat16" in line]
    assert len(notes) == 1 and notes[0].startswith("precision float32")


def test_resume_on_a_cpu_without_bf16_is_refused_not_changed(tiny_config, tmp_path,
                                                             monkeypatch):
    # A bf16 run moves to a CPU without native bf16, where "auto" would pick float32.
    config = dataclasses.replace(tiny_config, precision="auto")
    config_lib.save(dataclasses.replace(config, precision="mixed_bfloat16"),
                    tmp_path / "config.json")
    before = (tmp_path / "config.json").read_text()
    monkeypatch.setattr(cpu, "has_native_bf16", lambda flags=None: False)
    with pytest.raises(ConfigError, match=r"trained in mixed_bfloat16, but this run would train "
                                          r"in float32 \(--precision auto on this machine\); "
                                          r"pass --precision mixed_bfloat16"):
        train.run_experiment(config, tmp_path, verbose=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
    assert (tmp_path / "config.json").read_text() == before


@pytest.mark.slow
def test_an_old_run_dir_without_the_precision_field_resumes_once_migrated(tiny_config, tmp_path):
    from benchmarks import migrate_config_json
    config = dataclasses.replace(tiny_config, epochs=2)
    with pytest.raises(KeyboardInterrupt):
        train.run_experiment(config, tmp_path, callbacks=[_Interrupt(1)], verbose=0)
    saved = json.loads((tmp_path / "config.json").read_text())
    del saved["precision"]  # as written before the field existed
    saved["mixed_precision"] = False
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ConfigError, match="migrate it once"):
        train.run_experiment(config, tmp_path, verbose=0)
    assert migrate_config_json.main([str(tmp_path)]) == 0
    metrics = train.run_experiment(config, tmp_path, verbose=0)
    assert [r["period"] for r in rundir.read_history(tmp_path / "history.csv")] == [0, 1]
    assert metrics["precision"] == "float32"
    assert json.loads((tmp_path / "config.json").read_text())["precision"] == "float32"


@pytest.mark.slow
def test_cli_a_precision_other_than_the_folders_is_refused_auto_included(tiny_config, tmp_path,
                                                                         monkeypatch, capsys):
    """`--precision auto` on a folder holding a finished float32 run, where auto means bfloat16,
    is one line naming both and the way out, exit 2 (it answered "already complete" with the
    float32 result); where auto means float32 it is that run."""
    from cifar_resnet import __main__ as cli
    train.run_experiment(tiny_config, tmp_path, verbose=0)  # float32
    args = ["train", "--dataset", "synthetic", "--depth", "8", "--epochs", "2", "--batch-size",
            "64", "--set", "synthetic_train=256", "--set", "synthetic_test=128", "--set",
            "val_fraction=0.1", "--workdir", str(tmp_path)]
    monkeypatch.setattr(cpu, "GPU_DEVICE_FILES", (), raising=False)  # this test's CPU alone
    monkeypatch.setattr(cpu, "has_native_bf16", lambda flags=None: True)
    capsys.readouterr()
    for asked in ("auto", "mixed_bfloat16"):
        assert cli.main([*args, "--precision", asked]) == 2
        err = capsys.readouterr().err.strip()
        assert err == (f"error: {tmp_path} holds a run trained in float32, but this run would "
                       f"train in mixed_bfloat16"
                       + (" (--precision auto on this machine)" if asked == "auto" else "")
                       + "; pass --precision float32 to resume it, or use another --workdir")
    monkeypatch.setattr(cpu, "has_native_bf16", lambda flags=None: False)
    assert cli.main([*args, "--precision", "auto"]) == 0
    assert "already complete" in capsys.readouterr().err


def test_cli_precision_flag(tmp_path):
    import pathlib
    root = pathlib.Path(__file__).resolve().parents[1]
    bad = _cli("train", "--precision", "bf16", "--workdir", str(tmp_path / "r"), cwd=root)
    assert bad.returncode == 2 and "invalid choice: 'bf16'" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "r").exists()


# ------------------------------------------------------------------------------------------------
# Throughput from the training batches alone; start-up cost apart.


class _SlowValidation(keras.callbacks.Callback):
    """Adds `seconds` to every validation pass inside fit's epochs."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds

    def on_test_end(self, logs=None):
        import time
        time.sleep(self.seconds)


@pytest.mark.slow
def test_images_per_sec_counts_training_batches_only(tiny_config, tmp_path):
    import time
    config = dataclasses.replace(tiny_config, epochs=4)
    start = time.perf_counter()
    metrics = train.run_experiment(config, tmp_path, callbacks=[_SlowValidation(0.5)], verbose=0)
    elapsed = time.perf_counter() - start
    history = rundir.read_history(tmp_path / "history.csv")
    images = config.batch_size * 4  # 4 iterations per epoch
    # Every epoch after the first spent at least 0.5 s validating beyond its training batches;
    # a rate that counted the validation pass would be at most images / median(period_time).
    steady = sorted(r["period_time"] for r in history[1:])
    assert metrics["images_per_sec"] >= images / (steady[1] - 0.5)
    # The first epoch traced the training step: its excess over a later epoch is start-up.
    assert metrics["startup_time"] > 0
    assert 0 < metrics["setup_time"] < elapsed  # data loading and model building
    assert history[0]["period_time"] >= metrics["startup_time"]
    if cpu.steal_clock() is not None:  # Linux: the steal of the timed periods is recorded
        assert 0 <= metrics["cpu_steal"] <= 1


# Issue #26: a foreign workdir, the lock of a finished run, the hint for another config.

def test_a_workdir_with_files_but_no_run_is_refused_and_left_as_it_was(tiny_config, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "photos").mkdir()
    with pytest.raises(ConfigError, match=r"holds files but no run \(notes.txt, photos\); "
                                          r"give an empty or new --workdir"):
        train.run_experiment(tiny_config, tmp_path, verbose=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "photos"]


def test_cli_foreign_workdir_is_one_line_exit_2(tmp_path, capsys):
    from cifar_resnet.__main__ import main
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["train", "--dataset", "synthetic", "--depth", "8", "--epochs", "1",
                 "--workdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds files but no run (notes.txt)" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_cli_refuses_a_foreign_workdir_before_importing_tensorflow(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    code = ("import sys; from cifar_resnet.__main__ import main; "
            f"rc = main(['train', '--workdir', {str(tmp_path)!r}]); "
            "assert 'tensorflow' not in sys.modules, 'imported'; sys.exit(rc)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2, result.stderr
    assert "holds files but no run (notes.txt)" in result.stderr


@pytest.mark.slow
def test_a_workdir_with_only_a_runs_leftovers_is_used(tiny_config, tmp_path):
    """A run killed before config.json was written leaves a .lock (and sweep a train.log)."""
    (tmp_path / ".lock").write_text("12345\n")
    (tmp_path / "train.log").write_text("")
    assert train.run_experiment(tiny_config, tmp_path, verbose=0)["status"] == "complete"


@pytest.mark.slow
def test_a_finished_run_leaves_no_lock_and_an_interrupted_one_keeps_it(tiny_config, tmp_path):
    done, stopped = tmp_path / "done", tmp_path / "stopped"
    train.run_experiment(tiny_config, done, verbose=0)
    assert not (done / ".lock").exists()
    with pytest.raises(KeyboardInterrupt):
        train.run_experiment(tiny_config, stopped, callbacks=[_Interrupt(1)], verbose=0)
    assert (stopped / ".lock").exists()  # harmless: a lock counts only while its flock is held
    train.run_experiment(tiny_config, stopped, verbose=0)
    assert not (stopped / ".lock").exists()


@pytest.mark.slow
def test_extending_a_finished_run_says_where_to_write_instead(tiny_config, tmp_path):
    run = tmp_path / "quick"
    train.run_experiment(tiny_config, run, verbose=0)
    with pytest.raises(ConfigError) as error:
        train.run_experiment(dataclasses.replace(tiny_config, epochs=4), run, verbose=0)
    message = str(error.value)
    assert "another config (epochs: 2 -> 4)" in message
    assert "this run is finished, and a finished run is not extended" in message
    assert f"--workdir {tmp_path / 'quick-epochs4'}" in message
    assert "\n" not in message


def test_startup_time_is_measured_only_from_a_whole_first_period():
    """A session resumed where a signal stopped it begins with a short period: comparing it
    with whole ones would give a start-up cost that is too low, even negative (issue #26)."""
    from cifar_resnet.run import metrics as metrics_lib
    nan = float("nan")
    history = [dict(period=e, iterations=4 * (e + 1), error=0.5, test_error=0.6, val_error=nan,
                    wall_time=10.0 * (e + 1)) for e in range(3)]
    times = [5.0, 2.0, 2.5]
    whole = metrics_lib.run_metrics(history, 10, 256, 4, times)
    assert whole["startup_time"] == 3.0 and whole["images_per_sec"] == 256 / 2.5
    short = metrics_lib.run_metrics(history, 10, 256, 4, [0.5, 2.0, 2.5], first_partial=True)
    assert short["startup_time"] is None and short["images_per_sec"] == 256 / 2.5


def test_metrics_name_the_selected_logging_period_and_its_iterations_not_an_epoch():
    """Issue #39: `best_val_epoch` counted logging periods, while `epochs` counts passes. Now
    `best_val_period` (from 1) and `best_val_iterations`; with periods of half a pass the
    selected period 3 is 1.5 passes in, and `epochs` stays the passes of the whole run."""
    from cifar_resnet.run import metrics as metrics_lib
    history = [dict(period=p, iterations=2 * (p + 1), error=0.5, test_error=t, val_error=v,
                    wall_time=1.0 * (p + 1))
               for p, (v, t) in enumerate([(0.5, 0.6), (0.4, 0.5), (0.3, 0.45), (0.35, 0.4)])]
    metrics = metrics_lib.run_metrics(history, 10, 128, 4, [1.0] * 4)
    assert (metrics["best_val_period"], metrics["best_val_iterations"]) == (3, 6)
    assert (metrics["best_val_error"], metrics["best_test_error"]) == (0.3, 0.45)
    assert metrics["epochs"] == 2 and metrics["iterations"] == 8
    assert "best_val_epoch" not in metrics


@pytest.mark.slow
def test_progress_is_headed_by_passes_or_periods_never_keras_epochs(tiny_config, tmp_path,
                                                                     capsys):
    """An epoch is a pass here (issue #39): Keras' "Epoch k/N" would count logging periods."""
    train.run_experiment(tiny_config, tmp_path / "passes", verbose=2)
    out = capsys.readouterr().out
    assert re.findall(r"^(?:Pass|Period|Epoch) \d+/\d+$", out, re.M) == ["Pass 1/2", "Pass 2/2"]
    # 230 training images, 4 iterations a pass; a history row every 2 is a period.
    config = dataclasses.replace(tiny_config, log_every=2)
    train.run_experiment(config, tmp_path / "periods", verbose=2)
    out = capsys.readouterr().out
    assert re.findall(r"^(?:Pass|Period|Epoch) \d+/\d+$", out, re.M) == [
        f"Period {k}/4" for k in range(1, 5)]
