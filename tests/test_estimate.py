"""The duration said before a long `train` run (issue #26, spec/estimate.py): from a measured
rate of the same net and precision, this machine's runs first, else a cost-scaled one; nothing
for short runs or when no rate is known. No TensorFlow."""

import json

import pytest

from cifar_resnet.spec import config as config_lib, estimate


def _run(root, name, rate, precision="mixed_bfloat16", status="complete", **fields):
    run = root / name / "seed0"
    run.mkdir(parents=True)
    config = config_lib.resolve(None, {"precision": precision, **fields})
    config_lib.save(config, run / "config.json")
    (run / "metrics.json").write_text(json.dumps(
        {"status": status, "images_per_sec": rate, "cpu": {"model": "Test CPU"}}))
    return run


@pytest.fixture
def no_committed(monkeypatch, tmp_path):
    monkeypatch.setattr(estimate, "REPOSITORY_DOCS", tmp_path / "no-docs")


def test_the_same_net_measured_on_this_machine(tmp_path, no_committed):
    runs = tmp_path / "runs"
    _run(runs, "resnet20_v1", 400.0, depth=20)
    config = config_lib.resolve(None, {"depth": 20, "iterations": 64000})
    said = estimate.line(config, runs / "resnet20_v1" / "seed1", "mixed_bfloat16", gpu=False)
    # 64,000 x 128 images at 400 img/s: 20,480 s, 5.7 hours.
    assert "about 5.7 hours" in said and "estimate" in said
    assert "resnet20_v1 mixed_bfloat16 at 400 img/s measured by this machine's run" in said
    assert "64,000 iterations" in said


def test_another_net_is_scaled_by_its_cost_and_says_so(tmp_path, no_committed):
    runs = tmp_path / "runs"
    _run(runs, "resnet20_v1", 400.0, depth=20)
    config = config_lib.resolve(None, {"depth": 56, "iterations": 64000})
    said = estimate.line(config, runs / "resnet56_v1" / "seed0", "mixed_bfloat16", gpu=False)
    resnet20 = config_lib.resolve(None, {"depth": 20})
    assert estimate.relative_macs(config) / estimate.relative_macs(resnet20) == 487 / 163
    scale = estimate.relative_cost(config) / estimate.relative_cost(resnet20)
    assert 2.8 < scale < 3.0  # 27 blocks vs 9; the stem weighs a little more with activations
    assert f"scaled by multiply-adds and activations x{scale:.2f}" in said


# The project's bench, 2-core Intel Xeon with AMX, bf16 (issue #40): img/s.
XEON_BENCH = {(1, 20, "basic"): 1250, (1, 56, "basic"): 428, (1, 110, "basic"): 224,
              (2, 56, "bottleneck"): 247}


@pytest.mark.parametrize("measured", list(XEON_BENCH))
def test_the_cost_model_gives_the_benchs_other_nets_within_5_percent(measured):
    """Multiply-adds alone made ResNet-56 v2 2.7 times too fast beside ResNet-56 v1."""
    def cost(key):
        version, depth, block = key
        return estimate.relative_cost(config_lib.resolve(None, dict(
            version=version, depth=depth, block=block)))
    for other, rate in XEON_BENCH.items():
        predicted = XEON_BENCH[measured] * cost(measured) / cost(other)
        assert abs(predicted / rate - 1) < 0.05, (measured, other, predicted, rate)


def test_a_bottleneck_net_is_scaled_from_a_bottleneck_net_when_there_is_one(tmp_path,
                                                                            no_committed):
    runs = tmp_path / "runs"
    _run(runs, "resnet56_v1", 428.0, depth=56)
    _run(runs, "resnet164_v2", 100.0, version=2, depth=164)
    config = config_lib.resolve(None, {"version": 2, "depth": 56, "iterations": 64000})
    said = estimate.line(config, runs / "resnet56_v2" / "seed0", "mixed_bfloat16", gpu=False)
    assert "resnet164_v2 mixed_bfloat16 at 100 img/s" in said


@pytest.mark.parametrize("case", ["short", "synthetic", "short without a rate"])
def test_no_line_for_short_runs(case, tmp_path, no_committed):
    runs = tmp_path / "runs"
    if case != "short without a rate":
        _run(runs, "resnet20_v1", 400.0, depth=20)
    fields = {"depth": 20, "iterations": 100 if case.startswith("short") else 64000}
    if case == "synthetic":
        fields["dataset"] = "synthetic"
    config = config_lib.resolve(None, fields)
    assert estimate.line(config, runs / "x" / "seed0", "mixed_bfloat16", gpu=False) is None


@pytest.mark.parametrize("case", ["other precision", "unfinished", "gpu"])
def test_a_long_run_without_a_rate_still_says_its_length(case, tmp_path, no_committed):
    runs = tmp_path / "runs"
    _run(runs, "resnet20_v1", 400.0, depth=20,
         status="partial" if case == "unfinished" else "complete")
    config = config_lib.resolve(None, {"depth": 20, "iterations": 64000})
    precision = "float32" if case == "other precision" else "mixed_bfloat16"
    workdir = tmp_path / "elsewhere" / "x" / "seed0" if case == "gpu" else runs / "x" / "seed0"
    said = estimate.line(config, workdir, precision, gpu=case == "gpu")
    assert said.endswith("likely hours on a CPU") and "64,000 iterations; no measured img/s" in said
    assert "about" not in said


def test_on_gpu_a_run_of_this_machine_gives_the_rate(tmp_path, no_committed):
    runs = tmp_path / "runs"
    _run(runs, "resnet20_v1", 4000.0, depth=20, precision="mixed_float16")
    config = config_lib.resolve(None, {"depth": 20, "iterations": 64000})
    said = estimate.line(config, runs / "x" / "seed0", "mixed_float16", gpu=True)
    assert "about 34 minutes" in said  # 8,192,000 images at 4,000 img/s


def test_ten_minutes_is_the_threshold(tmp_path, no_committed):
    runs = tmp_path / "runs"
    _run(runs, "resnet20_v1", 128.0, depth=20)  # one iteration a second
    for iterations, says in ((590, False), (610, True)):
        config = config_lib.resolve(None, {"depth": 20, "iterations": iterations})
        said = estimate.line(config, runs / "x" / "seed0", "mixed_bfloat16", gpu=False)
        assert (said is not None) == says


def test_the_committed_cpu_repro_rates_are_found():
    """docs/cpu-repro keeps metrics.json: a ResNet-56 bf16 run gets a line from it."""
    config = config_lib.resolve(None, {"depth": 56})
    said = estimate.line(config, "/nonexistent/runs/resnet56_v1/seed0", "mixed_bfloat16",
                         gpu=False)
    assert said and "the committed run" in said and "docs/cpu-repro" in said
