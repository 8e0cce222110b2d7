"""Faithful Keras 3 reproduction of the CIFAR-10 ResNet experiments.

He et al. 2015, "Deep Residual Learning for Image Recognition", section 4.2 (plain vs residual
nets, Table 6, Figures 6 and 7), and He et al. 2016, "Identity Mappings in Deep Residual
Networks" (pre-activation ResNet v2).
"""

import importlib

from cifar_resnet.spec import cpu

# First, before any module of the package imports TensorFlow: TensorFlow reads this once, and
# leaves its oneDNN kernels off by default on CPUs such as AVX2-only ones (cpu.py says why).
cpu.enable_onednn()

# Public API -> defining module. Resolved on first use (PEP 562), so that `python -m cifar_resnet`
# can reject bad flags before the slow TensorFlow import.
_EXPORTS = {
    "Config": "run.config", "build_model": "nets.models", "resnet_imagenet": "nets.imagenet",
    "resnet_layer": "nets.models", "resnet_v1": "nets.models", "resnet_v2": "nets.models",
    "run_experiment": "run.train", "preprocess_input": "nets.pretrained",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'cifar_resnet' has no attribute {name!r}")
    return getattr(importlib.import_module(f"cifar_resnet.{_EXPORTS[name]}"), name)


def __dir__():
    return __all__
