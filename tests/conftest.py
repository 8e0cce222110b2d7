import collections
import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Before any test module imports TensorFlow: tests run with oneDNN set as users get it
# (TF_ENABLE_ONEDNN_OPTS=1 unless set; cifar_resnet/spec/cpu.py).
import cifar_resnet  # noqa: E402,F401

import pytest

import real_cifar10


def pytest_collection_modifyitems(config, items):
    """Files with the most slow tests first. Under pytest-xdist's `--dist loadfile` (make test)
    each file is one unit of work, handed out in collection order; alphabetical order left a
    heavy file for last, with one process idle while the other finished it. Heaviest first
    (longest-processing-time first) keeps both busy. The sort is stable: within a file, and
    among files of equal weight, the order stays."""
    slow = collections.Counter(item.path for item in items if item.get_closest_marker("slow"))
    items.sort(key=lambda item: -slow[item.path])


@pytest.fixture(scope="session")
def real_cifar10_copies():
    """The real CIFAR-10 copies found (tests/real_cifar10.py) and where they were looked for.

    Session-scoped, so it runs before a test's function-scoped fixtures: `no_env` empties
    $CIFAR10_DIR and HOME for the test itself, not for finding its data."""
    return real_cifar10.candidates()


@pytest.fixture
def real_data(real_cifar10_copies):
    """A real CIFAR-10 (folder or archive), as `train` finds it ($CIFAR10_DIR, else the Keras
    cache) or in shared/data beside the repository; the test is skipped when there is none."""
    copies, looked = real_cifar10_copies
    if not copies:
        pytest.skip(real_cifar10.skip_reason(copies, looked, project=False))
    return copies[0]


@pytest.fixture
def project_data(real_cifar10_copies):
    """The project's JPEG-reconstructed CIFAR-10 among the copies found, checked by its SHA-256:
    for tests that assert errors measured on it. Skipped, naming what it needs, without it."""
    copies, looked = real_cifar10_copies
    path = real_cifar10.project_copy(copies)
    if path is None:
        pytest.skip(real_cifar10.skip_reason(copies, looked, project=True))
    return path


@pytest.fixture
def tiny_config():
    """A v1 depth-8 net on a small synthetic set: about 4 iterations per epoch, with a 10%
    validation split (so best.keras and the best-by-validation metrics exist)."""
    from cifar_resnet.spec import config as config_lib
    return config_lib.resolve(overrides=dict(
        dataset="synthetic", depth=8, epochs=2, batch_size=64, synthetic_train=256,
        synthetic_test=128, val_fraction=0.1))


# A tiny plain vs residual sweep on synthetic data, shared by the report and notebook tests.
EXPERIMENT = '''"""A tiny plain vs residual sweep on synthetic data, for the report tests."""
RECIPE = dict(dataset="synthetic", epochs=1, batch_size=64, synthetic_train=256,
              synthetic_test=128)
NETS = {"plain8": dict(depth=8, plain=True), "resnet8": dict(depth=8),
        "resnet14": dict(depth=14)}
PAPER = {"resnet8": dict(error=10.0, source="made up for the test")}
PANELS = {"plain": ["plain8"], "resnet": ["resnet8"]}
'''


def _make_tiny_sweep(base: pathlib.Path) -> pathlib.Path:
    """Writes base/experiments/figtest.py and trains base/runs/figtest; returns the latter.

    plain8 and resnet8 seed0 are complete; plain8 seed1 is started (config.json only);
    resnet14 is never run (means over seeds are checked on hand-made metrics below).
    Idempotent: finished runs return at once, so test modules share one sweep under pytest's
    base temporary folder.
    """
    (base / "experiments").mkdir(parents=True, exist_ok=True)
    (base / "experiments" / "figtest.py").write_text(EXPERIMENT)
    from cifar_resnet.run import train
    from cifar_resnet.spec import config as config_lib, experiments

    experiment = experiments.load_experiment(base / "experiments" / "figtest.py")
    runs = base / "runs" / "figtest"
    for net in ("plain8", "resnet8"):
        train.run_experiment(experiments.run_config(experiment, net, 0), runs / net / "seed0",
                             verbose=0)
    (runs / "plain8" / "seed1").mkdir(exist_ok=True)
    config_lib.save(experiments.run_config(experiment, "plain8", 1),
                    runs / "plain8" / "seed1" / "config.json")
    return runs


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """The tiny sweep (trained once under pytest's base temporary folder, then reused), with its
    experiment file found by name (`figtest`) for the module's tests."""
    base = tmp_path_factory.getbasetemp() / "tiny_sweep"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CIFAR_RESNET_EXPERIMENTS", str(base / "experiments"))
        yield _make_tiny_sweep(base)


@pytest.fixture
def no_env(monkeypatch, tmp_path):
    """Points every default data location ($CIFAR10_DIR, $CIFAR100_DIR, the Keras cache) at
    empty temporary places."""
    for name in ("CIFAR10_DIR", "CIFAR100_DIR", "KERAS_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path
