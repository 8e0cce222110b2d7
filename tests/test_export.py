"""`export`: a finished run's final weights as a float32 .weights.h5 file (results/export.py)."""

import shutil

import keras
import numpy as np
import pytest

from cifar_resnet.__main__ import main
from cifar_resnet.nets import models, pretrained
from cifar_resnet.results import analysis, evaluate, export
from cifar_resnet.spec import files, rundir


@pytest.fixture
def run(sweep, tmp_path, monkeypatch):
    """A copy of the tiny sweep's finished resnet8 run (export writes into its eval/); the
    synthetic test split has 128 images, so its first 100 stand for the exact 1,000."""
    monkeypatch.setattr(evaluate, "EXACT_TEST_IMAGES", 100)
    return shutil.copytree(sweep / "resnet8" / "seed0", tmp_path / "resnet8")


@pytest.mark.slow
def test_exported_weights_load_through_the_public_api_and_ship_by_name(run, tmp_path, monkeypatch,
                                                                       capsys):
    weights_dir = tmp_path / "weights"
    assert main(["export", str(run), "--out", str(weights_dir), "--entry"]) == 0
    captured = capsys.readouterr()
    path = weights_dir / "resnet8_v1_synthetic.weights.h5"
    assert f"wrote {path}" in captured.err and path.is_file()

    # The printed entry is Python source for pretrained.CIFAR10.
    table = eval("{" + captured.out + "}", {})
    entry = table["resnet8_v1"]
    assert entry["sha256"] == files.sha256(path) and entry["file"] == path.name
    assert (entry["shortcut"], entry["preset"], entry["num_classes"], entry["input_shape"]) == (
        "A", "paper", 10, (32, 32, 3))
    # A float32 run: the file in a float32 net gives the run's own evaluation.
    plain = evaluate.evaluate_final(run, "plain")
    metrics = files.read_json(rundir.RunDir(run).metrics)
    assert entry["test_error"] == round(100 * plain["error"], 2)
    assert entry["test_error"] == pytest.approx(100 * metrics["final_test_error"], abs=0.01)
    assert entry["exact1000_error"] == round(100 * plain["head"]["error"], 2)
    assert entry["tta_error"] == round(100 * evaluate.evaluate_final(run, "flip")["error"], 2)
    assert entry["trained"].startswith(f"{metrics['iterations']:,} iterations at batch 64, "
                                       "float32")

    # The file gives the trained model's predictions, by path and shipped by name.
    x = np.random.default_rng(0).normal(size=(8, 32, 32, 3)).astype("float32")
    want = keras.saving.load_model(rundir.RunDir(run).final, compile=False).predict(x, verbose=0)
    by_path = models.resnet_v1(depth=8, weights=str(path)).predict(x, verbose=0)
    np.testing.assert_array_equal(by_path, want)
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", weights_dir)
    monkeypatch.setitem(pretrained.CIFAR10, "resnet8_v1", entry)
    shipped = models.resnet_v1(depth=8, weights="cifar10")
    np.testing.assert_array_equal(shipped.predict(x, verbose=0), want)
    assert f"test error {entry['test_error']:.2f}%" in capsys.readouterr().err


@pytest.mark.slow
def test_export_names_the_file_of_a_path_and_measures_the_file_not_the_runs_evaluations(
        run, tmp_path, monkeypatch):
    """The entry's errors are the file's in a float32 net (what `weights=` builds), not copied
    from the run's eval/, which a mixed-precision run makes in its own precision."""
    for tta in ([], ["--tta", "flip"]):
        main(["evaluate", str(run), "--checkpoint", "final", *tta])
    # The real count: the 128 synthetic test images hold no "first 1,000".
    monkeypatch.setattr(evaluate, "EXACT_TEST_IMAGES", 1000)
    [row] = analysis.final_errors(run)
    assert row["exact1000_error"] is None and row["exact1000_std_error"] is None
    evaluations = {which: rundir.RunDir(run).evaluation(*spec)
                   for which, spec in rundir.FINAL_EVALUATIONS.items()}
    measured = {which: files.read_json(path)["error"] for which, path in evaluations.items()}
    for path in evaluations.values():  # as if evaluated in another precision
        files.write_json(path, {**files.read_json(path), "error": 0.5})
    out = tmp_path / "mine.weights.h5"
    exported = export.export_weights(run, out)
    assert exported["path"] == out and out.is_file()
    assert exported["entry"]["test_error"] == round(100 * measured["plain"], 2)
    assert exported["entry"]["tta_error"] == round(100 * measured["flip"], 2)
    assert exported["entry"]["exact1000_error"] is None


def test_export_refuses_an_unfinished_run_in_one_line_and_writes_nothing(tmp_path, sweep, capsys):
    unfinished = shutil.copytree(sweep / "plain8" / "seed1", tmp_path / "unfinished")
    before = sorted(p.name for p in unfinished.iterdir())
    assert main(["export", str(unfinished), "--out", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has not finished training" in err
    assert sorted(p.name for p in unfinished.iterdir()) == before
    assert not (tmp_path / "w").exists()
    assert main(["export", str(tmp_path / "nothing")]) == 2
    assert "is not a run directory" in capsys.readouterr().err


def test_export_refuses_an_unreadable_metrics_json_in_one_line(tmp_path, sweep, capsys):
    damaged = shutil.copytree(sweep / "resnet8" / "seed0", tmp_path / "damaged")
    (damaged / rundir.METRICS).write_text("{not json")
    assert main(["export", str(damaged)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "metrics.json is unreadable" in err
    assert not list(damaged.glob("*.weights.h5"))


# Issue #38 items 7 and 8, issue #40 item 10.

def test_export_refuses_a_checkpoint_of_another_net_and_leaves_no_file(run, tmp_path, capsys):
    models.resnet_v1(depth=14).save(rundir.RunDir(run).final)
    assert main(["export", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds resnet14_v1" in err and "not the resnet8_v1" in err
    assert not list(run.glob("*.weights.h5")) and not list(run.glob(".*"))


def test_a_full_disk_is_one_line_naming_the_file_and_leaves_nothing(run, tmp_path,
                                                                     monkeypatch, capsys):
    """The weights are written as a run's checkpoints are (reliability.atomic_save), the
    error in the export's own words, not a checkpoint's."""
    from cifar_resnet.run import reliability
    monkeypatch.setattr(reliability, "_free_space_ok", lambda folder, needed: False)
    out = tmp_path / "out"
    out.mkdir()
    assert main(["export", str(run), "--out", str(out)]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot write {out}/resnet8_v1_" in err
    assert "no space left on device" in err and "checkpoint" not in err
    assert list(out.iterdir()) == []


def test_export_names_a_truncated_checkpoint_damaged(run, capsys):
    with open(rundir.RunDir(run).final, "r+b") as f:
        f.truncate(20_000)
    assert main(["export", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is damaged" in err and "not found" not in err


@pytest.mark.slow
def test_export_prints_the_code_that_loads_the_file(run, tmp_path, capsys):
    out = tmp_path / "mine.weights.h5"
    assert main(["export", str(run), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "x / 255 minus the per-pixel mean image" in printed
    code = "\n".join(line for line in printed.splitlines() if not line.startswith("#"))
    scope = {}
    exec(code, scope)  # the printed lines build the net and load the file
    x = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype("float32")
    want = keras.saving.load_model(rundir.RunDir(run).final, compile=False).predict(x, verbose=0)
    np.testing.assert_array_equal(scope["model"].predict(x, verbose=0), want)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left
