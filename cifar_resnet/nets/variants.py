"""Residual-unit variants of He et al. 2016, "Identity Mappings in Deep Residual Networks".

References:
  [2] K. He, X. Zhang, S. Ren, J. Sun. ECCV 2016 (arXiv:1603.05027).
      Sec. 3.1, Fig. 2 and Table 1: shortcut variants on ResNet-110 (after-addition ReLU kept).
      Sec. 4.1, Fig. 4 and Table 2: placements of BN and ReLU around the addition.

Both families are data, in `architecture` (which has no TensorFlow): ``UNITS`` says where the
activations of a unit go, ``SHORTCUT_VARIANTS`` what multiplies the two paths before the
addition. This module builds them. ``models.resnet_v1`` takes one keyword for
each (``unit=``, ``shortcut_variant=``) and builds the unit from these tables; ``combine`` builds
the shortcut side from Keras built-in layers only, so models save and load without custom code.
"""

import keras
from keras import layers

from cifar_resnet.spec.architecture import VARIANT_DEFAULTS


def combine(x, shortcut, residual, *, variant, filters, strides,
            gate_bias_init=VARIANT_DEFAULTS["gate_bias_init"], scale=VARIANT_DEFAULTS["scale"],
            residual_scale=VARIANT_DEFAULTS["residual_scale"],
            dropout_rate=VARIANT_DEFAULTS["dropout_rate"], kernel_initializer=None,
            regularizer=None, bias_regularizer=None, name):
    """Adds the shortcut and residual paths of one unit, as ``variant`` prescribes.

    Args:
        x: The unit's input (the gate reads it, [2] sec. 3.1).
        shortcut: h(x), already shaped like ``residual``.
        residual: F(x).
        variant: Key of ``SHORTCUT_VARIANTS`` ("conv1x1" is built by the caller as h).
        filters: Channels of ``residual`` (the gate's output width).
        strides: Spatial stride of the unit (the gate subsamples like the shortcut).
        gate_bias_init: Initial b_g of the gate convolution.
        scale: Shortcut factor of "scaling".
        residual_scale: F factor of "scaling"; None for 1 - scale.
        dropout_rate: Rate of "dropout".
        kernel_initializer: Initializer of the gate kernel.
        regularizer: Regularizer of the gate kernel.
        bias_regularizer: Regularizer of the gate bias.
        name: Unit name; new layers are ``{name}_gate``, ``{name}_carry`` (1 - g),
            ``{name}_shortcut_scale``/``_gated``/``_dropout``, ``{name}_residual_scale``/
            ``_gated`` and ``{name}_add``.

    Returns:
        The sum, before any after-addition activation.
    """
    if variant == "scaling":
        shortcut = layers.Rescaling(scale, name=f"{name}_shortcut_scale")(shortcut)
        residual = layers.Rescaling(1.0 - scale if residual_scale is None else residual_scale,
                                    name=f"{name}_residual_scale")(residual)
    elif variant in ("exclusive_gating", "shortcut_only_gating"):
        # [2] sec. 3.1: g(x) = sigmoid(W_g x + b_g), a 1x1 conv; b_g << 0 starts near identity.
        gate = layers.Conv2D(
            filters, 1, strides=strides, padding="same", activation="sigmoid",
            kernel_initializer=kernel_initializer or "he_normal",
            bias_initializer=keras.initializers.Constant(gate_bias_init),
            kernel_regularizer=regularizer, bias_regularizer=bias_regularizer,
            name=f"{name}_gate")(x)
        carry = layers.Rescaling(-1.0, offset=1.0, name=f"{name}_carry")(gate)  # 1 - g
        shortcut = layers.Multiply(name=f"{name}_shortcut_gated")([carry, shortcut])
        if variant == "exclusive_gating":
            residual = layers.Multiply(name=f"{name}_residual_gated")([gate, residual])
    elif variant == "dropout":
        # Keras drops with inverted scaling (kept values x 1/(1 - rate)) in training and is
        # the identity at inference; [2] describes the dropped shortcut as a random scale
        # with expectation 0.5, so it may have used unscaled dropout.
        shortcut = layers.Dropout(dropout_rate, name=f"{name}_shortcut_dropout")(shortcut)
    return layers.Add(name=f"{name}_add")([shortcut, residual])
