"""CIFAR ResNet constructors of He et al. (Keras 3): v1, v2 and their plain counterparts.

References:
  [1] K. He, X. Zhang, S. Ren, J. Sun. "Deep Residual Learning for Image
      Recognition", CVPR 2016 (arXiv:1512.03385). CIFAR-10 nets: sec. 4.2;
      shortcut options A/B/C: sec. 3.3 and 4.1; bottleneck units: sec. 4.1,
      Fig. 5.
  [2] K. He, X. Zhang, S. Ren, J. Sun. "Identity Mappings in Deep Residual
      Networks", ECCV 2016 (arXiv:1603.05027). Full pre-activation unit:
      sec. 4, Fig. 4(e); ResNet-164/1001 on CIFAR: sec. 4-5.

This module owns the constructors only. What may be chosen, its validation and the presets'
model side live in `architecture` (no TensorFlow), the shared building blocks and custom layers
in `blocks`, the Keras example's own v2 body in `keras_example`, the ImageNet nets in
`imagenet`, the shipped weights in `pretrained` (read only when `weights` is given). Building a
net with random weights runs code of four modules of the package only: this one, `blocks`,
`architecture` and `choices` (tests/test_models.py traces it). `resnet_layer` is importable from
here too, as in the Keras example. Importing this module registers the custom layers (through
`blocks`) that `keras.saving.load_model` needs.

Layer names are deterministic: ``stem_conv``, ``stem_bn``, ``stem_relu``,
``stage{s}_block{b}_{conv,bn,relu}{i}`` for the i-th layer of a residual
branch, ``..._pad{i}`` for explicit padding, ``..._shortcut`` (option A) or
``..._shortcut_conv``/``..._shortcut_bn`` (projections), ``..._add``,
``..._out`` (v1 post-addition ReLU), ``final_bn``/``final_relu`` (v2),
``avg_pool``, ``classifier``, ``predictions``.
"""

import functools

import keras
from keras import layers

from cifar_resnet.nets import blocks, keras_example, pretrained
from cifar_resnet.spec import architecture
from cifar_resnet.spec.choices import check_choice
from cifar_resnet.spec.architecture import VARIANT_DEFAULTS
# The Keras example's API in one module: resnet_layer beside resnet_v1 and resnet_v2.
from cifar_resnet.nets.blocks import resnet_layer  # noqa: F401


def _v2_paper_body(inputs, n, block, shortcut, plain, cfg):
    kw = blocks.layer_kwargs(cfg)
    # The stem is a bare conv; the first unit's BN-ReLU normalises it.
    x = blocks.resnet_layer(inputs, 16, activation=None, batch_normalization=False,
                     name="stem", **kw)
    unit = functools.partial(blocks.v2_unit, block=block, shortcut=shortcut,
                             plain=plain, cfg=cfg)
    return blocks.stack(x, (16, 32, 64), (n, n, n), unit)


# The v2 bodies by preset option "v2_layout" (architecture.V2_LAYOUTS).
V2_BODIES = {"paper": _v2_paper_body, "keras-example": keras_example.v2_body}


def resnet_v1(input_shape=(32, 32, 3), depth=20, num_classes=10, *,
              shortcut=None, plain=False, block="basic", preset="paper",
              unit=VARIANT_DEFAULTS["unit"],
              shortcut_variant=VARIANT_DEFAULTS["shortcut_variant"],
              gate_bias_init=VARIANT_DEFAULTS["gate_bias_init"],
              scale=VARIANT_DEFAULTS["scale"],
              residual_scale=VARIANT_DEFAULTS["residual_scale"],
              dropout_rate=VARIANT_DEFAULTS["dropout_rate"], weights=None, **overrides):
    """CIFAR-10 ResNet of [1] sec. 4.2 (post-activation).

    A 3x3 conv stem with 16 filters, three stages of n units at 16/32/64
    filters on 32/16/8 maps, global average pooling and a dense softmax.

    Args:
        input_shape: Input image shape (H, W, C).
        depth: 6n+2 for basic units, 9n+2 for bottleneck units.
        num_classes: Number of output classes.
        shortcut: "A", "B" or "C" ([1] sec. 3.3); None takes the preset's
            ("A" for "paper", "B" for "keras-example").
        plain: If True, build the plain counterpart without shortcuts.
        block: "basic" (two 3x3 convs) or "bottleneck" (1x1-3x3-1x1, 4x
            expansion, outputs 64/128/256).
        preset: Key of ``architecture.MODEL_PRESETS``.
        unit: Placement of BN/ReLU around the addition ([2] Fig. 4, Table 2):
            "original", "bn_after_add", "relu_before_add", "relu_only_preact"
            or "full_preact" (the same net as ``resnet_v2``).
        shortcut_variant: How the paths are added ([2] Fig. 2, Table 1):
            "identity", "scaling", "exclusive_gating",
            "shortcut_only_gating", "conv1x1" or "dropout".
        gate_bias_init: Initial gate bias b_g of the gating variants.
        scale: Shortcut factor of "scaling".
        residual_scale: Residual factor of "scaling"; None for 1 - scale.
        dropout_rate: Drop rate of "dropout".
        weights: None (random initialization), "cifar10" (this project's
            trained weights of the net, where shipped: ``pretrained.CIFAR10``)
            or the path of a ``.weights.h5`` file of the same net.
        **overrides: Replace individual preset options (e.g. ``l2=0``).

    Returns:
        A ``keras.Model`` mapping images to float32 class probabilities.

    Raises:
        ValueError: On an invalid depth, shortcut, block, preset, option or
            variant, or weights that are not shipped or do not fit
            (``pretrained.WeightsError``).
    """
    if weights is not None:
        pretrained.check_weights_arg(weights)
    architecture.check_variant(unit=unit, shortcut_variant=shortcut_variant,
                               gate_bias_init=gate_bias_init, scale=scale,
                               residual_scale=residual_scale, dropout_rate=dropout_rate,
                               plain=plain, shortcut=shortcut)
    if unit == "full_preact":
        return resnet_v2(input_shape, depth, num_classes, shortcut=shortcut,
                         plain=plain, block=block, preset=preset, weights=weights,
                         **overrides)
    cfg = architecture.model_options(preset, overrides)
    shortcut, n = architecture.resolve_cifar(1, depth, block, shortcut, cfg)
    variant = None if shortcut_variant == "identity" else dict(
        variant=shortcut_variant, gate_bias_init=gate_bias_init, scale=scale,
        residual_scale=residual_scale, dropout_rate=dropout_rate)

    inputs = keras.Input(input_shape, name="images")
    x = blocks.resnet_layer(inputs, 16, name="stem", **blocks.layer_kwargs(cfg))
    unit_fn = functools.partial(blocks.v1_unit, block=block, shortcut=shortcut,
                                plain=plain, cfg=cfg, unit=unit,
                                variant=variant)
    x = blocks.stack(x, (16, 32, 64), (n, n, n), unit_fn)
    if architecture.UNITS[unit]["final_relu"]:
        x = layers.Activation("relu", name="final_relu")(x)
    outputs = blocks.classifier(x, num_classes, cfg)
    name = architecture.net_name(1, depth, plain=plain, block=block, unit=unit,
                                 shortcut_variant=shortcut_variant)
    return _with_weights(blocks.functional_model(inputs, outputs, name), weights,
                         shortcut=shortcut, preset=preset, num_classes=num_classes,
                         input_shape=input_shape)


def resnet_v2(input_shape=(32, 32, 3), depth=164, num_classes=10, *,
              shortcut=None, plain=False, block="bottleneck", preset="paper",
              weights=None, **overrides):
    """CIFAR-10 ResNet with full pre-activation units ([2] Fig. 4(e)).

    With the "paper" preset: a bare 3x3 conv stem, three stages of n units at
    widths 16/32/64 (bottleneck outputs 64/128/256), a final BN-ReLU, global
    average pooling and a dense softmax. Projection shortcuts are 1x1 convs
    without BN on the pre-activated input (fb.resnet.torch preresnet.lua).
    With the "keras-example" preset: that example's wider v2 network.

    Args:
        input_shape: Input image shape (H, W, C).
        depth: 9n+2 for bottleneck units (164, 1001), 6n+2 for basic units.
        num_classes: Number of output classes.
        shortcut: "A", "B" or "C"; None means "B" for bottleneck units and
            "A" for basic units.
        plain: If True, build the plain counterpart without shortcuts.
        block: "bottleneck" or "basic".
        preset: Key of ``architecture.MODEL_PRESETS``.
        weights: None, "cifar10" or a ``.weights.h5`` path, as for
            ``resnet_v1``.
        **overrides: Replace individual preset options.

    Returns:
        A ``keras.Model`` mapping images to float32 class probabilities.

    Raises:
        ValueError: On an invalid depth, shortcut, block, preset or option,
            or weights that are not shipped or do not fit.
    """
    if weights is not None:
        pretrained.check_weights_arg(weights)
    cfg = architecture.model_options(preset, overrides)
    shortcut, n = architecture.resolve_cifar(2, depth, block, shortcut, cfg)

    inputs = keras.Input(input_shape, name="images")
    x = V2_BODIES[cfg["v2_layout"]](inputs, n, block, shortcut, plain, cfg)
    # Pre-activation leaves the last unit's sum unnormalised ([2] sec. 4).
    x = blocks.bn_act(x, "relu", True, momentum=cfg["bn_momentum"],
                epsilon=cfg["bn_epsilon"],
                regularizer=blocks.extra_regularizer(cfg),
                name="final", suffix="")
    outputs = blocks.classifier(x, num_classes, cfg)
    name = architecture.net_name(2, depth, plain=plain, block=block)
    return _with_weights(blocks.functional_model(inputs, outputs, name), weights,
                         shortcut=shortcut, preset=preset, num_classes=num_classes,
                         input_shape=input_shape)


def _with_weights(model, weights, **built):
    # A net with random weights never reaches `pretrained` (its checksums, h5py, the tables).
    return model if weights is None else pretrained.load(model, weights, **built)


CONSTRUCTORS = {1: resnet_v1, 2: resnet_v2}  # keyed by architecture.VERSIONS


def build_model(version, depth=None, **kwargs):
    """Builds a CIFAR ResNet by name, as a `NetSpec`, or by version number.

    `build_model("resnet56")`, `build_model("resnet110_v2_basic", weights=...)` or
    `build_model(config.net, num_classes=100)` build the net that name or spec describes
    (timm's `create_model`), with `NetSpec.constructor_kwargs()`; `build_model(2, 164)` the v2
    constructor at that depth.

    Args:
        version: a net's name (`architecture.NetSpec.parse`), a `NetSpec`, or 1 for
            ``resnet_v1`` ([1]), 2 for ``resnet_v2`` ([2]).
        depth: Network depth, with a version number only.
        **kwargs: Passed to the constructor (input_shape, num_classes, weights, preset-option
            overrides such as ``l2``; with a name or spec, they replace its own arguments).

    Returns:
        A ``keras.Model``.

    Raises:
        ValueError: On an invalid name, version (or any constructor argument).
    """
    if isinstance(version, (str, architecture.NetSpec)):
        spec = (architecture.NetSpec.parse(version) if isinstance(version, str) else version)
        if depth is not None:
            raise ValueError(f"build_model({spec.name!r}): the name gives the depth; got "
                             f"depth={depth!r} too")
        return CONSTRUCTORS[spec.version](**{**spec.constructor_kwargs(), **kwargs})
    check_choice("version", version, architecture.VERSIONS)
    if depth is None:
        raise ValueError(f"build_model({version!r}) needs a depth (or give a net's name)")
    return CONSTRUCTORS[version](depth=depth, **kwargs)
