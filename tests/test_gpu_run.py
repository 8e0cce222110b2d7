"""benchmarks/gpu/run.sh: the prepared GPU run's whole path at toy size on a CPU (--smoke), its
exit statuses, bounded stops, packing and unpacking, and the fixed batch shapes it trains with.

A synthetic bundle it makes itself, depth-8 nets, a few iterations; the PyTorch part is skipped
when torch is absent. Runs with or without TensorFlow (marked `notf`).
"""

import json
import os
import pathlib
import subprocess
import sys
import tarfile
import time

import pytest

import optional

pytestmark = [pytest.mark.notf, optional.needs("jax")]
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
    assert summary["failed"] == []
    for net in ("resnet8", "plain8"):  # fixed shapes: one train and one eval compile
        assert summary["training"][net] == {"status": "complete",
                                            "compiles": {"train": 1, "eval": 1}}
    for net in ("resnet8", "plain8"):
        errors = summary["final_errors"][net]
        assert 0 <= errors["test_error"] <= 1 and 0 <= errors["exact_1000_test_error"] <= 1
        assert summary["metrics"][net]["iterations"] == 16
        assert summary["metrics"][net]["input_pipeline"] == "device"
    with tarfile.open(out / "runs.tar.gz") as tar:
        names = set(tar.getnames())
    assert {"resnet8/history.csv", "resnet8/metrics.json", "plain8/history.csv",
            "resnet8/final.keras", "logs/resnet8.log"} <= names
    # A second call with --resume finds the runs complete and packs them again.
    again = subprocess.run([str(ROOT / "benchmarks/gpu/run.sh"), "--smoke", "--resume",
                            f"--work={tmp_path / 'work'}", str(tmp_path / "out2")],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = json.loads((tmp_path / "out2" / "summary.json").read_text())
    assert ({n: s["status"] for n, s in resumed["training"].items()} ==
            {"resnet8": "complete", "plain8": "complete"}) and "throughput" not in resumed


def run_sh(*args, tmp_path, timeout=120):
    env = {**os.environ, "PYTHON": sys.executable, "JAX_PLATFORMS": "cpu"}
    return subprocess.run([str(ROOT / "benchmarks/gpu/run.sh"), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_failing_stage_gives_nonzero_exit_and_still_packs(tmp_path):
    bundle = tmp_path / "bundle"  # a manifest, but no data: setup fails
    bundle.mkdir()
    (bundle / "manifest.json").write_text(json.dumps({"wheels": [], "data": {}}))
    out = tmp_path / "out"
    proc = run_sh(f"--bundle={bundle}", f"--work={tmp_path / 'work'}", "--total=60", str(out),
                  tmp_path=tmp_path)
    assert proc.returncode == 1, (proc.stdout + proc.stderr)[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed"] == ["setup"] and "cifar10.npz" in summary["errors"]["setup"]
    assert (out / "runs.tar.gz").exists()


def test_bad_usage_exits_2(tmp_path):
    assert run_sh("--bogus", "out", tmp_path=tmp_path).returncode == 2
    assert run_sh("--total=abc", "out", tmp_path=tmp_path).returncode == 2
    assert run_sh("--resume-from", tmp_path=tmp_path).returncode == 2


def test_stop_children_kills_a_child_that_ignores_sigterm_within_the_grace():
    from benchmarks.gpu import gpu_run
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, " \
           "flush=True); time.sleep(60)"
    stubborn = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    polite = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    stubborn.stdout.readline()  # its handler is set
    t0 = time.time()
    gpu_run.stop_children({"a": stubborn, "b": polite}, grace_s=1.5)
    assert time.time() - t0 < 5
    assert polite.returncode == -15 and stubborn.returncode == -9
    assert gpu_run.child_status(-9).startswith("killed after the grace")
    assert gpu_run.child_status(143).startswith("stopped at the deadline")
    assert gpu_run.child_status(1) == "exit 1"


def test_count_compiles_reads_jax_log_compiles_lines(tmp_path):
    from benchmarks.gpu import gpu_run
    log = tmp_path / "r.log"
    log.write_text("Compiling train_step with global shapes and types [...]\n"
                   "Finished XLA compilation of jit(train_step) in 1.2 s\n"
                   "Compiling test_step with global shapes and types [...]\n"
                   "Compiling predict_step with global shapes\nother\n")
    assert gpu_run.count_compiles(log) == {"train": 1, "eval": 1}
    assert gpu_run.count_compiles(tmp_path / "missing.log") == {"train": 0, "eval": 0}


def test_pack_then_unpack_restores_the_run_directories(tmp_path):
    from benchmarks.gpu import gpu_run
    runs, out = tmp_path / "runs", tmp_path / "out"
    (runs / "resnet20" / "backup").mkdir(parents=True)
    (runs / "resnet20" / "tensorboard").mkdir()
    (runs / "resnet20" / "history.csv").write_text("epoch,iterations\n1,390\n")
    (runs / "resnet20" / "backup" / "epoch1.weights.h5").write_bytes(b"w" * 100)
    (runs / "resnet20" / "tensorboard" / "events").write_text("x")
    (runs / "resnet20.log").write_text("log")
    out.mkdir()
    gpu_run.pack(out, runs)
    again = tmp_path / "again"
    assert gpu_run.unpack(out, again) == ["resnet20"]
    assert (again / "resnet20" / "backup" / "epoch1.weights.h5").read_bytes() == b"w" * 100
    assert (again / "resnet20.log").read_text() == "log"
    assert not (again / "resnet20" / "tensorboard").exists()
    # A history.csv of before issue #39 (`epoch` counted logging periods) reads as today's.
    assert gpu_run.partial_metrics(again / "resnet20") == {
        "status": "partial", "period": 1, "iterations": 390}
    (again / "resnet20" / "history.csv").write_text("period,iterations\n1,390\n")
    assert gpu_run.partial_metrics(again / "resnet20") == {
        "status": "partial", "period": 1, "iterations": 390}


def test_fixed_shapes_drop_the_last_partial_batch_and_divide_the_test_set():
    import numpy as np
    from cifar_resnet.data import device_input
    from cifar_resnet.spec import config as config_lib
    cfg = config_lib.Config(drop_remainder=True, eval_batch_size=500).validate()
    assert cfg.iterations_per_pass(50_000) == 390
    assert config_lib.Config().iterations_per_pass(50_000) == 391  # the default unchanged
    steps, epochs, planned = cfg.plan(50_000)
    assert (steps, epochs, planned) == (390, 165, 64_000)
    x = np.zeros((600, 4, 4, 3), np.uint8)
    y = np.arange(600)  # the label names the image
    batches = device_input.TrainBatches(x, y, batch_size=128, seed=0, start=0, stop=8,
                                        drop_remainder=True)
    assert batches.per_pass == 4
    assert {len(batches[i][1]) for i in range(8)} == {128}
    # Each pass leaves out a different 88 images, drawn with the pass's permutation.
    seen = [set(np.concatenate([batches[p * 4 + b][1] for b in range(4)])) for p in (0, 1)]
    assert len(seen[0]) == len(seen[1]) == 512 and seen[0] != seen[1]
    evals = device_input.EvalBatches(x[:500], y[:500], batch_size=cfg.eval_batch_size // 5)
    assert {len(evals[i][1]) for i in range(len(evals))} == {100}
    with pytest.raises(config_lib.ConfigError):
        config_lib.Config(eval_batch_size=0).validate()
