"""Building blocks shared by every net: the conv-BN-activation layer, both units (post-activation
v1, full pre-activation v2), shortcuts, the classifier head, the stage loop, and the two custom
layers they use.

`models` (CIFAR v1/v2 and plain), `keras_example` (that example's own v2 body) and `imagenet`
assemble their nets from these. ``cfg`` below is the model side of a preset
(`architecture.model_options`).

Where the papers leave a detail open, the "paper" preset follows Facebook's Torch code of 2016
(fb.resnet.torch; later than He 2015, whose own code is not public): its initialisers, symmetric
padding of strided convolutions, and stride on the 3x3 convolution of bottleneck units (He et al.
2015, sec. 4.1 and Fig. 5).

The custom layers, `ZeroPadShortcut` and the fused `BatchNormalization`, are registered under the
package name "cifar_resnet" (``cifar_resnet>ZeroPadShortcut``, ``cifar_resnet>BatchNormalization``
in a ``.keras`` file): those names, not a module's path, are what `keras.saving.load_model` looks
up, so checkpoints written when they lived in ``nets/models`` or ``nets/layers`` still load.
Importing this module (or `models`, which imports it) registers them.

References:
  [1] He et al. 2015, "Deep Residual Learning for Image Recognition": the post-activation unit,
      sec. 3.2-3.3 and Fig. 2; option A, "the shortcut still performs identity mapping, with
      extra zero entries padded for increasing dimensions", sec. 3.3; bottleneck units, sec. 4.1
      and Fig. 5.
  [2] He et al. 2016, "Identity Mappings in Deep Residual Networks": the full pre-activation
      unit, sec. 4 and Fig. 4(e).
"""

import functools
import sys

import keras
from keras import layers, ops

from cifar_resnet import private_apis
from cifar_resnet.nets import variants
from cifar_resnet.spec import architecture


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
        y, mean, variance = private_apis.fused_batch_norm(
            inputs, ops.cast(self.gamma, "float32"), ops.cast(self.beta, "float32"),
            self.epsilon)
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


def initializer(identifier):
    if isinstance(identifier, str) and identifier in INITIALIZERS:
        return INITIALIZERS[identifier]()
    return keras.initializers.get(identifier)


def regularizer(l2):
    return keras.regularizers.L2(l2) if l2 else None


def extra_regularizer(cfg):
    """The regulariser of biases and BN parameters: Torch decays them too ("regularize_all")."""
    return regularizer(cfg["l2"]) if cfg["regularize_all"] else None


def bn_act(x, activation, batch_normalization, *, momentum, epsilon,
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


_PAPER = architecture.MODEL_PRESETS["paper"]  # resnet_layer's defaults are the paper preset's


def resnet_layer(inputs, num_filters=16, kernel_size=3, strides=1,
                 activation="relu", batch_normalization=True, conv_first=True,
                 *, use_bias=_PAPER["use_bias"], l2=_PAPER["l2"],
                 bn_momentum=_PAPER["bn_momentum"], bn_epsilon=_PAPER["bn_epsilon"],
                 kernel_initializer=_PAPER["kernel_initializer"],
                 regularize_all=_PAPER["regularize_all"],
                 torch_padding=_PAPER["torch_padding"], name=None, suffix=""):
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
    reg = regularizer(l2)
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
            kernel_initializer=initializer(kernel_initializer),
            kernel_regularizer=reg,
            bias_regularizer=extra_reg if use_bias else None,
            name=named("conv"))(x)

    norm_act = functools.partial(
        bn_act, activation=activation,
        batch_normalization=batch_normalization, momentum=bn_momentum,
        epsilon=bn_epsilon, regularizer=extra_reg, name=name, suffix=suffix)
    return norm_act(conv(inputs)) if conv_first else conv(norm_act(inputs))


def layer_kwargs(cfg):
    keys = ("use_bias", "l2", "bn_momentum", "bn_epsilon",
            "kernel_initializer", "regularize_all", "torch_padding")
    return {k: cfg[k] for k in keys}


def stack(x, widths, counts, unit):
    # Every stage after the first halves the map in its first unit.
    for s, (width, count) in enumerate(zip(widths, counts), start=1):
        for b in range(1, count + 1):
            x = unit(x, width, 2 if s > 1 and b == 1 else 1, first=b == 1,
                     name=f"stage{s}_block{b}")
    return x


def shortcut_path(x, filters, strides, kind, batch_normalization, cfg, name):
    if kind != "C" and strides == 1 and x.shape[-1] == filters:
        return x
    if kind == "A":
        return ZeroPadShortcut(filters, strides, name=f"{name}_shortcut")(x)
    return resnet_layer(x, filters, 1, strides, activation=None,
                        batch_normalization=batch_normalization,
                        name=f"{name}_shortcut", **layer_kwargs(cfg))


def classifier(x, num_classes, cfg):
    reg = extra_regularizer(cfg)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dense(
        num_classes, kernel_initializer=initializer(cfg["dense_initializer"]),
        bias_initializer="zeros", kernel_regularizer=reg, bias_regularizer=reg,
        name="classifier")(x)
    # float32 probabilities even under a mixed-precision policy.
    return layers.Activation("softmax", dtype="float32", name="predictions")(x)


def v1_unit(x, filters, strides, *, first, block, shortcut, plain, cfg, name,
            unit="original", variant=None):
    """Post-activation unit of [1] (conv-BN-ReLU ... conv-BN, add, ReLU).

    ``unit`` moves BN/ReLU around the addition ([2] Fig. 4(a)-(d), ``architecture.UNITS``);
    ``variant`` (a dict of ``variants.combine`` arguments, None for identity) changes how the
    paths are added ([2] Fig. 2).
    """
    del first  # v1 units do not depend on their position in the stage.
    spec = architecture.UNITS[unit]
    kernels = architecture.BLOCKS[block]["kernels"]
    out_filters = filters * architecture.BLOCKS[block]["expansion"]
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
                         suffix=str(i + 1), **layer_kwargs(cfg))
    if not plain:
        kind = "C" if variant and variant["variant"] == "conv1x1" else shortcut
        s = shortcut_path(x, out_filters, strides, kind, cfg["projection_bn"], cfg, name)
        if variant is None:
            y = layers.Add(name=f"{name}_add")([s, y])
        else:
            reg = regularizer(cfg["l2"])
            y = variants.combine(
                x, s, y, filters=out_filters, strides=strides, name=name,
                kernel_initializer=initializer(cfg["kernel_initializer"]),
                regularizer=reg, bias_regularizer=reg if cfg["regularize_all"] else None,
                **variant)
        if spec["after_add"] is None:
            return y
        if spec["after_add"] == "bn_relu":  # [2] Fig. 4(b): "..._bn_add", then "..._out".
            y = bn_act(y, None, True, momentum=cfg["bn_momentum"],
                       epsilon=cfg["bn_epsilon"], regularizer=extra_regularizer(cfg),
                       name=name, suffix="_add")
    return layers.Activation("relu", name=f"{name}_out")(y)


def v2_unit(x, filters, strides, *, first, block, shortcut, plain, cfg, name):
    """Full pre-activation unit of [2] Fig. 4(e): (BN-ReLU-conv) x k, add; beside `v1_unit`, so
    both versions' units are in one place."""
    kernels = architecture.BLOCKS[block]["kernels"]
    out_filters = filters * architecture.BLOCKS[block]["expansion"]
    kw = layer_kwargs(cfg)
    preact = bn_act(x, "relu", True, momentum=cfg["bn_momentum"], epsilon=cfg["bn_epsilon"],
                    regularizer=extra_regularizer(cfg), name=name, suffix="1")
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
    s = shortcut_path(preact if first else x, out_filters, strides, shortcut, False, cfg, name)
    return layers.Add(name=f"{name}_add")([s, y])


def functional_model(inputs, outputs, name):
    # Keras maps the functional graph recursively, a few Python frames per
    # layer; ResNet-1202/1001 have thousands of layers and would overflow the
    # default limit of 1000. Python 3.11+ keeps these frames off the C stack.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 100_000))
    try:
        return keras.Model(inputs, outputs, name=name)
    finally:
        sys.setrecursionlimit(limit)
