"""Cross-entropy with label smoothing on integer labels.

Label smoothing (Szegedy et al. 2016, "Rethinking the Inception Architecture for Computer
Vision", section 7) trains against (1 - e) * one-hot + e / classes. It is not in the ResNet
papers; the config's `label_smoothing` offers it as a candidate for the short `fast` recipe
(issue #12). Keras' `SparseCategoricalCrossentropy` has no smoothing and its
`CategoricalCrossentropy` wants one-hot labels, which our pipelines do not make.
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="cifar_resnet")
class SmoothedSparseCrossentropy(keras.losses.Loss):
    """`categorical_crossentropy(one_hot(labels), probabilities, label_smoothing)`.

    Args:
        label_smoothing: e in [0, 1); 0 is the plain sparse cross-entropy.
        num_classes: width of the one-hot labels (the classifier's width).
    """

    def __init__(self, label_smoothing: float, num_classes: int,
                 name: str = "smoothed_sparse_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)
        self.num_classes = int(num_classes)

    def call(self, y_true, y_pred):
        labels = keras.ops.reshape(keras.ops.cast(y_true, "int32"), (-1,))
        return keras.losses.categorical_crossentropy(
            keras.ops.one_hot(labels, self.num_classes), y_pred,
            label_smoothing=self.label_smoothing)

    def get_config(self):
        return dict(super().get_config(), label_smoothing=self.label_smoothing,
                    num_classes=self.num_classes)
