"""The architecture choices of the nets as data, and their validation. No TensorFlow, no Keras.

What may be asked for, and what each default is, is defined here once; `config.Config.validate`
and the constructors (`models`, `imagenet`, `variants`) both check through these functions, so a
bad depth is refused with the same line before TensorFlow is imported and before any layer is
built.

References:
  [1] He et al. 2015, "Deep Residual Learning for Image Recognition": CIFAR nets of depth 6n+2,
      sec. 4.2; shortcut options A/B/C, sec. 3.3 and 4.1; bottleneck units (9n+2), sec. 4.1
      and Fig. 5; ImageNet nets, Table 1.
  [2] He et al. 2016, "Identity Mappings in Deep Residual Networks": full pre-activation unit,
      Fig. 4(e); shortcut variants, sec. 3.1, Fig. 2, Table 1; BN/ReLU placements, sec. 4.1,
      Fig. 4, Table 2.
"""

from __future__ import annotations

from typing import Any, Optional

from cifar_resnet.spec import presets
from cifar_resnet.spec.choices import check_choice, check_number

VERSIONS = (1, 2)  # 1: post-activation [1]; 2: full pre-activation [2].

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

DEFAULT_BLOCKS = {1: "basic", 2: "bottleneck"}

# v2 shortcut default per block: [2] uses projections for its bottleneck nets; basic
# pre-activation nets (ResNet-110) keep [1]'s option A. v1 takes its preset's "shortcut".
V2_DEFAULT_SHORTCUTS = {"basic": "A", "bottleneck": "B"}

# Bodies of the v2 net (presets' "v2_layout"): models.py builds "paper", keras_example.py the
# example's own wider layout, which exists only with bottleneck units and projections.
V2_LAYOUTS = ("paper", "keras-example")

# [1] Table 1: block type and units per stage.
IMAGENET_DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}

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

# Each version's own unit: what `unit=None` means.
DEFAULT_UNITS = {1: "original", 2: "full_preact"}

# [2] Fig. 2 / Table 1: y = a(x) * h(x) + b(x) * F(x) with
SHORTCUT_VARIANTS = {
    "identity": "a = 1, b = 1 (the paper's choice)",
    "scaling": "a = scale, b = residual_scale (default 1 - scale: 'frozen gating')",
    "exclusive_gating": "a = 1 - g(x), b = g(x), g = sigmoid(1x1 conv(x) + b_g) (Highway)",
    "shortcut_only_gating": "a = 1 - g(x), b = 1",
    "conv1x1": "h = 1x1 conv + BN on every unit (option C of He 2015), a = b = 1",
    "dropout": "h = dropout(x, dropout_rate), b = 1",
}

# The variant arguments of `models.resnet_v1` and their defaults ([2]: b_g = -6 was best of
# 0..-7 in Table 1; scaling 0.5; dropout 0.5). Defined here only.
VARIANT_DEFAULTS = dict(unit="original", shortcut_variant="identity", gate_bias_init=-6.0,
                        scale=0.5, residual_scale=None, dropout_rate=0.5)


def net_name(version, depth, *, plain=False, block=None, unit=None,
             shortcut_variant="identity") -> str:
    """The one spelling of a net's name: `resnet56_v1`, `plain20_v1`, `resnet110_v2_basic`
    (a block other than the version's default), `resnet110_v1_bn_after_add` (He 2016 variants).

    Keras models (nets/models.py), run directories (spec/config.Config.net_name, which leaves
    the block out: the run directory's name says it separately) and reports use it.
    """
    name = f"{'plain' if plain else 'resnet'}{depth}_v{version}"
    if block is not None and block != DEFAULT_BLOCKS.get(version):
        name += f"_{block}"
    variants = [v for v in (unit, shortcut_variant)
                if v not in (None, DEFAULT_UNITS.get(version), "identity")]
    return "_".join([name, *variants])


def blocks_per_stage(depth, block: str) -> int:
    """Returns n for a 3-stage CIFAR net of `depth` = 3 * len(kernels) * n + 2."""
    per = 3 * len(BLOCKS[block]["kernels"])
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < per + 2 or (
            depth - 2) % per:
        valid = ", ".join(str(per * n + 2) for n in range(1, 6))
        raise ValueError(f"depth {depth!r} is not {per}n+2 for "
                         f"block={block!r}; valid: {valid}, ...")
    return (depth - 2) // per


def resolve_cifar(version, depth, block, shortcut, options) -> tuple[str, int]:
    """Validates a CIFAR net; returns (shortcut, units per stage).

    Args:
        version: 1 or 2.
        depth: Network depth.
        block: "basic" or "bottleneck" (not None).
        shortcut: "A", "B", "C", or None for the default of `version` and `block`.
        options: The model side of a preset (`presets.model_options`).
    """
    check_choice("version", version, VERSIONS)
    check_choice("block", block, BLOCKS)
    if shortcut is None:
        shortcut = options["shortcut"] if version == 1 else V2_DEFAULT_SHORTCUTS[block]
    check_choice("shortcut", shortcut, SHORTCUTS)
    if version == 2:
        check_choice("v2_layout", options["v2_layout"], V2_LAYOUTS)
        if options["v2_layout"] == "keras-example" and (block, shortcut) != ("bottleneck", "B"):
            raise ValueError(
                f"the Keras example's version-2 net (preset 'keras-example') has only "
                f"block='bottleneck' and shortcut='B'; got block={block!r}, shortcut="
                f"{shortcut!r}; use --preset paper for other version-2 nets")
    return shortcut, blocks_per_stage(depth, block)


def check_architecture(version, depth, *, block=None, shortcut=None,
                       preset=presets.DEFAULT, **overrides) -> int:
    """Validates CIFAR net arguments without building any layer.

    Args:
        version: 1 or 2.
        depth: Network depth.
        block: "basic" or "bottleneck"; None for the version's default.
        shortcut: "A", "B", "C" or None for the default.
        preset: Key of ``presets.PRESETS``.
        **overrides: Preset model options.

    Returns:
        The number of units per stage.

    Raises:
        ValueError: Naming the invalid value and the valid ones.
    """
    check_choice("version", version, VERSIONS)
    block = DEFAULT_BLOCKS[version] if block is None else block
    return resolve_cifar(version, depth, block, shortcut,
                         presets.model_options(preset, overrides))[1]


def check_variant(*, unit=VARIANT_DEFAULTS["unit"],
                  shortcut_variant=VARIANT_DEFAULTS["shortcut_variant"],
                  gate_bias_init=VARIANT_DEFAULTS["gate_bias_init"],
                  scale=VARIANT_DEFAULTS["scale"],
                  residual_scale=VARIANT_DEFAULTS["residual_scale"],
                  dropout_rate=VARIANT_DEFAULTS["dropout_rate"], plain=False, shortcut=None):
    """Validates the He 2016 variant arguments before any layer is built.

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
    check_choice("unit", unit, UNITS)
    check_choice("shortcut_variant", shortcut_variant, SHORTCUT_VARIANTS)
    check_number("gate_bias_init", gate_bias_init)
    check_number("scale", scale)
    if residual_scale is not None:
        check_number("residual_scale", residual_scale)
    check_number("dropout_rate", dropout_rate, 0, 1)
    if plain and (unit not in ("original", "full_preact") or shortcut_variant != "identity"):
        raise ValueError(f"plain nets have no shortcut or addition; unit={unit!r} and "
                         f"shortcut_variant={shortcut_variant!r} need plain=False")
    if unit == "full_preact" and shortcut_variant != "identity":
        raise ValueError(f"shortcut_variant {shortcut_variant!r} is implemented for the "
                         "post-activation units of [2] Table 1, not unit='full_preact'")
    if shortcut_variant == "conv1x1" and shortcut not in (None, "C"):
        raise ValueError(f"shortcut_variant 'conv1x1' projects every unit (option 'C'); "
                         f"got shortcut={shortcut!r}")


def check_net(*, version, depth, block: Optional[str] = None, shortcut=None, plain=False,
              preset=presets.DEFAULT, unit=None, **variant: Any) -> None:
    """Validates a whole CIFAR net as a config describes it (`unit=None`: the version's own).

    Args:
        version, depth, block, shortcut, plain, preset: As `check_architecture` and the
            constructors take them.
        unit: A key of ``UNITS``; version 2 allows only its own, "full_preact".
        **variant: The other `check_variant` arguments.

    Raises:
        ValueError: Naming the bad value and the valid ones.
    """
    check_architecture(version, depth, block=block, shortcut=shortcut, preset=preset)
    shortcut_variant = variant.get("shortcut_variant", VARIANT_DEFAULTS["shortcut_variant"])
    if version == 2 and unit not in (None, "full_preact"):
        raise ValueError(f"unit {unit!r} needs version 1; version 2 is the 'full_preact' net")
    if version == 2 and shortcut_variant != "identity":
        raise ValueError(f"shortcut_variant {shortcut_variant!r} needs version 1")
    check_variant(unit=unit or DEFAULT_UNITS[version], plain=plain, shortcut=shortcut, **variant)
