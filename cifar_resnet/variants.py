"""Residual-unit variants of He et al. 2016, "Identity Mappings in Deep Residual Networks".

References:
  [2] K. He, X. Zhang, S. Ren, J. Sun. ECCV 2016 (arXiv:1603.05027).
      Sec. 3.1, Fig. 2 and Table 1: shortcut variants on ResNet-110 (after-addition ReLU kept).
      Sec. 4.1, Fig. 4 and Table 2: placements of BN and ReLU around the addition.

Both families are data: ``UNITS`` says where the activations of a unit go, ``SHORTCUT_VARIANTS``
what multiplies the two paths before the addition. ``models.resnet_v1`` takes one keyword for
each (``unit=``, ``shortcut_variant=``) and builds the unit from these tables; ``combine`` builds
the shortcut side from Keras built-in layers only, so models save and load without custom code.
"""

import keras
from keras import layers

# [2] Fig. 4. For a unit y = h(x) + F(x), x_next = f(y):
#   pre_relu:        ReLU on the F path only, before its first conv ((d)).
#   last_bn:         BN after the last conv of F ((a), (c), (d); not (b)).
#   last_relu:       ReLU after that BN, before the addition ((c)).
#   after_add:       f: "relu" ((a)), "bn_relu" ((b)) or None (identity; (c), (d)).
#   final_relu:      an extra ReLU after the last addition of the net ([2] appendix, for the
#                    pre-activation units: the after-addition activation moved to the next
#                    unit still has to act once at the end).
# "full_preact" ((e), BN-ReLU before every conv) is the v2 net of models.resnet_v2.
UNITS = {
    "original": dict(pre_relu=False, last_bn=True, last_relu=False, after_add="relu",
                     final_relu=False),
    "bn_after_add": dict(pre_relu=False, last_bn=False, last_relu=False, after_add="bn_relu",
                         final_relu=False),
    "relu_before_add": dict(pre_relu=False, last_bn=True, last_relu=True, after_add=None,
                            final_relu=False),
    "relu_only_preact": dict(pre_relu=True, last_bn=True, last_relu=False, after_add=None,
                             final_relu=True),
    "full_preact": None,
}

# [2] Fig. 2 / Table 1: y = a(x) * h(x) + b(x) * F(x) with
SHORTCUT_VARIANTS = {
    "identity": "a = 1, b = 1 (the paper's choice)",
    "scaling": "a = scale, b = residual_scale (default 1 - scale: 'frozen gating')",
    "exclusive_gating": "a = 1 - g(x), b = g(x), g = sigmoid(1x1 conv(x) + b_g) (Highway)",
    "shortcut_only_gating": "a = 1 - g(x), b = 1",
    "conv1x1": "h = 1x1 conv + BN on every unit (option C of He 2015), a = b = 1",
    "dropout": "h = dropout(x, dropout_rate), b = 1",
}

DEFAULTS = dict(unit="original", shortcut_variant="identity", gate_bias_init=-6.0, scale=0.5,
                residual_scale=None, dropout_rate=0.5)


def _choice(what, value, valid):
    if isinstance(value, bool) or value not in valid:
        raise ValueError(f"{what} {value!r} is not valid; valid: "
                         f"{', '.join(map(repr, valid))}")


def _number(what, value, low=None, high=None):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and low is not None:
        ok = value >= low
    if ok and high is not None:
        ok = value < high
    if not ok:
        bounds = f" in [{low}, {high})" if high is not None else (
            f" >= {low}" if low is not None else "")
        raise ValueError(f"{what} must be a number{bounds}; got {value!r}")


def check(*, unit="original", shortcut_variant="identity", gate_bias_init=-6.0, scale=0.5,
          residual_scale=None, dropout_rate=0.5, plain=False, shortcut=None):
    """Validates variant arguments before any layer is built.

    Args:
        unit: Key of ``UNITS``.
        shortcut_variant: Key of ``SHORTCUT_VARIANTS``.
        gate_bias_init: Initial gate bias b_g ([2] Table 1: 0 to -7; best -6).
        scale: Shortcut factor of "scaling" ([2]: 0.5).
        residual_scale: F factor of "scaling"; None for 1 - scale.
        dropout_rate: Drop rate of "dropout" ([2]: 0.5), in [0, 1).
        plain: Plain nets have no addition, so only the defaults are valid.
        shortcut: The "A"/"B"/"C" option as given (None: default); "conv1x1" is option C on
            every unit, so it only combines with None or "C".

    Raises:
        ValueError: Naming the bad value and the valid ones.
    """
    _choice("unit", unit, UNITS)
    _choice("shortcut_variant", shortcut_variant, SHORTCUT_VARIANTS)
    _number("gate_bias_init", gate_bias_init)
    _number("scale", scale)
    if residual_scale is not None:
        _number("residual_scale", residual_scale)
    _number("dropout_rate", dropout_rate, 0, 1)
    if plain and (unit not in ("original", "full_preact") or shortcut_variant != "identity"):
        raise ValueError(f"plain nets have no shortcut or addition; unit={unit!r} and "
                         f"shortcut_variant={shortcut_variant!r} need plain=False")
    if unit == "full_preact" and shortcut_variant != "identity":
        raise ValueError(f"shortcut_variant {shortcut_variant!r} is implemented for the "
                         "post-activation units of [2] Table 1, not unit='full_preact'")
    if shortcut_variant == "conv1x1" and shortcut not in (None, "C"):
        raise ValueError(f"shortcut_variant 'conv1x1' projects every unit (option 'C'); "
                         f"got shortcut={shortcut!r}")


def combine(x, shortcut, residual, *, variant, filters, strides, gate_bias_init=-6.0,
            scale=0.5, residual_scale=None, dropout_rate=0.5, kernel_initializer=None,
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
