"""The presets' names and their recipe side: the config fields each preset sets. No TensorFlow,
no Keras.

A preset is a net's options and a recipe together. Its model side (initialisers, BN momentum and
epsilon, bias, padding, default shortcut, the v2 body) is `architecture.MODEL_PRESETS`, beside
the other choices of a net, so that building one reads no module but `architecture`; this module
holds the recipe side, which `config.resolve` applies between the defaults and a config file.
Both tables name the same presets (tests/test_config.py).

"paper" follows He et al. 2015 (sec. 4.2) and 2016; its recipe is the `config.Config` defaults,
so its entry is empty.

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

# Preset name -> the config fields it sets.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "keras-example": dict(
        optimizer="adam", lr=1e-3, batch_size=32, epochs=200, iterations=None,
        val_fraction=0.1,
        lr_milestones=(0.405, 0.605, 0.805, 0.905), lr_factors=(1e-1, 1e-2, 1e-3, 0.5e-3),
        weight_decay=2e-4, warmup_iterations=0, plateau_patience=5,
        plateau_survives_schedule=False, augmentation="shift_flip",
    ),
}

DEFAULT = "paper"


def recipe(preset: str = DEFAULT, error: type = ValueError) -> dict[str, Any]:
    """The config fields `preset` sets (a copy).

    Raises:
        error: An unknown preset, naming the valid ones.
    """
    check_choice("preset", preset, PRESETS, error)
    return dict(PRESETS[preset])
