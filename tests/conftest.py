import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Before any test module imports TensorFlow: tests run with oneDNN set as users get it
# (TF_ENABLE_ONEDNN_OPTS=1 unless set; cifar_resnet/cpu.py).
import cifar_resnet  # noqa: E402,F401

import pytest

REAL_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar-10-python.tar.gz"


@pytest.fixture
def real_data():
    """Path of the real CIFAR-10 archive; the test is skipped when it is absent."""
    if not REAL_DATA.exists():
        pytest.skip(f"real CIFAR-10 not found at {REAL_DATA}")
    return REAL_DATA


@pytest.fixture
def tiny_config():
    """A v1 depth-8 net on a small synthetic set: about 4 iterations per epoch."""
    from cifar_resnet import config as config_lib
    return config_lib.resolve(overrides=dict(
        dataset="synthetic", depth=8, epochs=2, batch_size=64, synthetic_train=256,
        synthetic_test=128))
