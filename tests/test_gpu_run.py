"""benchmarks/gpu/run.sh --smoke: the prepared GPU run's whole path at toy size on a CPU.

A synthetic bundle it makes itself, depth-8 nets, a few iterations; the PyTorch part is skipped
when torch is absent. Runs with or without TensorFlow (marked `notf`).
"""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import tarfile

import pytest

pytestmark = [pytest.mark.notf,
              pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="needs jax")]
ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_smoke_run_packs_runs_throughput_and_summary(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([str(ROOT / "benchmarks/gpu/run.sh"), "--smoke",
                           f"--work={tmp_path / 'work'}", str(out)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    files = sorted(p.name for p in out.iterdir())
    assert files == ["runs.tar.gz", "summary.json", "throughput.json"]
    summary = json.loads((out / "summary.json").read_text())
    setup = summary["setup"]
    assert setup["backend"] == "jax" and setup["data"]["sha256_ok"] is True
    assert setup["data"]["exact"] == [40, 10]
    ours = [r for r in summary["throughput"] if r["impl"] == "keras-jax"]
    assert ours and all(r["img_per_s"] > 0 for r in ours), summary["throughput"]
    assert summary["training"] == {"resnet8": "complete", "plain8": "complete"}
    for net in ("resnet8", "plain8"):
        errors = summary["final_errors"][net]
        assert 0 <= errors["test_error"] <= 1 and 0 <= errors["exact_1000_test_error"] <= 1
        assert summary["metrics"][net]["iterations"] == 16
        assert summary["metrics"][net]["input_pipeline"] == "device"
    with tarfile.open(out / "runs.tar.gz") as tar:
        names = set(tar.getnames())
    assert {"resnet8/history.csv", "resnet8/metrics.json", "plain8/history.csv"} <= names
    # A second call with --resume finds the runs complete and packs them again.
    again = subprocess.run([str(ROOT / "benchmarks/gpu/run.sh"), "--smoke", "--resume",
                            f"--work={tmp_path / 'work'}", str(tmp_path / "out2")],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = json.loads((tmp_path / "out2" / "summary.json").read_text())
    assert resumed["training"] == summary["training"] and "throughput" not in resumed
