"""ImageNet ResNet-18/34/50/101/152 of He et al. 2015 ([1]), Table 1 (post-activation).

Not used by the CIFAR experiments; kept for users who build them (`cifar_resnet.resnet_imagenet`).
They share the units, custom layers and presets of the CIFAR nets (`blocks`,
`architecture.MODEL_PRESETS`).
"""

import functools

import keras
from keras import layers

from cifar_resnet.nets import blocks
from cifar_resnet.spec import architecture
from cifar_resnet.spec.choices import check_choice


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
        preset: Key of ``architecture.MODEL_PRESETS``.
        **overrides: Replace individual preset options.

    Returns:
        A ``keras.Model`` mapping images to float32 class probabilities.

    Raises:
        ValueError: On an invalid depth, shortcut, preset or option.
    """
    cfg = architecture.model_options(preset, overrides)
    check_choice("depth", depth, architecture.IMAGENET_DEPTHS)
    check_choice("shortcut", shortcut, architecture.SHORTCUTS)
    block, counts = architecture.IMAGENET_DEPTHS[depth]

    inputs = keras.Input(input_shape, name="images")
    x = blocks.resnet_layer(inputs, 64, 7, 2, name="stem", **blocks.layer_kwargs(cfg))
    if cfg["torch_padding"]:
        # Zero padding equals Torch's -inf padding here: inputs are >= 0.
        x = layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
    x = layers.MaxPooling2D(3, 2, padding="valid" if cfg["torch_padding"]
                            else "same", name="stem_pool")(x)
    unit = functools.partial(blocks.v1_unit, block=block, shortcut=shortcut,
                             plain=False, cfg=cfg)
    x = blocks.stack(x, (64, 128, 256, 512), counts, unit)
    outputs = blocks.classifier(x, num_classes, cfg)
    return blocks.functional_model(inputs, outputs, f"resnet{depth}_imagenet")
