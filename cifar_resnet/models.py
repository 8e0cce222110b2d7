"""ResNet constructors for the CIFAR-10 experiments of He et al. (Keras 3).

References:
  [1] K. He, X. Zhang, S. Ren, J. Sun. "Deep Residual Learning for Image
      Recognition", CVPR 2016 (arXiv:1512.03385). CIFAR-10 nets: sec. 4.2;
      shortcut options A/B/C: sec. 3.3 and 4.1; bottleneck units: sec. 4.1,
      Fig. 5; ImageNet nets: Table 1.
  [2] K. He, X. Zhang, S. Ren, J. Sun. "Identity Mappings in Deep Residual
      Networks", ECCV 2016 (arXiv:1603.05027). Full pre-activation unit:
      sec. 4, Fig. 4(e); ResNet-164/1001 on CIFAR: sec. 4-5.

The "paper" preset follows the Torch code the papers were trained with
(facebook/fb.resnet.torch models/resnet.lua and models/preresnet.lua) wherever
the papers leave a detail open: initialisation, BN momentum/epsilon, weight
decay on every parameter, symmetric padding of strided convolutions, and
stride on the 3x3 convolution of bottleneck units. The "keras-example" preset
reproduces the old keras-team/keras ``examples/cifar10_resnet.py`` exactly.

Layer names are deterministic: ``stem_conv``, ``stem_bn``, ``stem_relu``,
``stage{s}_block{b}_{conv,bn,relu}{i}`` for the i-th layer of a residual
branch, ``..._pad{i}`` for explicit padding, ``..._shortcut`` (option A) or
``..._shortcut_conv``/``..._shortcut_bn`` (projections), ``..._add``,
``..._out`` (v1 post-addition ReLU), ``final_bn``/``final_relu`` (v2),
``avg_pool``, ``classifier``, ``predictions``.
"""

import functools
import sys

import keras
from keras import layers, ops

from cifar_resnet import variants

# Initialisers referred to by name in presets; factories so that every layer
# gets its own instance.
INITIALIZERS = {
    # fb.resnet.torch ConvInit: normal(0, sqrt(2 / (k * k * out_channels))).
    "torch_conv": functools.partial(
        keras.initializers.VarianceScaling,
        scale=2.0, mode="fan_out", distribution="untruncated_normal"),
    # Torch nn.Linear default: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    "torch_linear": functools.partial(
        keras.initializers.VarianceScaling,
        scale=1.0 / 3.0, mode="fan_in", distribution="uniform"),
}

PRESETS = {
    "paper": {
        "use_bias": False,
        "kernel_initializer": "torch_conv",
        "dense_initializer": "torch_linear",
        # Torch adds wd * w to the gradient before SGD momentum; L2(wd / 2)
        # gives the same gradient (Keras SGD's weight_decay is decoupled).
        "l2": 5e-5,
        "regularize_all": True,  # Torch decays BN and dense biases too.
        "bn_momentum": 0.9,  # Torch BN momentum 0.1.
        "bn_epsilon": 1e-5,
        "torch_padding": True,
        "shortcut": "A",  # v1 default: [1] sec. 4.2 uses option A on CIFAR.
        "projection_bn": True,  # resnet.lua: 1x1 conv + BN in v1 projections.
        "v2_layout": "paper",
    },
    "keras-example": {
        "use_bias": True,
        "kernel_initializer": "he_normal",
        "dense_initializer": "he_normal",
        "l2": 1e-4,
        "regularize_all": False,  # The example regularises conv kernels only.
        "bn_momentum": 0.99,
        "bn_epsilon": 1e-3,
        "torch_padding": False,
        "shortcut": "B",
        "projection_bn": False,
        "v2_layout": "keras-example",
    },
}

SHORTCUTS = {
    "A": "identity; where the shape changes, subsample and zero-pad channels",
    "B": "identity; 1x1 convolution projection where the shape changes",
    "C": "1x1 convolution projection on every unit",
}

BLOCKS = {
    # Kernel sizes of the residual branch and output-width multiplier.
    "basic": {"kernels": (3, 3), "expansion": 1},
    "bottleneck": {"kernels": (1, 3, 1), "expansion": 4},
}

# [1] Table 1: block type and units per stage.
IMAGENET_DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}

DEFAULT_BLOCKS = {1: "basic", 2: "bottleneck"}

# v2 shortcut default per block: [2] uses projections for its bottleneck
# nets; basic pre-activation nets (ResNet-110) keep [1]'s option A.
V2_DEFAULT_SHORTCUTS = {"basic": "A", "bottleneck": "B"}


@keras.saving.register_keras_serializable(package="cifar_resnet")
class ZeroPadShortcut(layers.Layer):
    """Parameter-free option-A shortcut of [1] as in fb.resnet.torch.

    Subsamples with ``x[:, ::strides, ::strides]`` and appends zero channels
    after the existing ones up to ``filters``.

    Args:
        filters: Number of output channels (>= input channels).
        strides: Spatial subsampling factor.
        **kwargs: Standard layer arguments (name, dtype, ...).
    """

    def __init__(self, filters, strides=1, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.strides = strides

    def call(self, inputs):
        x = inputs
        if self.strides > 1:
            # Equal to x[:, ::s, ::s, :]; a 1x1 pooling window runs as one oneDNN kernel each
            # way, where TensorFlow's StridedSlice gradient costs ~8% of a ResNet-20 step.
            x = ops.average_pool(x, 1, self.strides, padding="valid")
        extra = self.filters - x.shape[-1]
        return ops.pad(x, [[0, 0], [0, 0], [0, 0], [0, extra]])

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        size = lambda d: None if d is None else -(-d // self.strides)
        return (batch, size(height), size(width), self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "strides": self.strides}


@keras.saving.register_keras_serializable(package="cifar_resnet")
class BatchNormalization(layers.BatchNormalization):
    """`keras.layers.BatchNormalization` that trains with one fused kernel under TensorFlow.

    Keras 3 computes training-mode BN from separate moments and elementwise ops, a dozen passes
    over the activations forward and backward. TensorFlow's FusedBatchNormV3 (oneDNN on CPU,
    cuDNN on GPU) does it in one pass each way, as tf.keras 2 and Torch did: 1.26x (fp32) and
    1.63x (bf16) the training throughput of ResNet-20 on CPU (docs/benchmarks.md). Same
    weights, same outputs, same moving statistics as the Keras layer (tests/test_models.py);
    other backends, inference, masks, renorm and synchronized BN run the Keras code.
    """

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable and mask is None and self._fusable(inputs)):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf  # only reached under the TensorFlow backend

        y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, ops.cast(self.gamma, "float32"), ops.cast(self.beta, "float32"),
            epsilon=self.epsilon, is_training=True)[:3]
        # The op returns the unbiased batch variance; Keras averages the biased one.
        n = ops.cast(ops.size(inputs) // inputs.shape[-1], "float32")
        variance = variance * (n - 1.0) / n
        m = self.momentum
        self.moving_mean.assign(self.moving_mean * m + mean * (1.0 - m))
        self.moving_variance.assign(self.moving_variance * m + variance * (1.0 - m))
        return ops.cast(y, self.compute_dtype)

    def _fusable(self, inputs):
        return (keras.backend.backend() == "tensorflow" and len(inputs.shape) == 4
                and self.axis in (-1, 3) and self.scale and self.center
                and not (self.renorm or self.synchronized)
                and keras.backend.standardize_dtype(inputs.dtype)
                in ("float32", "bfloat16", "float16"))


def _initializer(identifier):
    if isinstance(identifier, str) and identifier in INITIALIZERS:
        return INITIALIZERS[identifier]()
    return keras.initializers.get(identifier)


def _regularizer(l2):
    return keras.regularizers.L2(l2) if l2 else None


def _bn_act(x, activation, batch_normalization, *, momentum, epsilon,
            regularizer, name, suffix):
    named = lambda kind: None if name is None else f"{name}_{kind}{suffix}"
    if batch_normalization:
        x = BatchNormalization(
            momentum=momentum, epsilon=epsilon, gamma_regularizer=regularizer,
            beta_regularizer=regularizer, name=named("bn"))(x)
    if activation is not None:
        kind = activation if isinstance(activation, str) else "act"
        x = layers.Activation(activation, name=named(kind))(x)
    return x


def resnet_layer(inputs, num_filters=16, kernel_size=3, strides=1,
                 activation="relu", batch_normalization=True, conv_first=True,
                 *, use_bias=False, l2=5e-5, bn_momentum=0.9, bn_epsilon=1e-5,
                 kernel_initializer="torch_conv", regularize_all=True,
                 torch_padding=True, name=None, suffix=""):
    """Conv-BN-activation (or BN-activation-conv) stack.

    The building block of the Keras CIFAR-10 ResNet example, with the
    paper-faithful defaults of the "paper" preset.

    Args:
        inputs: Input tensor (NHWC).
        num_filters: Output channels of the convolution.
        kernel_size: Square kernel size.
        strides: Convolution stride.
        activation: Activation name, or None for no activation.
        batch_normalization: Whether to include BatchNormalization.
        conv_first: True for conv-BN-act ([1]), False for BN-act-conv ([2]).
        use_bias: Whether the convolution has a bias.
        l2: L2 coefficient (loss ``l2 * sum(w**2)``, so gradient
            ``2 * l2 * w``); 0 disables regularisation.
        bn_momentum: Keras BN momentum (1 - Torch momentum).
        bn_epsilon: BN epsilon.
        kernel_initializer: Key of ``INITIALIZERS`` or any Keras initializer
            identifier.
        regularize_all: Also regularise the conv bias and BN gamma/beta.
        torch_padding: Pad strided convolutions symmetrically like Torch.
        name: Layer-name prefix; layers are named ``{name}_conv{suffix}``,
            ``{name}_bn{suffix}``, ``{name}_{activation}{suffix}``.
        suffix: Appended to every layer name (e.g. the index in a unit).

    Returns:
        Output tensor.
    """
    named = lambda kind: None if name is None else f"{name}_{kind}{suffix}"
    reg = _regularizer(l2)
    extra_reg = reg if regularize_all else None

    def conv(x):
        padding = "same"
        if torch_padding and strides > 1:
            # TF "same" pads (0, 1) at stride 2, so the branch would sample
            # pixels 1, 3, ... while the option-A shortcut samples 0, 2, ...;
            # Torch pads k // 2 on every side.
            if kernel_size > 1:
                x = layers.ZeroPadding2D(kernel_size // 2, name=named("pad"))(x)
            padding = "valid"
        return layers.Conv2D(
            num_filters, kernel_size, strides=strides, padding=padding,
            use_bias=use_bias,
            kernel_initializer=_initializer(kernel_initializer),
            kernel_regularizer=reg,
            bias_regularizer=extra_reg if use_bias else None,
            name=named("conv"))(x)

    bn_act = functools.partial(
        _bn_act, activation=activation,
        batch_normalization=batch_normalization, momentum=bn_momentum,
        epsilon=bn_epsilon, regularizer=extra_reg, name=name, suffix=suffix)
    return bn_act(conv(inputs)) if conv_first else conv(bn_act(inputs))


def _check(what, value, valid):
    if isinstance(value, bool) or value not in valid:
        raise ValueError(f"{what} {value!r} is not valid; valid: "
                         f"{', '.join(map(repr, valid))}")


def _config(preset, overrides):
    _check("preset", preset, PRESETS)
    unknown = sorted(set(overrides) - set(PRESETS[preset]))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown}; valid: "
                         f"{', '.join(PRESETS[preset])}")
    return {**PRESETS[preset], **overrides}


def _blocks_per_stage(depth, block):
    """Returns n for a 3-stage CIFAR net of `depth` = 3 * len(kernels) * n + 2."""
    per = 3 * len(BLOCKS[block]["kernels"])
    if not isinstance(depth, int) or depth < per + 2 or (depth - 2) % per:
        valid = ", ".join(str(per * n + 2) for n in range(1, 6))
        raise ValueError(f"depth {depth!r} is not {per}n+2 for "
                         f"block={block!r}; valid: {valid}, ...")
    return (depth - 2) // per


def _layer_kwargs(cfg):
    keys = ("use_bias", "l2", "bn_momentum", "bn_epsilon",
            "kernel_initializer", "regularize_all", "torch_padding")
    return {k: cfg[k] for k in keys}


def _stack(x, widths, counts, unit):
    # Every stage after the first halves the map in its first unit.
    for s, (width, count) in enumerate(zip(widths, counts), start=1):
        for b in range(1, count + 1):
            x = unit(x, width, 2 if s > 1 and b == 1 else 1, first=b == 1,
                     name=f"stage{s}_block{b}")
    return x


def _shortcut(x, filters, strides, kind, batch_normalization, cfg, name):
    if kind != "C" and strides == 1 and x.shape[-1] == filters:
        return x
    if kind == "A":
        return ZeroPadShortcut(filters, strides, name=f"{name}_shortcut")(x)
    return resnet_layer(x, filters, 1, strides, activation=None,
                        batch_normalization=batch_normalization,
                        name=f"{name}_shortcut", **_layer_kwargs(cfg))


def _classifier(x, num_classes, cfg):
    reg = _regularizer(cfg["l2"]) if cfg["regularize_all"] else None
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dense(
        num_classes, kernel_initializer=_initializer(cfg["dense_initializer"]),
        bias_initializer="zeros", kernel_regularizer=reg, bias_regularizer=reg,
        name="classifier")(x)
    # float32 probabilities even under a mixed-precision policy.
    return layers.Activation("softmax", dtype="float32", name="predictions")(x)


def _v1_unit(x, filters, strides, *, first, block, shortcut, plain, cfg, name,
             unit="original", variant=None):
    """Post-activation unit of [1] (conv-BN-ReLU ... conv-BN, add, ReLU).

    ``unit`` moves BN/ReLU around the addition ([2] Fig. 4(a)-(d), ``variants.UNITS``);
    ``variant`` (a dict of ``variants.combine`` arguments, None for identity) changes how the
    paths are added ([2] Fig. 2).
    """
    del first  # v1 units do not depend on their position in the stage.
    spec = variants.UNITS[unit]
    kernels = BLOCKS[block]["kernels"]
    out_filters = filters * BLOCKS[block]["expansion"]
    y = x
    if spec["pre_relu"]:
        y = layers.Activation("relu", name=f"{name}_preact_relu")(y)
    for i, k in enumerate(kernels):
        last = i == len(kernels) - 1
        # Stride on the (first) 3x3 conv, as fb.resnet.torch.
        y = resnet_layer(y, out_filters if last else filters, k,
                         strides if i == kernels.index(3) else 1,
                         activation="relu" if not last or spec["last_relu"] else None,
                         batch_normalization=not last or spec["last_bn"], name=name,
                         suffix=str(i + 1), **_layer_kwargs(cfg))
    if not plain:
        kind = "C" if variant and variant["variant"] == "conv1x1" else shortcut
        s = _shortcut(x, out_filters, strides, kind, cfg["projection_bn"],
                      cfg, name)
        if variant is None:
            y = layers.Add(name=f"{name}_add")([s, y])
        else:
            reg = _regularizer(cfg["l2"])
            y = variants.combine(
                x, s, y, filters=out_filters, strides=strides, name=name,
                kernel_initializer=_initializer(cfg["kernel_initializer"]),
                regularizer=reg, bias_regularizer=reg if cfg["regularize_all"] else None,
                **variant)
        if spec["after_add"] is None:
            return y
        if spec["after_add"] == "bn_relu":  # [2] Fig. 4(b): "..._bn_add", then "..._out".
            y = _bn_act(y, None, True, momentum=cfg["bn_momentum"],
                        epsilon=cfg["bn_epsilon"],
                        regularizer=(_regularizer(cfg["l2"])
                                     if cfg["regularize_all"] else None),
                        name=name, suffix="_add")
    return layers.Activation("relu", name=f"{name}_out")(y)


def _v2_unit(x, filters, strides, *, first, block, shortcut, plain, cfg, name):
    """Full pre-activation unit of [2] Fig. 4(e): (BN-ReLU-conv) x k, add."""
    kernels = BLOCKS[block]["kernels"]
    out_filters = filters * BLOCKS[block]["expansion"]
    kw = _layer_kwargs(cfg)
    preact = _bn_act(x, "relu", True, momentum=cfg["bn_momentum"],
                     epsilon=cfg["bn_epsilon"],
                     regularizer=(_regularizer(cfg["l2"])
                                  if cfg["regularize_all"] else None),
                     name=name, suffix="1")
    y = preact
    for i, k in enumerate(kernels):
        y = resnet_layer(y, out_filters if i == len(kernels) - 1 else filters,
                         k, strides if i == kernels.index(3) else 1,
                         batch_normalization=i > 0,
                         activation="relu" if i > 0 else None,
                         conv_first=False, name=name, suffix=str(i + 1), **kw)
    if plain:
        return y
    # preresnet.lua "both_preact": a stage's first unit feeds the
    # pre-activated input to both branches (so the projection sees BN-ReLU).
    s = _shortcut(preact if first else x, out_filters, strides, shortcut,
                  False, cfg, name)
    return layers.Add(name=f"{name}_add")([s, y])


def _v2_paper_body(inputs, n, block, shortcut, plain, cfg):
    kw = _layer_kwargs(cfg)
    # The stem is a bare conv; the first unit's BN-ReLU normalises it.
    x = resnet_layer(inputs, 16, activation=None, batch_normalization=False,
                     name="stem", **kw)
    unit = functools.partial(_v2_unit, block=block, shortcut=shortcut,
                             plain=plain, cfg=cfg)
    return _stack(x, (16, 32, 64), (n, n, n), unit)


def _v2_keras_example_body(inputs, n, block, shortcut, plain, cfg):
    """The example's "wider" v2: bottleneck widths 16/64/128, stride on 1x1."""
    kw = _layer_kwargs(cfg)
    x = resnet_layer(inputs, 16, name="stem", **kw)
    filters_in = 16
    for stage in range(3):
        filters_out = filters_in * (4 if stage == 0 else 2)
        for b in range(n):
            name = f"stage{stage + 1}_block{b + 1}"
            strides = 2 if stage > 0 and b == 0 else 1
            # The stem's BN-ReLU already pre-activates the very first unit.
            preact = not (stage == 0 and b == 0)
            y = resnet_layer(x, filters_in, 1, strides,
                             activation="relu" if preact else None,
                             batch_normalization=preact, conv_first=False,
                             name=name, suffix="1", **kw)
            y = resnet_layer(y, filters_in, conv_first=False, name=name,
                             suffix="2", **kw)
            y = resnet_layer(y, filters_out, 1, conv_first=False, name=name,
                             suffix="3", **kw)
            if plain:
                x = y
                continue
            if b == 0:
                x = resnet_layer(x, filters_out, 1, strides, activation=None,
                                 batch_normalization=False,
                                 name=f"{name}_shortcut", **kw)
            x = layers.Add(name=f"{name}_add")([x, y])
        filters_in = filters_out
    return x


V2_LAYOUTS = {"paper": _v2_paper_body,
              "keras-example": _v2_keras_example_body}


def _resolve(version, depth, block, shortcut, cfg):
    """Validates a CIFAR net; returns (shortcut, units per stage)."""
    _check("block", block, BLOCKS)
    if shortcut is None:
        shortcut = (cfg["shortcut"] if version == 1
                    else V2_DEFAULT_SHORTCUTS[block])
    _check("shortcut", shortcut, SHORTCUTS)
    if version == 2:
        _check("v2_layout", cfg["v2_layout"], V2_LAYOUTS)
        if cfg["v2_layout"] == "keras-example" and (block, shortcut) != (
                "bottleneck", "B"):
            raise ValueError(
                f"v2_layout 'keras-example' supports only block='bottleneck' "
                f"and shortcut='B'; got block={block!r}, shortcut={shortcut!r}")
    return shortcut, _blocks_per_stage(depth, block)


def check_architecture(version, depth, *, block=None, shortcut=None,
                       preset="paper", **overrides):
    """Validates CIFAR net arguments without building any layer.

    Args:
        version: 1 or 2.
        depth: Network depth.
        block: "basic" or "bottleneck"; None for the version's default.
        shortcut: "A", "B", "C" or None for the default.
        preset: Key of ``PRESETS``.
        **overrides: Preset options.

    Returns:
        The number of units per stage.

    Raises:
        ValueError: Naming the invalid value and the valid ones.
    """
    _check("version", version, VERSIONS)
    block = DEFAULT_BLOCKS[version] if block is None else block
    return _resolve(version, depth, block, shortcut,
                    _config(preset, overrides))[1]


def _model_name(plain, depth, version, block):
    name = f"{'plain' if plain else 'resnet'}{depth}_v{version}"
    return name if block == DEFAULT_BLOCKS[version] else f"{name}_{block}"


def _functional_model(inputs, outputs, name):
    # Keras maps the functional graph recursively, a few Python frames per
    # layer; ResNet-1202/1001 have thousands of layers and would overflow the
    # default limit of 1000. Python 3.11+ keeps these frames off the C stack.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 100_000))
    try:
        return keras.Model(inputs, outputs, name=name)
    finally:
        sys.setrecursionlimit(limit)


def resnet_v1(input_shape=(32, 32, 3), depth=20, num_classes=10, *,
              shortcut=None, plain=False, block="basic", preset="paper",
              unit="original", shortcut_variant="identity",
              gate_bias_init=-6.0, scale=0.5, residual_scale=None,
              dropout_rate=0.5, **overrides):
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
        preset: Key of ``PRESETS``.
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
        **overrides: Replace individual preset options (e.g. ``l2=0``).

    Returns:
        A ``keras.Model`` mapping images to float32 class probabilities.

    Raises:
        ValueError: On an invalid depth, shortcut, block, preset, option or
            variant.
    """
    variants.check(unit=unit, shortcut_variant=shortcut_variant,
                   gate_bias_init=gate_bias_init, scale=scale,
                   residual_scale=residual_scale, dropout_rate=dropout_rate,
                   plain=plain, shortcut=shortcut)
    if unit == "full_preact":
        return resnet_v2(input_shape, depth, num_classes, shortcut=shortcut,
                         plain=plain, block=block, preset=preset, **overrides)
    cfg = _config(preset, overrides)
    shortcut, n = _resolve(1, depth, block, shortcut, cfg)
    variant = None if shortcut_variant == "identity" else dict(
        variant=shortcut_variant, gate_bias_init=gate_bias_init, scale=scale,
        residual_scale=residual_scale, dropout_rate=dropout_rate)

    inputs = keras.Input(input_shape, name="images")
    x = resnet_layer(inputs, 16, name="stem", **_layer_kwargs(cfg))
    unit_fn = functools.partial(_v1_unit, block=block, shortcut=shortcut,
                                plain=plain, cfg=cfg, unit=unit,
                                variant=variant)
    x = _stack(x, (16, 32, 64), (n, n, n), unit_fn)
    if variants.UNITS[unit]["final_relu"]:
        x = layers.Activation("relu", name="final_relu")(x)
    outputs = _classifier(x, num_classes, cfg)
    name = "_".join([_model_name(plain, depth, 1, block)] + [
        v for v in (unit, shortcut_variant) if v not in ("original", "identity")])
    return _functional_model(inputs, outputs, name)


def resnet_v2(input_shape=(32, 32, 3), depth=164, num_classes=10, *,
              shortcut=None, plain=False, block="bottleneck", preset="paper",
              **overrides):
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
        preset: Key of ``PRESETS``.
        **overrides: Replace individual preset options.

    Returns:
        A ``keras.Model`` mapping images to float32 class probabilities.

    Raises:
        ValueError: On an invalid depth, shortcut, block, preset or option.
    """
    cfg = _config(preset, overrides)
    shortcut, n = _resolve(2, depth, block, shortcut, cfg)

    inputs = keras.Input(input_shape, name="images")
    x = V2_LAYOUTS[cfg["v2_layout"]](inputs, n, block, shortcut, plain, cfg)
    # Pre-activation leaves the last unit's sum unnormalised ([2] sec. 4).
    x = _bn_act(x, "relu", True, momentum=cfg["bn_momentum"],
                epsilon=cfg["bn_epsilon"],
                regularizer=(_regularizer(cfg["l2"])
                             if cfg["regularize_all"] else None),
                name="final", suffix="")
    outputs = _classifier(x, num_classes, cfg)
    name = _model_name(plain, depth, 2, block)
    return _functional_model(inputs, outputs, name)


def resnet_imagenet(depth, input_shape=(224, 224, 3), num_classes=1000, *,
                    shortcut="B", preset="paper", **overrides):
    """ImageNet ResNet-18/34/50/101/152 of [1] Table 1 (post-activation).

    7x7/2 conv + 3x3/2 max-pool stem, four stages at widths 64/128/256/512
    (bottleneck outputs 256/.../2048), projection shortcuts where the shape
    changes. Bottleneck units stride on the 3x3 conv (fb.resnet.torch,
    torchvision), not on the first 1x1 as in the original Caffe models.

    Args:
        depth: One of 18, 34, 50, 101, 152.
        input_shape: Input image shape (H, W, C).
        num_classes: Number of output classes.
        shortcut: "A", "B" or "C".
        preset: Key of ``PRESETS``.
        **overrides: Replace individual preset options.

    Returns:
        A ``keras.Model`` mapping images to float32 class probabilities.

    Raises:
        ValueError: On an invalid depth, shortcut, preset or option.
    """
    cfg = _config(preset, overrides)
    _check("depth", depth, IMAGENET_DEPTHS)
    _check("shortcut", shortcut, SHORTCUTS)
    block, counts = IMAGENET_DEPTHS[depth]

    inputs = keras.Input(input_shape, name="images")
    x = resnet_layer(inputs, 64, 7, 2, name="stem", **_layer_kwargs(cfg))
    if cfg["torch_padding"]:
        # Zero padding equals Torch's -inf padding here: inputs are >= 0.
        x = layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
    x = layers.MaxPooling2D(3, 2, padding="valid" if cfg["torch_padding"]
                            else "same", name="stem_pool")(x)
    unit = functools.partial(_v1_unit, block=block, shortcut=shortcut,
                             plain=False, cfg=cfg)
    x = _stack(x, (64, 128, 256, 512), counts, unit)
    outputs = _classifier(x, num_classes, cfg)
    return _functional_model(inputs, outputs, f"resnet{depth}_imagenet")


VERSIONS = {1: resnet_v1, 2: resnet_v2}


def build_model(version, depth, **kwargs):
    """Builds a CIFAR ResNet by version number.

    Args:
        version: 1 for ``resnet_v1`` ([1]), 2 for ``resnet_v2`` ([2]).
        depth: Network depth.
        **kwargs: Passed to the constructor.

    Returns:
        A ``keras.Model``.

    Raises:
        ValueError: On an invalid version (or any constructor argument).
    """
    _check("version", version, VERSIONS)
    return VERSIONS[version](depth=depth, **kwargs)
