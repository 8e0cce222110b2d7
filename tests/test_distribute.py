"""Strategies (cifar_resnet/run/distribute.py) on CPU.

MirroredStrategy runs over two logical CPU devices and MultiWorkerMirroredStrategy over two
localhost processes. Both need a fresh process: logical devices and collective ops must be set
up before TensorFlow initialises, which pytest's process did long ago.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from cifar_resnet.spec import config as config_lib
from cifar_resnet.run import distribute

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = dict(dataset="synthetic", depth=8, batch_size=64, synthetic_train=256, synthetic_test=128)
TIMEOUT = 300  # seconds per subprocess; a tiny run takes ~20 s on a busy 2-core machine


def python(code: str, **env) -> subprocess.Popen:
    """Starts `code` in a fresh interpreter at the repository root."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT),
                                 **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(*procs) -> list[dict]:
    """Waits for every process (bounded); kills all on any failure; returns their last JSON line."""
    try:
        outs = [p.communicate(timeout=TIMEOUT) for p in procs]
    except subprocess.TimeoutExpired:
        outs = None
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    if outs is None:
        pytest.fail(f"subprocess still running after {TIMEOUT} s; killed")
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, f"exit {p.returncode}\n{out[-2000:]}\n{err[-4000:]}"
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]


def test_strategy_field_is_validated():
    assert config_lib.resolve(overrides=dict(strategy="mirrored")).strategy == "mirrored"
    with pytest.raises(config_lib.ConfigError, match="strategy 'gpu' is not one of 'auto'"):
        config_lib.resolve(overrides=dict(strategy="gpu"))


def test_auto_is_one_device_without_gpus():
    assert distribute.gpu_count() == 0  # this machine; the test documents what auto does here
    assert distribute.resolve_name("auto") == "one"
    assert distribute.placement("one") == distribute.Placement("one", None)


@pytest.mark.parametrize("tf_config, role", [
    ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}},
     ("worker", 0, True)),
    ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}},
     ("worker", 1, False)),
    ({"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}},
     ("worker", 0, False)),
    ({"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, "task": {"type": "chief", "index": 0}},
     ("chief", 0, True)),
])
def test_cluster_role_finds_the_chief(tf_config, role):
    assert distribute.cluster_role(json.dumps(tf_config)) == role


@pytest.mark.parametrize("text, match", [("", "needs TF_CONFIG"), ("{", "not a cluster"), (
    '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}', "not a cluster")])
def test_cluster_role_rejects_bad_tf_config(text, match):
    with pytest.raises(distribute.StrategyError, match=match):
        distribute.cluster_role(text)


MIRRORED = """
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, numpy as np
    from cifar_resnet.run import build, distribute, train
    from cifar_resnet.spec import config as config_lib, rundir

    tiny = dict(TINY)
    cfg = config_lib.resolve(overrides=dict(tiny, epochs=2, strategy="mirrored"))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, 64)

    one = build.build_model(cfg)  # default strategy: one device
    placement = distribute.placement("mirrored")
    with placement.scope():
        two = build.build_model(cfg)
    two.set_weights(one.get_weights())
    result = dict(replicas=placement.num_replicas,
                  strategy=type(two.distribute_strategy).__name__,
                  eval_one=one.evaluate(x, y, batch_size=64, verbose=0)[0],
                  eval_two=two.evaluate(x, y, batch_size=64, verbose=0)[0])

    # One SGD step on one device with the mirrored semantics: each replica normalises its own
    # 32 images (BatchNorm statistics per device, as on the paper's two GPUs); the gradient is
    # that of the mean of the two halves' losses plus the L2 term.
    ce = keras.losses.SparseCategoricalCrossentropy()
    with tf.GradientTape() as tape:
        halves = [ce(y[i:i + 32], one(x[i:i + 32], training=True)) for i in (0, 32)]
        loss = tf.add_n(halves) / 2 + tf.add_n(one.losses)
    grads = tape.gradient(loss, one.trainable_variables)
    expected = [w.numpy() - cfg.lr * g.numpy() for w, g in zip(one.trainable_variables, grads)]
    # Through fit and tf.data, as the runner trains (Keras' train_on_batch gives every replica
    # the whole batch instead).
    batch = tf.data.Dataset.from_tensor_slices((x, y)).batch(64)
    result["train_one"] = float(loss)
    result["train_two"] = two.fit(batch, verbose=0).history["loss"][0]
    result["max_weight_diff"] = max(float(np.abs(np.asarray(w) - e).max())
                                    for w, e in zip(two.trainable_variables, expected))

    # A tiny run under the strategy, stopped after its first epoch, then resumed.
    class Stop(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt("stop after epoch 1")

    class Seen(keras.callbacks.Callback):
        epochs, strategies = [], []
        def on_epoch_begin(self, epoch, logs=None):
            self.epochs.append(epoch)
            self.strategies.append(type(self.model.distribute_strategy).__name__)

    workdir = sys.argv[-1] if len(sys.argv) > 1 else "RUN"
    try:
        train.run_experiment(cfg, workdir, callbacks=[Stop()], verbose=0)
    except KeyboardInterrupt:
        pass
    metrics = train.run_experiment(cfg, workdir, callbacks=[Seen()], verbose=0)
    result.update(resumed_epochs=Seen.epochs, resumed_strategies=Seen.strategies,
                  status=metrics["status"], epochs=metrics["epochs"],
                  history_epochs=[r["period"] for r in rundir.read_history(f"{workdir}/history.csv")])
    print(json.dumps(result))
"""


@pytest.mark.slow
def test_mirrored_matches_one_device_and_resumes(tmp_path):
    code = MIRRORED.replace("dict(TINY)", repr(TINY)).replace('"RUN"', repr(str(tmp_path / "run")))
    [r] = finish(python(code))
    assert r["replicas"] == 2 and r["strategy"] == "MirroredStrategy"
    # float32 sums in another order (per replica, then all-reduce): ~1e-7 relative per op, a few
    # hundred ops deep; 1e-5 is far above that and far below any semantic difference (the loss
    # with whole-batch BatchNorm statistics differs in the 3rd digit).
    assert r["eval_two"] == pytest.approx(r["eval_one"], rel=1e-5)
    assert r["train_two"] == pytest.approx(r["train_one"], rel=1e-5)
    assert r["max_weight_diff"] < 1e-5  # lr 0.1 times gradient differences of ~1e-6
    assert r["resumed_epochs"] == [1] and r["resumed_strategies"] == ["MirroredStrategy"]
    assert (r["status"], r["epochs"], r["history_epochs"]) == ("complete", 2, [0.0, 1.0])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


WORKER = """
    import json, os, pathlib
    import keras, numpy as np
    from cifar_resnet.run import train
    from cifar_resnet.spec import config as config_lib

    class DumpWeights(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            np.savez(os.environ["WEIGHTS"], **{("trainable:" if w.trainable else "other:")
                                               + w.path: np.asarray(w) for w in self.model.weights})

    cfg = config_lib.resolve(overrides=dict(TINY, epochs=1, strategy="multiworker"))
    metrics = train.run_experiment(cfg, os.environ["RUN"], callbacks=[DumpWeights()], verbose=0)
    print(json.dumps(dict(status=metrics["status"], epochs=metrics["epochs"])))
"""


@pytest.mark.slow
def test_two_workers_on_localhost(tmp_path):
    ports = [free_port(), free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    run = tmp_path / "run"  # one path for both: a file system the workers share
    procs = []
    for index in (0, 1):
        scratch = tmp_path / f"tmp{index}"
        scratch.mkdir()
        procs.append(python(
            WORKER.replace("dict(TINY,", f"dict({TINY!r},"), RUN=str(run), TMPDIR=str(scratch),
            WEIGHTS=str(tmp_path / f"weights{index}.npz"),
            TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})))
    results = finish(*procs)
    assert results == [{"status": "complete", "epochs": 1}] * 2
    w0, w1 = (np.load(tmp_path / f"weights{i}.npz") for i in (0, 1))
    assert len(w0.files) == len(w1.files) > 0
    assert w0.files == w1.files
    differ = [name for name in w0.files if not np.array_equal(w0[name], w1[name])]
    # All-reduced updates of identical (broadcast) initial values: equal bit for bit.
    assert any(n.startswith("trainable:") for n in w0.files)
    assert not [n for n in differ if n.startswith("trainable:")]
    # BatchNorm moving statistics are each worker's own, from its half of each batch (like the
    # paper's per-GPU BatchNorm); the chief's are the ones saved.
    assert all(n.endswith(("/moving_mean", "/moving_variance")) for n in differ)
    assert {"config.json", "history.csv", "metrics.json", "final.keras"} <= {
        p.name for p in run.iterdir()}
    assert len(train_history(run)) == 1
    # The non-chief's scratch copy of the run directory is gone; the chief made none.
    assert list((tmp_path / "tmp0").iterdir()) == list((tmp_path / "tmp1").iterdir()) == []


def train_history(run):
    from cifar_resnet.spec import rundir
    return rundir.read_history(run / "history.csv")
