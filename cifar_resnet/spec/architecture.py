"""The architecture choices of the nets as data, and their validation. No TensorFlow, no Keras.

What may be asked for, and what each default is, is defined here once; `config.Config.validate`
and the constructors (`models`, `imagenet`, `variants`) both check through these functions, so a
bad depth is refused with the same line before TensorFlow is imported and before any layer is
built. The model side of the presets (`MODEL_PRESETS`, `model_options`) is here too: building a
net reads this module and no other of `spec/` but `choices` (`presets` holds the recipe side).
`NetSpec` is one net as a value: `Config.net` gives it, `models.build_model` builds it.

Where the papers leave a detail open, the "paper" preset follows Facebook's Torch code of 2016
(facebook/fb.resnet.torch models/resnet.lua and models/preresnet.lua; later than He 2015, whose
own code is not public; He 2016's released CIFAR code builds on it): initialisation, BN
momentum/epsilon, weight decay on every parameter, symmetric padding of strided convolutions, and
stride on the 3x3 convolution of bottleneck units. The "keras-example" preset's options are those
of the old keras-team/keras ``examples/cifar10_resnet.py`` (its L2(1e-4) on conv kernels only).

References:
  [1] He et al. 2015, "Deep Residual Learning for Image Recognition": CIFAR nets of depth 6n+2,
      sec. 4.2; shortcut options A/B/C, sec. 3.3 and 4.1; bottleneck units (9n+2), sec. 4.1
      and Fig. 5; ImageNet nets, Table 1.
  [2] He et al. 2016, "Identity Mappings in Deep Residual Networks": full pre-activation unit,
      Fig. 4(e); shortcut variants, sec. 3.1, Fig. 2, Table 1; BN/ReLU placements, sec. 4.1,
      Fig. 4, Table 2.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Optional

from cifar_resnet.spec import presets
from cifar_resnet.spec.choices import check_choice, check_number

# The model side of each preset of `presets.PRESETS` (same names): options of the constructors,
# each replaceable by a keyword (`models.resnet_v1(..., l2=0)`).
MODEL_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
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

# The parameters each shortcut variant reads (nets/variants.combine); the others do not change
# the net, so `NetSpec` keeps them at their defaults: one net, one value, one name.
VARIANT_PARAMETERS = {
    "scaling": ("scale", "residual_scale"),
    "exclusive_gating": ("gate_bias_init",),
    "shortcut_only_gating": ("gate_bias_init",),
    "dropout": ("dropout_rate",),
}
# How a net's name spells a parameter that differs from its default (`resnet110_v1_
# exclusive_gating_bg0.0`): b_g is [2]'s symbol for the gate's bias.
VARIANT_NAME_PARTS = {"gate_bias_init": "bg", "scale": "scale", "residual_scale": "residual",
                      "dropout_rate": "rate"}


def model_options(preset: str = presets.DEFAULT, overrides: dict[str, Any] | None = None,
                  error: type = ValueError) -> dict[str, Any]:
    """The model side of `preset` with `overrides` (keys must be model options) applied.

    Raises:
        error: An unknown preset or option, naming the valid ones.
    """
    check_choice("preset", preset, MODEL_PRESETS, error)
    options = MODEL_PRESETS[preset]
    unknown = sorted(set(overrides or {}) - set(options))
    if unknown:
        raise error(f"unknown option(s) {unknown}; valid: {', '.join(options)}")
    return {**options, **(overrides or {})}


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
        options: The model side of a preset (`model_options`).
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
        preset: Key of ``MODEL_PRESETS``.
        **overrides: Preset model options.

    Returns:
        The number of units per stage.

    Raises:
        ValueError: Naming the invalid value and the valid ones.
    """
    check_choice("version", version, VERSIONS)
    block = DEFAULT_BLOCKS[version] if block is None else block
    return resolve_cifar(version, depth, block, shortcut, model_options(preset, overrides))[1]


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
    for name, value in (("gate_bias_init", gate_bias_init), ("scale", scale),
                        ("residual_scale", residual_scale)):
        if value is not None and not math.isfinite(value):  # a layer of nan weights
            raise ValueError(f"{name} must be a finite number; got {value!r}")
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


@dataclasses.dataclass(frozen=True)
class NetSpec:
    """One CIFAR net as a value: what it is, validated once, against its own preset.

    Its `name` is the one spelling of that net (`net_name`, then `_optionB` where the shortcut is
    not its default, a part such as `_bg0.0` for each variant parameter off its default
    (`VARIANT_NAME_PARTS`), `_keras-example` for that preset's net); `NetSpec.parse(name)` is its
    inverse, so `models.build_model("resnet110_v2_basic")` builds the net of that name.
    `constructor_kwargs()` is the net as its constructor takes it.

    Attributes:
        version, depth, plain, preset: as the constructors take them.
        block: "basic" or "bottleneck"; None in the arguments means the version's own.
        shortcut: "A", "B" or "C"; None in the arguments means the default of version, block
            and preset; always None for a plain net (it has none).
        unit, shortcut_variant: He 2016's variants (version 1); None and "identity" for the
            version's own net.
        gate_bias_init, scale, residual_scale, dropout_rate: the parameters of the shortcut
            variants ([2] Table 1; `check_variant`), as floats. A parameter that the net's
            variant does not read (`VARIANT_PARAMETERS`) is set to its default, and
            residual_scale to None where it equals 1 - scale (the same net either way).

    Raises:
        ValueError: a value the nets do not have, naming it and the allowed ones.
    """

    version: int = 1
    depth: int = 20
    block: Optional[str] = None
    shortcut: Optional[str] = None
    plain: bool = False
    unit: Optional[str] = None
    shortcut_variant: str = "identity"
    preset: str = presets.DEFAULT
    gate_bias_init: float = VARIANT_DEFAULTS["gate_bias_init"]
    scale: float = VARIANT_DEFAULTS["scale"]
    residual_scale: Optional[float] = VARIANT_DEFAULTS["residual_scale"]
    dropout_rate: float = VARIANT_DEFAULTS["dropout_rate"]

    def __post_init__(self):
        check_choice("version", self.version, VERSIONS)
        block = DEFAULT_BLOCKS[self.version] if self.block is None else self.block
        params = {k: getattr(self, k) for k in VARIANT_NAME_PARTS}
        check_net(version=self.version, depth=self.depth, block=block, shortcut=self.shortcut,
                  plain=self.plain, preset=self.preset, unit=self.unit,
                  shortcut_variant=self.shortcut_variant, **params)
        resolved, _ = resolve_cifar(self.version, self.depth, block, self.shortcut,
                                    model_options(self.preset))
        read = VARIANT_PARAMETERS.get(self.shortcut_variant, ())
        params = {k: VARIANT_DEFAULTS[k] if k not in read or v is None else float(v)
                  for k, v in params.items()}
        if params["residual_scale"] == 1.0 - params["scale"]:
            params["residual_scale"] = None  # what the constructor computes for None
        fields = dict(block=block, shortcut=None if self.plain else resolved,
                      unit=None if self.unit in (None, DEFAULT_UNITS[self.version]) else self.unit,
                      **params)
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    @property
    def default_shortcut(self) -> Optional[str]:
        """The shortcut this net has when none is asked for (None for a plain net)."""
        if self.plain:
            return None
        return resolve_cifar(self.version, self.depth, self.block, None,
                             model_options(self.preset))[0]

    @property
    def name(self) -> str:
        """E.g. `resnet56_v1`, `plain110_v1`, `resnet110_v2_basic`, `resnet20_v1_optionB`,
        `resnet110_v1_exclusive_gating_bg0.0`."""
        name = net_name(self.version, self.depth, plain=self.plain, block=self.block,
                        unit=self.unit, shortcut_variant=self.shortcut_variant)
        if self.shortcut != self.default_shortcut:
            name += f"_option{self.shortcut}"
        for field, part in VARIANT_NAME_PARTS.items():
            if getattr(self, field) != VARIANT_DEFAULTS[field]:
                name += f"_{part}{getattr(self, field)!r}"
        return name + ("" if self.preset == presets.DEFAULT else f"_{self.preset}")

    @classmethod
    def parse(cls, name: str) -> "NetSpec":
        """The net a name spells (`name`'s inverse); the version may be left out (v1).

        Raises:
            ValueError: a name that is not `resnet|plain<depth>[_v<version>][_<part>...]`, a
                part that is none of the blocks, units, shortcut variants, options, variant
                parameters and presets, or a parameter that the net's variant does not read.
        """
        match = re.fullmatch(r"(resnet|plain)(\d+)(?:_v(\d+))?((?:_[\w.+-]+)*)", str(name))
        if not match:
            raise ValueError(f"net name {name!r} is not resnet|plain<depth>[_v<version>]"
                             "[_<part>...], e.g. resnet56, resnet110_v2_basic")
        fields: dict[str, Any] = dict(plain=match[1] == "plain", depth=int(match[2]),
                                      version=int(match[3] or 1))
        parts = {**{b: ("block", b) for b in BLOCKS},
                 **{u: ("unit", u) for u in UNITS},
                 **{v: ("shortcut_variant", v) for v in SHORTCUT_VARIANTS},
                 **{f"option{s}": ("shortcut", s) for s in SHORTCUTS},
                 **{p: ("preset", p) for p in MODEL_PRESETS}}
        numbers = re.compile(f"({'|'.join(VARIANT_NAME_PARTS.values())})"
                             r"([+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)")
        fields_of = {part: field for field, part in VARIANT_NAME_PARTS.items()}
        tokens = match[4].split("_")[1:]
        while tokens:  # the longest known part first: units and variants hold underscores
            for end in range(len(tokens), 0, -1):
                part = "_".join(tokens[:end])
                if part in parts:
                    field, value = parts[part]
                    fields[field] = value
                    tokens = tokens[end:]
                    break
            else:
                number = numbers.fullmatch(tokens[0])
                if not number:
                    known = [*parts, *(f"{p}<number>" for p in VARIANT_NAME_PARTS.values())]
                    raise ValueError(f"net name {name!r}: unknown part {tokens[0]!r}; known: "
                                     f"{', '.join(sorted(known))}")
                fields[fields_of[number[1]]] = float(number[2])
                tokens = tokens[1:]
        spec = cls(**fields)
        unread = [VARIANT_NAME_PARTS[k] for k in fields if k in VARIANT_NAME_PARTS
                  and k not in VARIANT_PARAMETERS.get(spec.shortcut_variant, ())]
        if unread:
            raise ValueError(f"net name {name!r}: shortcut variant {spec.shortcut_variant!r} "
                             f"has no parameter {', '.join(map(repr, unread))}")
        return spec

    def constructor_kwargs(self) -> dict[str, Any]:
        """Everything `models.resnet_v1` (version 1) or `models.resnet_v2` (version 2) needs to
        build this net; input_shape, num_classes, weights and preset-option overrides are the
        caller's."""
        kwargs: dict[str, Any] = dict(depth=self.depth, block=self.block, plain=self.plain,
                                      preset=self.preset)
        # The default shortcut is left to the constructor: "conv1x1" refuses any but None or C.
        if self.shortcut != self.default_shortcut:
            kwargs["shortcut"] = self.shortcut
        if self.version == 1:
            kwargs.update(unit=self.unit or DEFAULT_UNITS[1],
                          shortcut_variant=self.shortcut_variant,
                          **{k: getattr(self, k) for k in VARIANT_NAME_PARTS})
        return kwargs
