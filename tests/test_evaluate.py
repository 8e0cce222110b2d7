"""Tests for cifar_resnet.results.evaluate and `python -m cifar_resnet evaluate` on a tiny synthetic run."""

import json

import keras
import numpy as np
import pytest

from cifar_resnet.spec import config as config_lib, datasets, files
from cifar_resnet.results import evaluate
from cifar_resnet.run import train
from cifar_resnet.__main__ import main


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny run with a validation split shared by the module (the `tiny_config` settings;
    fixtures of function scope cannot feed a module-scoped one)."""
    config = config_lib.resolve(overrides=dict(
        dataset="synthetic", depth=8, epochs=2, batch_size=64, synthetic_train=256,
        synthetic_test=128, val_fraction=0.1))
    workdir = tmp_path_factory.mktemp("run")
    train.run_experiment(config, workdir, verbose=0)
    return workdir


def _reference_probs(run, checkpoint, images, flip=False):
    """Probabilities computed without evaluate's pipeline: numpy normalization, model.predict."""
    config = config_lib.load(run / "config.json")
    splits = datasets.load_dataset("synthetic", val_fraction=config.val_fraction,
                               synthetic_size=(256, 128))
    x = (images / 255.0 - splits.mean) / splits.std
    if flip:
        x = x[:, :, ::-1]
    model = keras.saving.load_model(run / f"{checkpoint}.keras", compile=False)
    return model.predict(x.astype("float32"), verbose=0)


@pytest.mark.slow
def test_outputs_are_written_and_consistent(run):
    report = evaluate.evaluate(run, checkpoint="final")
    for kind, suffix in (("json", ".json"), ("confusion", "-confusion.png"),
                         ("wrong", "-wrong.png")):
        path = run / "eval" / f"test-final{suffix}"
        assert report["files"][kind] == str(path)
        assert path.stat().st_size > 0
    assert (run / "eval" / "test-final-wrong.png").read_bytes()[:4] == b"\x89PNG"
    saved = files.read_json(run / "eval" / "test-final.json")
    assert saved == json.loads(json.dumps(report))

    matrix = np.array(saved["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 128 == saved["num_images"]
    np.testing.assert_allclose(list(saved["per_class_accuracy"].values()),
                               np.diag(matrix) / matrix.sum(axis=1))
    assert saved["error"] == pytest.approx(1 - np.trace(matrix) / 128)
    # The same checkpoint, data and normalization as training's last test evaluation.
    metrics = files.read_json(run / "metrics.json")
    assert saved["error"] == pytest.approx(metrics["final_test_error"], abs=1e-6)

    (_, labels) = datasets.make_synthetic(256, 128)[1]
    preds = _reference_probs(run, "final", datasets.make_synthetic(256, 128)[1][0]).argmax(1)
    np.testing.assert_array_equal(
        matrix, np.histogram2d(labels, preds, bins=10, range=[[0, 10], [0, 10]])[0])
    # One 0/1 an image, in order: what paired comparisons of two nets read (results/paired.py).
    assert saved["correct"] == "".join("1" if ok else "0" for ok in preds == labels)
    wrong = saved["most_confident_wrong"]
    assert len(wrong) == min(16, int(np.sum(preds != labels)))
    assert all(w["label"] != w["predicted"] for w in wrong)
    assert [w["confidence"] for w in wrong] == sorted((w["confidence"] for w in wrong),
                                                      reverse=True)


@pytest.mark.slow
def test_flip_tta_averages_the_mirror_and_reports_its_effect(run):
    report = evaluate.evaluate(run, checkpoint="best", tta="flip")
    plain = evaluate.evaluate(run, checkpoint="best")
    assert report["error_without_tta"] == plain["error"]
    assert report["tta_effect"] == pytest.approx(report["error"] - plain["error"])
    metrics = files.read_json(run / "metrics.json")
    assert plain["error"] == pytest.approx(metrics["best_test_error"], abs=1e-6)

    (images, labels) = datasets.make_synthetic(256, 128)[1]
    probs = (_reference_probs(run, "best", images)
             + _reference_probs(run, "best", images, flip=True)) / 2
    assert report["error"] == pytest.approx(np.mean(probs.argmax(1) != labels))
    assert (run / "eval" / "test-best-flip.json").exists()


def test_val_split_is_the_held_out_tail(run, tmp_path):
    report = evaluate.evaluate(run, split="val", out=tmp_path)
    assert report["num_images"] == round(0.1 * 256)
    assert np.sum(report["confusion_matrix"]) == report["num_images"]
    assert (tmp_path / "val-best.json").exists()


@pytest.mark.slow
def test_auto_checkpoint_is_best_with_a_split_and_final_without(run, tmp_path, capsys):
    with_split = evaluate.evaluate(run, out=tmp_path / "a")  # checkpoint="auto", the default
    assert with_split["checkpoint"] == "best" and "validation split" in with_split["checkpoint_rule"]
    assert with_split["error"] == pytest.approx(
        files.read_json(run / "metrics.json")["best_test_error"], abs=1e-6)
    # A run on every training image (the default since issue 12) has only final.keras.
    alone = tmp_path / "no_split"
    alone.mkdir()
    saved = files.read_json(run / "config.json")
    files.write_json(alone / "config.json", {**saved, "val_fraction": 0.0})
    (alone / "final.keras").write_bytes((run / "final.keras").read_bytes())
    report = evaluate.evaluate(alone)
    assert report["checkpoint"] == "final" and "no validation split" in report["checkpoint_rule"]
    assert (alone / "eval" / "test-final.json").exists()
    assert main(["evaluate", str(alone), "--out", str(tmp_path / "b")]) == 0
    assert "final checkpoint (auto: no validation split" in capsys.readouterr().out
    with pytest.raises(evaluate.EvaluationError, match="--checkpoint final"):
        evaluate.evaluate(alone, checkpoint="best")


def test_cli_evaluates_and_reports_errors_in_one_line(run, tmp_path, capsys):
    assert main(["evaluate", str(run), "--checkpoint", "final", "--tta", "flip",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "test error" in out and "without flip TTA" in out
    assert (tmp_path / "test-final-flip-confusion.png").exists()

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["evaluate", str(empty)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no config.json" in err
    with pytest.raises(SystemExit) as info:
        main(["evaluate", str(run), "--split", "train"])
    assert info.value.code == 2


def test_missing_checkpoint_names_the_alternative(run, tmp_path):
    (tmp_path / "config.json").write_text((run / "config.json").read_text())
    with pytest.raises(evaluate.EvaluationError, match="--checkpoint final"):
        evaluate.evaluate(tmp_path, checkpoint="best")


@pytest.mark.slow
def test_head_reports_the_first_images_error_with_its_standard_error(run, tmp_path, capsys):
    report = evaluate.evaluate(run, checkpoint="final", head=50, out=tmp_path)
    (images, labels) = datasets.make_synthetic(256, 128)[1]
    wrong = _reference_probs(run, "final", images).argmax(1) != labels
    e = np.mean(wrong[:50])
    assert report["head"]["num_images"] == 50
    assert report["head"]["error"] == pytest.approx(e)
    assert report["head"]["std_error"] == pytest.approx(np.sqrt(e * (1 - e) / 50))
    assert files.read_json(tmp_path / "test-final.json")["head"] == report["head"]

    assert main(["evaluate", str(run), "--checkpoint", "final", "--head", "50",
                 "--out", str(tmp_path)]) == 0
    assert f"first 50 images: error {100 * e:.2f}%" in capsys.readouterr().out
    with pytest.raises(evaluate.EvaluationError, match="more than the split's 128 images"):
        evaluate.evaluate(run, checkpoint="final", head=129, out=tmp_path)
    with pytest.raises(evaluate.EvaluationError, match="head 0 is not a positive"):
        evaluate.evaluate(run, checkpoint="final", head=0, out=tmp_path)


# Issue #38 items 7 and 8, issue #40 items 3 and 10: the checkpoint and the data are the run's.

def _copy_run(run, target):
    import shutil
    return shutil.copytree(run, target, ignore=shutil.ignore_patterns("eval", "tensorboard"))


@pytest.fixture(scope="module")
def other_net(tmp_path_factory):
    """final.keras of a depth-14 net (untrained: only its structure matters)."""
    from cifar_resnet.nets import models
    path = tmp_path_factory.mktemp("other") / "final.keras"
    models.resnet_v1(depth=14).save(path)
    return path


def test_a_checkpoint_of_another_net_is_refused_in_one_line_and_nothing_written(
        run, tmp_path, other_net, capsys):
    import shutil
    copy = _copy_run(run, tmp_path / "x")
    shutil.copyfile(other_net, copy / "final.keras")
    assert main(["evaluate", str(copy), "--checkpoint", "final"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"{copy / 'final.keras'} holds resnet14_v1" in err and "not the resnet8_v1" in err
    assert not (copy / "eval").exists()


def test_a_truncated_checkpoint_is_named_damaged_not_missing(run, tmp_path, capsys):
    copy = _copy_run(run, tmp_path / "x")
    with open(copy / "final.keras", "r+b") as f:
        f.truncate(20_000)
    assert main(["evaluate", str(copy), "--checkpoint", "final"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is damaged (20,000 bytes; not a .keras archive" in err
    assert "not found" not in err


def test_data_other_than_the_runs_is_refused_by_its_fingerprint(run, tmp_path, capsys):
    copy = _copy_run(run, tmp_path / "x")
    record = files.read_json(copy / "data.json")
    files.write_json(copy / "data.json", {**record, "sha256": "0" * 64})
    assert main(["evaluate", str(copy), "--checkpoint", "final"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not the sha256:000000000000 the run" in err


def _cifar10_run(run, path, source):
    """A run directory of a cifar10 config (the synthetic run's depth-8 net fits it) whose
    data.json names `source` and no content (so any CIFAR-10 copy passes)."""
    path.mkdir(parents=True)
    config = files.read_json(run / "config.json")
    files.write_json(path / "config.json", {**config, "dataset": "cifar10", "data_dir": None,
                                            "val_fraction": 0.0})
    files.write_json(path / "data.json", {"dataset": "cifar10", "source": str(source)})
    (path / "final.keras").write_bytes((run / "final.keras").read_bytes())
    return path


def test_missing_data_is_one_line_naming_the_recorded_place_and_data_dir(run, tmp_path, no_env,
                                                                        capsys):
    gone = tmp_path / "gone" / "cifar-10-python.tar.gz"
    lone = _cifar10_run(run, tmp_path / "lone", gone)
    assert main(["evaluate", str(lone)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"not at {gone} (its data.json)" in err and "pass --data-dir DIR" in err
    assert main(["evaluate", str(lone), "--data-dir", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"not at {tmp_path / 'nowhere'} (--data-dir)" in err


@pytest.mark.slow
def test_the_data_json_source_is_read_without_any_setting(run, tmp_path, no_env, real_data,
                                                          capsys):
    lone = _cifar10_run(run, tmp_path / "lone", real_data)
    assert main(["evaluate", str(lone), "--head", "10"]) == 0  # no $CIFAR10_DIR, no cache
    out = capsys.readouterr().out
    assert "test error" in out and "on 10000 images" in out


def test_evaluate_prints_a_per_class_table_and_titles_its_figures(run, tmp_path, capsys,
                                                                  monkeypatch):
    titles = {}

    def keep(fig, path, **_):
        titles[pathlib.Path(path).name] = [ax.get_title() for ax in fig.axes] + [
            fig._suptitle.get_text() if fig._suptitle else ""]
    import pathlib
    monkeypatch.setattr(evaluate.files, "save_figure", keep)
    assert main(["evaluate", str(run), "--checkpoint", "final", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split() == ["class", "accuracy", "images", "most", "often", "taken", "for"]
    assert [line.split()[0] for line in out[2:12]] == [f"class{i}" for i in range(10)]
    report = files.read_json(tmp_path / "test-final.json")
    acc = report["per_class_accuracy"]["class0"]
    assert f"{100 * acc:.2f}%" in out[2]
    confusion = " ".join(titles["test-final-confusion.png"])
    assert str(run) in confusion and "resnet8_v1" in confusion and "final checkpoint" in confusion
    assert "resnet8_v1" in " ".join(titles["test-final-wrong.png"])
