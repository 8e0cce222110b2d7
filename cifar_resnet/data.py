"""Compatibility: `cifar_resnet.data` was split into `datasets` (numpy: files, safe reading,
synthetic data, splits, statistics; no TensorFlow) and `pipeline` (tf.data, augmentation).
Importing this module imports both, so TensorFlow; new code imports the one it needs.
"""

from cifar_resnet.datasets import *  # noqa: F401,F403
from cifar_resnet.datasets import (  # noqa: F401  (private names some callers use)
    _accept_download, _check_member, _keras_cache, _locate, _read_batch, _read_batches,
    _BatchUnpickler, _SAFE_GLOBALS)
from cifar_resnet.pipeline import *  # noqa: F401,F403
