"""The one preset table: each preset's model side (constructor options) and recipe side (config
fields). No TensorFlow, no Keras.

"paper" follows He et al. 2015 (sec. 4.2) and 2016, and where they leave a detail open,
Facebook's Torch code of 2016 (facebook/fb.resnet.torch models/resnet.lua and
models/preresnet.lua; later than He 2015, whose own code is not public; He 2016's released CIFAR
code builds on it): initialisation, BN momentum/epsilon, weight decay on every parameter,
symmetric padding of strided convolutions, and stride on the 3x3 convolution of bottleneck
units. Its
recipe is the `config.Config` defaults, so its recipe side is empty.

"keras-example" reproduces the old keras-team/keras ``examples/cifar10_resnet.py``: its nets
exactly, and its recipe (Adam 1e-3, batch 32, 200 epochs, lr divided at epochs 81/121/161/181 by
its ``epoch > 80`` ..., ReduceLROnPlateau with factor sqrt(0.1), patience 5, min_lr 0.5e-6,
whose cuts its LearningRateScheduler undoes at every epoch start: `plateau_survives_schedule`
False), and its ImageDataGenerator shifts and flips (`augmentation` "shift_flip").
Where we differ: the example trains on all 50k and selects its best model on the test set; we
hold out 5k (val_fraction 0.1, which the preset sets: the default is now all 50k) and select on
them. Its L2(1e-4) is weight decay 2e-4 in the paper's terms.
"""

from __future__ import annotations

from typing import Any

from cifar_resnet.spec.choices import check_choice

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "paper": {
        "model": {
            "use_bias": False,
            "kernel_initializer": "torch_conv",   # blocks.INITIALIZERS
            "dense_initializer": "torch_linear",
            # Torch adds wd * w to the gradient before SGD momentum; L2(wd / 2) gives the same
            # gradient (Keras SGD's weight_decay is decoupled).
            "l2": 5e-5,
            "regularize_all": True,  # Torch decays BN and dense biases too.
            "bn_momentum": 0.9,  # Torch BN momentum 0.1.
            "bn_epsilon": 1e-5,
            "torch_padding": True,
            "shortcut": "A",  # v1 default: He 2015 sec. 4.2 uses option A on CIFAR.
            "projection_bn": True,  # resnet.lua: 1x1 conv + BN in v1 projections.
            "v2_layout": "paper",
        },
        "recipe": {},
    },
    "keras-example": {
        "model": {
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
        "recipe": dict(
            optimizer="adam", lr=1e-3, batch_size=32, epochs=200, iterations=None,
            val_fraction=0.1,
            lr_milestones=(0.405, 0.605, 0.805, 0.905), lr_factors=(1e-1, 1e-2, 1e-3, 0.5e-3),
            weight_decay=2e-4, warmup_iterations=0, plateau_patience=5,
            plateau_survives_schedule=False, augmentation="shift_flip",
        ),
    },
}

DEFAULT = "paper"


def model_options(preset: str = DEFAULT, overrides: dict[str, Any] | None = None,
                  error: type = ValueError) -> dict[str, Any]:
    """The model side of `preset` with `overrides` (keys must be model options) applied.

    Raises:
        error: An unknown preset or option, naming the valid ones.
    """
    check_choice("preset", preset, PRESETS, error)
    options = PRESETS[preset]["model"]
    unknown = sorted(set(overrides or {}) - set(options))
    if unknown:
        raise error(f"unknown option(s) {unknown}; valid: {', '.join(options)}")
    return {**options, **(overrides or {})}


def recipe(preset: str = DEFAULT, error: type = ValueError) -> dict[str, Any]:
    """The config fields `preset` sets (a copy)."""
    check_choice("preset", preset, PRESETS, error)
    return dict(PRESETS[preset]["recipe"])
