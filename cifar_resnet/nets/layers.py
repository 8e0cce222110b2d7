"""Custom Keras layers of the nets: the option-A shortcut and a fused BatchNormalization.

Both are registered under the package name "cifar_resnet" (``cifar_resnet>ZeroPadShortcut``,
``cifar_resnet>BatchNormalization`` in a ``.keras`` file): those names, not this module's path,
are what `keras.saving.load_model` looks up, so checkpoints written when these classes lived in
``cifar_resnet.nets.models`` still load. Importing `cifar_resnet.nets.models` (or this module) registers
them.

References:
  [1] He et al. 2015, sec. 3.3: option A, "the shortcut still performs identity mapping, with
      extra zero entries padded for increasing dimensions".
"""

import keras
from keras import layers, ops

from cifar_resnet import private_apis


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
