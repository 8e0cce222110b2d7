"""Experiment configuration: one dataclass, presets, load/save and overrides.

Settings are resolved in this order, later winning: the dataclass defaults (the paper's recipe,
He et al. 2015 section 4.2), the chosen preset, a `--config` file (JSON or YAML), then flags.
A run directory's `config.json` is the resolved config, and is itself a valid `--config` file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from typing import Any, Optional

import yaml

from cifar_resnet import cpu, files, models, schedules, variants


# Where training runs (distribute.py): one device, local GPUs, several machines; auto picks.
STRATEGIES = ("auto", "one", "mirrored", "multiworker")


class ConfigError(ValueError):
    """A configuration value is invalid; the message is one line meant for the user."""


@dataclasses.dataclass
class Config:
    """Everything that defines one training run. Defaults are the paper's CIFAR-10 recipe."""

    # Model (He 2015 sec 4.2; He 2016 for version 2).
    version: int = 1               # 1: original post-activation ResNet; 2: pre-activation.
    depth: int = 20                # weighted layers: 6n+2 (basic blocks) or 9n+2 (bottleneck).
    block: Optional[str] = None    # "basic" | "bottleneck"; None: basic for v1, bottleneck for v2.
    plain: bool = False            # True: the paper's plain net, same layers without shortcuts.
    shortcut: Optional[str] = None  # "A" zero-pad identity | "B" projection where the shape
    #                                 changes | "C" projection everywhere. None: the paper's
    #                                 choice, A for basic blocks, B for v2 bottleneck nets.
    preset: str = "paper"          # "paper" | "keras-example" (see PRESETS).
    # He 2016 ablations (cifar_resnet/variants.py), version 1 only.
    unit: Optional[str] = None     # BN/ReLU placement (Table 2): "original" | "bn_after_add" |
    #                                 "relu_before_add" | "relu_only_preact" | "full_preact".
    #                                 None: the version's own (original v1, full_preact v2).
    shortcut_variant: str = "identity"  # Table 1: "identity" | "scaling" | "exclusive_gating" |
    #                                 "shortcut_only_gating" | "conv1x1" | "dropout".
    gate_bias_init: float = -6.0   # initial gate bias b_g of the gating variants (paper: -6).
    shortcut_scale: float = 0.5    # "scaling": the shortcut's factor.
    residual_scale: Optional[float] = None  # "scaling": F's factor; None: 1 - shortcut_scale.
    shortcut_dropout: float = 0.5  # "dropout": the drop rate on the shortcut.

    # Data.
    dataset: str = "cifar10"       # "cifar10" | "synthetic".
    data_dir: Optional[str] = None  # folder or archive; else $CIFAR10_DIR, else ~/.keras/datasets.
    val_fraction: float = 0.1      # training images held out for model selection (paper: 5k of 50k).
    normalization: str = "pixel_mean"  # "pixel_mean" (paper) | "channel_std" | "none".
    augment: bool = True           # pad-4 random crop + horizontal flip (paper).
    synthetic_train: int = 2048    # images, dataset="synthetic" only.
    synthetic_test: int = 512

    # Optimisation.
    optimizer: str = "sgd"         # "sgd" (momentum, paper) | "adam" (keras-example).
    batch_size: int = 128          # images per iteration (paper: 128).
    lr: float = 0.1                # base learning rate.
    momentum: float = 0.9          # SGD momentum.
    weight_decay: float = 1e-4     # paper semantics: gradient += wd * w, through momentum.
    iterations: Optional[int] = 64000  # planned iterations (paper: 64k); ignored if epochs is set.
    epochs: Optional[int] = None   # planned epochs; None: derived from iterations.
    lr_schedule: str = "step"      # "step" (paper: lr_milestones, lr_factors) | "linear"
    #                                 (rise from warmup_lr over warmup_iterations, then linear
    #                                 decay to 0 at the last iteration; schedules.py).
    lr_milestones: tuple = (0.5, 0.75)  # fractions of the planned iterations (paper: 32k, 48k).
    lr_factors: tuple = (0.1, 0.01)     # lr multiplier from each milestone on.
    warmup_iterations: Optional[int] = None  # None: 400 at depth >= 110 (paper), else 0.
    warmup_lr: float = 0.01        # paper: 0.01 until training error < 80%.
    plateau_patience: Optional[int] = None  # epochs; None: no ReduceLROnPlateau.
    plateau_factor: float = math.sqrt(0.1)
    plateau_min_lr: float = 0.5e-6

    # Run.
    seed: int = 0
    jit_compile: bool = False      # XLA; worth it on GPU.
    mixed_precision: bool = False  # what precision "auto" follows: float16 on GPU, bfloat16
    #                                 on a CPU with native bf16, float32 on a CPU without.
    precision: Optional[str] = None  # Keras dtype policy: "float32" | "mixed_bfloat16" |
    #                                 "mixed_float16"; None or "auto": from mixed_precision and
    #                                 the hardware (cpu.resolve_precision). A run directory's
    #                                 config.json holds the policy its run used.
    steps_per_execution: int = 1
    log_every: Optional[int] = None  # iterations per history row (and evaluation); None: one
    #                                  epoch. Short runs use it for curves with more points.
    deterministic: bool = False    # TF op determinism: a resumed run matches an unbroken
    #                                 one bit for bit (docs/reliability.md has the cost).
    strategy: str = "auto"         # "auto" | "one" | "mirrored" | "multiworker" (distribute.py);
    #                                 batch_size stays the global batch, lr is not rescaled.

    def __post_init__(self):
        self.lr_milestones = tuple(self.lr_milestones)
        self.lr_factors = tuple(self.lr_factors)

    @property
    def resolved_block(self) -> str:
        return self.block or ("basic" if self.version == 1 else "bottleneck")

    @property
    def resolved_warmup(self) -> int:
        if self.warmup_iterations is not None:
            return self.warmup_iterations
        return 400 if self.depth >= 110 else 0

    @property
    def net_name(self) -> str:
        """A short name such as `resnet56_v1`, `plain20_v1` or `resnet164_v2`."""
        kind = "plain" if self.plain else "resnet"
        own = "original" if self.version == 1 else "full_preact"
        variant = [v for v in (self.unit, self.shortcut_variant)
                   if v not in (None, own, "identity")]
        return "_".join([f"{kind}{self.depth}_v{self.version}", *variant])

    def variant_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `models.resnet_v1` for the He 2016 ablations; {} by default."""
        if self.version != 1 or (self.unit in (None, "original")
                                 and self.shortcut_variant == "identity"):
            return {}
        return dict(unit=self.unit or "original", shortcut_variant=self.shortcut_variant,
                    gate_bias_init=self.gate_bias_init, scale=self.shortcut_scale,
                    residual_scale=self.residual_scale, dropout_rate=self.shortcut_dropout)

    def validate(self) -> "Config":
        """Raises ConfigError naming the bad value and the allowed ones; returns self."""
        _choice("version", self.version, (1, 2))
        _choice("preset", self.preset, tuple(PRESETS))
        _choice("dataset", self.dataset, ("cifar10", "synthetic"))
        _choice("normalization", self.normalization, ("pixel_mean", "channel_std", "none"))
        _choice("optimizer", self.optimizer, ("sgd", "adam"))
        _choice("lr_schedule", self.lr_schedule, tuple(schedules.SCHEDULES))
        _choice("strategy", self.strategy, STRATEGIES)
        _choice("precision", self.precision, (None, "auto", *cpu.PRECISIONS))
        try:
            models.check_architecture(self.version, self.depth, block=self.resolved_block,
                                      shortcut=self.shortcut)
            if self.version == 2 and self.unit not in (None, "full_preact"):
                raise ValueError(f"unit {self.unit!r} needs version 1; version 2 is the "
                                 "'full_preact' net")
            if self.version == 2 and self.shortcut_variant != "identity":
                raise ValueError(f"shortcut_variant {self.shortcut_variant!r} needs version 1")
            own = "original" if self.version == 1 else "full_preact"
            variants.check(unit=self.unit or own, shortcut_variant=self.shortcut_variant,
                           gate_bias_init=self.gate_bias_init, scale=self.shortcut_scale,
                           residual_scale=self.residual_scale,
                           dropout_rate=self.shortcut_dropout, plain=self.plain,
                           shortcut=self.shortcut)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        for name in ("batch_size", "steps_per_execution", "synthetic_train", "synthetic_test"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1; got {getattr(self, name)}")
        for name in ("epochs", "iterations", "log_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1; got {value}")
        if self.epochs is None and self.iterations is None:
            raise ConfigError("set epochs or iterations")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1); got {self.val_fraction}")
        for name in ("lr", "warmup_lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0; got {getattr(self, name)}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0; got {self.weight_decay}")
        if len(self.lr_milestones) != len(self.lr_factors):
            raise ConfigError(f"lr_milestones {self.lr_milestones} and lr_factors "
                              f"{self.lr_factors} must have the same length")
        return self

    def plan(self, num_train: int) -> tuple[int, int, int]:
        """Returns (steps_per_epoch, epochs, planned_iterations) for `num_train` images.

        A Keras "epoch" here is one logging period: a pass over the data, or `log_every`
        iterations. Training runs whole periods, so it may pass `iterations` by less than one
        (the paper's 64k at 352 per epoch: 182 epochs, 64,064 iterations).
        """
        steps = math.ceil(num_train / self.batch_size)
        total = self.epochs * steps if self.epochs is not None else self.iterations
        steps = min(self.log_every or steps, total)  # a run shorter than one period is one
        return steps, math.ceil(total / steps), total

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Training recipes. The model side of each preset lives in models.PRESETS.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    # The Keras example (keras-team/keras examples/cifar10_resnet.py): Adam 1e-3, batch 32,
    # 200 epochs, lr divided at epochs 81/121/161/181 (its `epoch > 80` ...), ReduceLROnPlateau
    # (factor sqrt(0.1), patience 5, min_lr 0.5e-6).
    # Where we differ: the example selects its best model on the test set; we hold out
    # val_fraction. Its L2(1e-4) is weight decay 2e-4 in the paper's terms.
    "keras-example": dict(
        optimizer="adam", lr=1e-3, batch_size=32, epochs=200, iterations=None,
        lr_milestones=(0.405, 0.605, 0.805, 0.905), lr_factors=(1e-1, 1e-2, 1e-3, 0.5e-3),
        weight_decay=2e-4, warmup_iterations=0, plateau_patience=5,
    ),
}

FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def _choice(name, value, allowed):
    if value not in allowed:
        raise ConfigError(f"{name} {value!r} is not one of {', '.join(map(repr, allowed))}")


def read_file(path) -> dict[str, Any]:
    """Reads a JSON or YAML config file into a dict of known fields."""
    path = pathlib.Path(path)
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read config file {path}: {e}".splitlines()[0]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise ConfigError(f"config file {path}: unknown setting(s) {', '.join(unknown)}")
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """Parses `key=value` (value in YAML syntax) into a known field and its value."""
    key, sep, raw = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or key not in FIELDS:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE with KEY one of the config fields")
    return key, yaml.safe_load(raw)


def resolve(file: Optional[str] = None, overrides: Optional[dict[str, Any]] = None) -> Config:
    """Builds a validated Config: defaults, then preset, then `file`, then `overrides`.

    Args:
        file: optional JSON/YAML config file.
        overrides: field values from flags; None values mean "not given".

    Returns:
        The validated Config.
    """
    settings = read_file(file) if file else {}
    settings.update({k: v for k, v in (overrides or {}).items() if v is not None})
    preset = settings.get("preset", Config.preset)
    _choice("preset", preset, tuple(PRESETS))
    values = {**PRESETS[preset], **settings}
    try:
        config = Config(**values)
    except TypeError as e:
        raise ConfigError(str(e)) from None
    _check_types(config)
    return config.validate()


def _check_types(config: Config) -> None:
    """Checks each value against its field's annotation, e.g. `depth: int`, `block: Optional[str]`."""
    kinds = {"int": int, "float": (int, float), "str": str, "bool": bool, "tuple": (list, tuple)}
    for name, field in FIELDS.items():
        value = getattr(config, name)
        optional = field.type.startswith("Optional[")
        kind = field.type.removeprefix("Optional[").removesuffix("]")
        if value is None and optional:
            continue
        if kind == "float" and isinstance(value, str):  # YAML 1.1 reads 5e-7 as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if not isinstance(value, kinds[kind]) or (kind != "bool" and isinstance(value, bool)):
            raise ConfigError(f"{name} must be {'an optional ' if optional else 'a '}{kind}; "
                              f"got {value!r}")
        if kind == "float":
            setattr(config, name, float(value))


def save(config: Config, path) -> None:
    """Writes `config` as JSON, atomically (temporary file, then rename)."""
    files.write_json(path, config.to_dict())


def load(path) -> Config:
    """Reads a config.json written by `save`."""
    return resolve(file=path)
