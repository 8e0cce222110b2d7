"""Keras 3 on JAX without TensorFlow: the library, the CLI, checkpoints and resume.

Each check runs in a fresh interpreter with KERAS_BACKEND=jax (KERAS_BACKEND is read once, at
the first `import keras`). In the project's main environment TensorFlow is installed, so these
tests also prove it is never imported; `.ci/run` runs them again in a virtual environment
without TensorFlow (requirements-notf.txt). Marked `notf`.
"""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

import optional

pytestmark = [
    pytest.mark.notf,
    optional.needs("jax"),
]
ROOT = pathlib.Path(__file__).resolve().parents[1]

EXPERIMENT = '''"""A one-net sweep on synthetic data, for the TF-free tests."""
RECIPE = dict(dataset="synthetic", depth=8, epochs=3, batch_size=64, synthetic_train=320,
              synthetic_test=128, val_fraction=0.2, log_every=2)
NETS = {"resnet8": dict(depth=8)}
PAPER = {"resnet8": dict(error=10.0, source="made up for the test")}
PANELS = {"resnet": ["resnet8"]}
'''

# As if TensorFlow were not installed, also where it is: `import tensorflow` raises ImportError.
BLOCK = """
    import sys
    sys.modules["tensorflow"] = None
"""

SCRIPT = BLOCK + """
    import json, os, pathlib, signal, sys
    import keras, numpy as np
    from cifar_resnet.run import reliability, train
    from cifar_resnet.spec import config as config_lib, rundir
    from cifar_resnet.__main__ import main

    base = pathlib.Path(sys.argv[1])
    out = {"backend": keras.backend.backend()}
    # The sweep's run (CLI) is unbroken; the same config is then stopped by SIGTERM in its
    # third logging period and resumed.
    out["cli_sweep"] = main(["sweep", "notftest", "--runs-dir", str(base / "runs")])
    whole_dir = base / "runs" / "notftest" / "resnet8" / "seed0"
    whole = json.loads((whole_dir / "metrics.json").read_text())
    cfg = config_lib.load(whole_dir / "config.json")

    class Stop(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if self.model.optimizer.iterations.numpy() == 5:
                os.kill(os.getpid(), signal.SIGTERM)
    try:
        train.run_experiment(cfg, base / "cut", callbacks=[Stop()], verbose=0)
        out["stopped"] = False
    except reliability.Interrupted:
        out["stopped"] = True
    out["rows_after_stop"] = len(rundir.read_history(base / "cut" / "history.csv"))
    resumed = train.run_experiment(cfg, base / "cut", verbose=0)
    a = keras.saving.load_model(whole_dir / "final.keras")
    b = keras.saving.load_model(base / "cut" / "final.keras")
    out["resume_max_weight_diff"] = max(float(np.abs(np.asarray(u) - np.asarray(v)).max())
                                        for u, v in zip(a.get_weights(), b.get_weights()))
    out["history_equal"] = ([r["loss"] for r in rundir.read_history(whole_dir / "history.csv")]
                            == [r["loss"] for r in rundir.read_history(base / "cut" / "history.csv")])
    out["metrics"] = {k: whole[k] for k in ("status", "input_pipeline", "iterations", "params")}
    out["versions"] = whole["versions"]
    out["files"] = sorted(p.name for p in (whole_dir).iterdir())

    # Checkpoint round trip: the saved net, reloaded and saved again, predicts the same.
    x = np.random.default_rng(0).normal(size=(8, 32, 32, 3)).astype("float32")
    a.save(base / "again.keras")
    again = keras.saving.load_model(base / "again.keras")
    out["round_trip_diff"] = float(np.abs(a.predict(x, verbose=0) - again.predict(x, verbose=0)).max())
    out["input_shape"] = list(a.inputs[0].shape)

    # The CLI: a bad flag, evaluate and report (train ran through sweep above).
    out["cli_bad"] = main(["train", "--depth", "9", "--workdir", str(base / "bad")])
    out["cli_evaluate"] = main(["evaluate", str(whole_dir), "--tta", "flip",
                                "--out", str(base / "eval")])
    ev = json.loads((base / "eval" / "test-best-flip.json").read_text())
    out["eval_error"] = ev["error"]
    out["eval_images"] = ev["num_images"]
    out["cli_report"] = main(["report", str(base / "runs" / "notftest"),
                              "--out", str(base / "report")])
    out["report_files"] = sorted(p.name for p in (base / "report").iterdir())
    out["tensorflow_imported"] = sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow"
                                        and sys.modules[m] is not None)
    print(json.dumps(out))
"""

REAL = BLOCK + """
    import json, sys
    import keras
    from cifar_resnet.run import train
    from cifar_resnet.spec import config as config_lib
    cfg = config_lib.resolve(overrides=dict(data_dir=sys.argv[2], depth=8, iterations=3,
                                            log_every=3, val_fraction=0))
    m = train.run_experiment(cfg, sys.argv[1], verbose=0)
    print(json.dumps({"status": m["status"], "pipeline": m["input_pipeline"],
                      "error": m["final_test_error"],
                      "tf": sys.modules.get("tensorflow") is not None}))
"""


def _run(script, *args, tmp_path):
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT),
           "CIFAR_RESNET_EXPERIMENTS": str(tmp_path / "experiments"),
           "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def test_jax_without_tensorflow_trains_resumes_evaluates_and_reports(tmp_path):
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "notftest.py").write_text(EXPERIMENT)
    r, stderr = _run(SCRIPT, tmp_path / "work", tmp_path=tmp_path)
    assert r["backend"] == "jax"
    assert r["tensorflow_imported"] == []
    assert r["metrics"] == {"status": "complete", "input_pipeline": "device", "iterations": 12,
                            "params": 75_290}
    assert "tensorflow" not in r["versions"] and r["versions"]["jax"]
    assert {"config.json", "history.csv", "best.keras", "final.keras",
            "metrics.json"} <= set(r["files"])
    assert "tensorboard" not in r["files"]  # Keras writes TensorBoard logs with TensorFlow
    # Stopped after iteration 5, in the third period of 2: two periods were kept.
    assert r["stopped"] and r["rows_after_stop"] == 2
    assert r["resume_max_weight_diff"] == 0.0 and r["history_equal"]
    assert r["round_trip_diff"] == 0.0 and r["input_shape"] == [None, 32, 32, 3]
    assert r["cli_bad"] == 2
    assert r["cli_evaluate"] == 0 and r["eval_images"] == 128 and 0 <= r["eval_error"] <= 1
    assert r["cli_sweep"] == 0 and r["cli_report"] == 0
    assert any(name.endswith(".png") for name in r["report_files"])


def test_jax_without_tensorflow_on_the_real_copy(tmp_path, real_data):
    r, _ = _run(REAL, tmp_path / "run", real_data, tmp_path=tmp_path)
    assert r == {"status": "complete", "pipeline": "device", "error": r["error"], "tf": False}
    assert 0 < r["error"] <= 1
