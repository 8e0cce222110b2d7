"""The Keras example's published results (keras-team/keras, examples/cifar10_resnet.py).

The example's docstring tables report the test accuracy after 200 epochs of ResNet20/32/44/56/110
v1 (n = 3/5/7/9/18 basic blocks) and ResNet56/110 v2 (n = 6/12 bottleneck blocks, its own
pre-activation layout), trained with its recipe: Adam 1e-3, batch 32, 200 epochs, lr divided at
epochs 81/121/161/181 (0-based `epoch > 80` ...) by its LearningRateScheduler, which sets the
rate at every epoch start and so undoes every cut of its ReduceLROnPlateau, and
ImageDataGenerator shifts (uniform +-3.2 pixels per axis, bilinear, edges repeated) and flips.
The `keras-example` preset reproduces it (its recipe in spec/presets.PRESETS, with
`augmentation="shift_flip"` and `plateau_survives_schedule=False`; its nets' options in
spec/architecture.MODEL_PRESETS). Its accuracies (%) are stored
below as error = 100 - accuracy; they are the best-on-test-set checkpoint (the example trains on
all 50k and selects on the test set; the preset holds out 5k and selects on them), so compare
them with our best-by-validation numbers knowing that difference. They were published in
November 2017, when ImageDataGenerator resampled shifts nearest-neighbour (bilinear from Keras
2.1.4), so they may differ from the preset's for that reason too.
"""

from cifar_resnet.spec import paper

RECIPE = dict(
    preset="keras-example",   # Adam 1e-3, batch 32, 200 epochs, the example's schedule and model
    epochs=200,               # epochs of 45k images at batch 32 (example: 200 of 50k)
)

NETS = {
    "resnet20_v1": dict(version=1, depth=20),    # n = 3
    "resnet32_v1": dict(version=1, depth=32),    # n = 5
    "resnet44_v1": dict(version=1, depth=44),    # n = 7
    "resnet56_v1": dict(version=1, depth=56),    # n = 9
    "resnet110_v1": dict(version=1, depth=110),  # n = 18
    "resnet56_v2": dict(version=2, depth=56),    # n = 6, bottleneck
    "resnet110_v2": dict(version=2, depth=110),  # n = 12, bottleneck
}

PAPER = paper.entries(paper.KERAS_EXAMPLE_TABLE, NETS)  # error = 100 - published accuracy

PANELS = {}
