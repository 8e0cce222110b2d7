"""Faithful Keras 3 reproduction of the CIFAR-10 ResNet experiments.

He et al. 2015, "Deep Residual Learning for Image Recognition", section 4.2 (plain vs residual
nets, Table 6, Figures 6 and 7), and He et al. 2016, "Identity Mappings in Deep Residual
Networks" (pre-activation ResNet v2).
"""

from cifar_resnet.config import Config
from cifar_resnet.models import build_model, resnet_imagenet, resnet_layer, resnet_v1, resnet_v2
from cifar_resnet.train import run_experiment

__all__ = ["Config", "build_model", "resnet_imagenet", "resnet_layer", "resnet_v1", "resnet_v2",
           "run_experiment"]
