"""Tests for benchmarks/torch_train.py, the independent PyTorch trainer of the fast recipe.

Its pieces are checked against the project's own (data loading, schedules, which weights decay),
so that a gap between the two trainers' results cannot come from a difference in recipe.
"""

import csv
import json
import math
import sys

import numpy as np
import pytest

import optional

torch = optional.importorskip("torch")

from benchmarks import torch_train  # noqa: E402
from cifar_resnet.spec import datasets
from cifar_resnet.nets import models
from cifar_resnet.spec import schedules  # noqa: E402
from cifar_resnet.spec import config as config_lib  # noqa: E402

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from test_dataid import write_cifar  # noqa: E402


def test_archive_reads_as_the_project_reads_it(tmp_path):
    _, archive = write_cifar(tmp_path)
    x, y, x_test, y_test = torch_train.load_cifar10(archive)
    splits = datasets.load_dataset("cifar10", archive, val_fraction=0.0)
    np.testing.assert_array_equal(x, splits.train[0])
    np.testing.assert_array_equal(y, splits.train[1])
    np.testing.assert_array_equal(x_test, splits.test[0])
    np.testing.assert_array_equal(y_test, splits.test[1])
    np.testing.assert_allclose(x.astype(np.float64).mean(0) / 255, splits.mean, atol=1e-6)


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_lr_matches_the_project_schedule(schedule):
    config = config_lib.resolve(overrides=dict(
        lr=0.1, lr_schedule=schedule, warmup_iterations=391, warmup_lr=0.01))
    total = 34 * 391
    theirs = schedules.learning_rate(config, total)
    for step in (0, 1, 200, 390, 391, 392, 5000, total // 2, total - 1):
        assert torch_train.lr_at(step, total, lr=0.1, warmup_iterations=391, warmup_lr=0.01,
                                 schedule=schedule) == pytest.approx(theirs(step), abs=1e-12)


def test_kernels_only_decays_what_the_keras_model_regularizes():
    net = torch_train.torch_resnet.CifarResNet(20, 1)
    decayed, rest = torch_train.param_groups(net, 5e-4, "kernels")
    model = models.resnet_v1((32, 32, 3), depth=20, shortcut="A", regularize_all=False)
    regularized = sum(int(np.prod(w.shape)) for layer in model.layers
                      for w in layer.weights if getattr(layer, "kernel_regularizer", None)
                      is not None and w.path.endswith("kernel"))
    # The conv kernels: not BatchNorm's 2 x 688 scales and offsets, nor the classifier's
    # 64 x 10 kernel and 10 biases (the Keras example's choice).
    assert (sum(p.numel() for p in decayed["params"]) == regularized
            == 269_722 - 2 * 688 - 650)
    assert rest["weight_decay"] == 0.0 and decayed["weight_decay"] == 5e-4
    (everything,) = torch_train.param_groups(net, 5e-4, "all")
    assert sum(p.numel() for p in everything["params"]) == 269_722


def test_tiny_run_writes_its_curve_and_results(tmp_path, capsys):
    r = _tiny(tmp_path, eval_every=2)
    rows = list(csv.DictReader(open(tmp_path / "history.csv")))
    # 80 images in batches of 32: 3 iterations an epoch, the last one partial.
    assert [(int(r_["epoch"]), int(r_["iterations"])) for r_ in rows] == [(2, 6), (3, 9)]
    assert r["iterations"] == 9 and len(capsys.readouterr().out.splitlines()) == 2
    assert float(rows[-1]["lr"]) == pytest.approx(
        torch_train.lr_at(8, 9, lr=0.1, warmup_iterations=3, warmup_lr=0.01, schedule="cosine"))
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == json.loads(json.dumps(r))
    e = saved["head"]["error"]
    assert saved["head"]["num_images"] == 20
    assert saved["head"]["std_error"] == pytest.approx(math.sqrt(e * (1 - e) / 20))
    assert 0 <= saved["final_test_error"] <= 1 and saved["recipe"]["nesterov"] is True


def test_cli_refuses_a_missing_archive_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        torch_train.main(["--data", str(tmp_path / "none.tar.gz"), "--out", str(tmp_path)])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


def _tiny(out, log=print, **overrides):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (80, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, 80)
    kw = dict(epochs=3, batch_size=32, lr=0.1, warmup_iterations=3, warmup_lr=0.01,
              schedule="cosine", momentum=0.9, nesterov=True, weight_decay=5e-4,
              decay_on="kernels", label_smoothing=0.1, eval_every=1, depth=8, head=20,
              precision="float32")
    return torch_train.train(x, y, x[:30], y[:30], out, log=log, **{**kw, **overrides})


def test_an_interrupted_run_resumes_to_the_same_result(tmp_path):
    whole = _tiny(tmp_path / "whole")

    def stop_after_first_epoch(line):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _tiny(tmp_path / "parts", log=stop_after_first_epoch)
    lines = []
    parts = _tiny(tmp_path / "parts", log=lines.append)
    assert lines[0].startswith(f"resuming {tmp_path / 'parts'} after epoch 1 of 3")
    strip = lambda rows: [{k: v for k, v in r.items() if k != "wall_time"} for r in rows]
    assert (strip(csv.DictReader(open(tmp_path / "parts" / "history.csv")))
            == strip(csv.DictReader(open(tmp_path / "whole" / "history.csv"))))
    for key in ("final_test_error", "final_train_error", "flip_tta_test_error", "head"):
        assert parts[key] == whole[key]

    with pytest.raises(ValueError, match=r"other settings \(lr\); use another --out"):
        _tiny(tmp_path / "parts", lr=0.2)


def test_the_recipe_is_the_fast_experiments_as_the_sweep_builds_it():
    from cifar_resnet.spec import experiments
    recipe = torch_train.fast_recipe()
    config = experiments.run_config("fast", "resnet20", 0)
    steps = math.ceil(50_000 / config.batch_size)
    assert recipe == dict(
        epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
        warmup_iterations=config.resolved_warmup, warmup_lr=config.warmup_lr,
        schedule=config.lr_schedule, momentum=config.momentum, nesterov=config.nesterov,
        weight_decay=config.weight_decay, decay_on=config.weight_decay_on or "all",
        label_smoothing=config.label_smoothing, eval_every=config.log_every // steps)
    # The file's "1 pass" warm-up and "2 passes" logging period, at batch 128 on 50k images.
    assert (recipe["warmup_iterations"], recipe["eval_every"]) == (391, 2)
    assert config.val_fraction == 0.0 and config.depth == 20 and config.shortcut == "A"
