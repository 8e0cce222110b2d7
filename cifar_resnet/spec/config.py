"""Experiment configuration as pure data: one dataclass, load/save, overrides and validation.

Settings are resolved in this order, later winning: the dataclass defaults (the paper's recipe,
He et al. 2015 section 4.2), the chosen preset, a `--config` file (JSON or YAML), then flags.
A run directory's `config.json` is the resolved config, and is itself a valid `--config` file.

Importing this module imports neither TensorFlow nor Keras (the CLI validates before that slow
import): the choices it checks come from `architecture`, `presets`, `schedules` and `datasets`,
which have none either.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import re
import sys
from typing import Any, Optional

import yaml

from cifar_resnet.spec.choices import check_choice, closest, short
from cifar_resnet.spec import architecture, cpu, datasets, files, paper, presets, schedules
from cifar_resnet.spec.architecture import VARIANT_DEFAULTS


# Input pipelines (device_input.py): "auto" is tfdata under the TensorFlow backend, else device.
PIPELINES = ("auto", "tfdata", "device")

# Where training runs (distribute.py): one device, local GPUs, several machines; auto picks.
STRATEGIES = ("auto", "one", "mirrored", "multiworker")
OPTIMIZERS = ("sgd", "adam")  # SGD with momentum (paper); Adam (keras-example).
# Training augmentations (pipeline.AUGMENTATIONS holds their functions).
AUGMENTATIONS = ("crop_flip", "shift_flip")
# `weight_decay_on` -> the model option `regularize_all` (presets.py): "all" decays kernels,
# biases and BatchNorm's gamma/beta, as Torch's SGD does (the paper preset); "kernels" decays
# the conv kernels only, not the classifier's (as the Keras example, whose Dense layer has no
# regularizer; a fast-recipe candidate, issue #12).
WEIGHT_DECAY_ON = {"all": True, "kernels": False}


# The deepest nets of the papers: ResNet-1202 (He et al. 2015, basic blocks) and ResNet-1001
# (He et al. 2016, bottleneck). Deeper needs `allow_any_depth`. Their memory, for the message:
# parameters as the papers give them (He 2015 Table 6, He 2016 Table 3; our layer counts agree),
# and float32 activations at batch 128 estimated from the feature maps a backward pass keeps
# (about 7 tensors per basic block, 10 per bottleneck block): 1202 ~21 GB, 1001 ~36 GB. These
# are estimates from counts, not measurements; memory grows linearly with depth and batch.
MAX_DEPTH = {"basic": 1202, "bottleneck": 1001}
_MAX_DEPTH_MEMORY = {"basic": (paper.TABLE6["resnet1202"]["params"], 20.6),  # params, GB
                     "bottleneck": (paper.TABLE3_CIFAR10["resnet1001_v2"]["params"], 35.8)}
# Fields that do not define a run (a rerun may change them): a resumed run is not compared on
# them (spec/preflight.check).
NOT_IDENTITY = ("data_dir", "allow_any_depth")
SEED_RANGE = (0, 2**32 - 1)  # numpy's and Keras' seeds
# Upper bounds of the counts, checked before anything is written (issue #38): past them a run
# fails late and badly (a MemoryError making a billion synthetic images; a TensorFlow traceback
# for 1e20 iterations, an int64 overflow, after the run directory's first files exist).
# Iterations: 10M is 156 times the paper's 64k. Synthetic data is made in memory (float32 while
# it is made, about 40 kB an image), so it is bounded by CIFAR-10's own sizes.
MAX_ITERATIONS = 10_000_000
MAX_COUNTS = {
    "iterations": (MAX_ITERATIONS, "156 times the paper's 64k"),
    "log_every": (MAX_ITERATIONS, "the most iterations a run may have"),
    "warmup_iterations": (MAX_ITERATIONS, "the most iterations a run may have"),
    "plateau_patience": (MAX_ITERATIONS, "the most iterations a run may have"),
    "steps_per_execution": (MAX_ITERATIONS, "the most iterations a run may have"),
    "eval_batch_size": (60_000, "all of CIFAR's 60,000 images"),
    "synthetic_train": (50_000, "CIFAR-10's 50,000 training images; synthetic data is made in "
                                "memory"),
    "synthetic_test": (10_000, "CIFAR-10's 10,000 test images; synthetic data is made in "
                               "memory"),
}
# Config files and `--set` values (issue #38): a file is read up to this size (`/dev/zero` is
# refused after 1 MB, not after filling the memory), and YAML aliases may expand to at most
# this many nodes: a few hundred bytes of nested anchors ("billion laughs") stand for 10^12
# items, which the parser shares but anything copying or formatting the value expands.
MAX_CONFIG_BYTES = 1 << 20
MAX_YAML_NODES = 100_000
# Iteration counts that a recipe may give in passes over the training images ("2 passes",
# "1 pass", "0.5 passes"): converted once, in `resolve`, with the batch size and split of that
# config, so config.json holds iterations and a recipe stays right under another batch size or
# split. An "epoch" is always a pass; `log_every` is the logging period, in iterations.
PASS_FIELDS = ("log_every", "warmup_iterations")
_PASSES = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*pass(?:es)?\s*$")


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
    preset: str = presets.DEFAULT  # "paper" | "keras-example" (presets.PRESETS).
    # He 2016 ablations (cifar_resnet/nets/variants.py), version 1 only.
    unit: Optional[str] = None     # BN/ReLU placement (Table 2): "original" | "bn_after_add" |
    #                                 "relu_before_add" | "relu_only_preact" | "full_preact".
    #                                 None: the version's own (original v1, full_preact v2).
    shortcut_variant: str = "identity"  # Table 1: "identity" | "scaling" | "exclusive_gating" |
    #                                 "shortcut_only_gating" | "conv1x1" | "dropout".
    gate_bias_init: float = VARIANT_DEFAULTS["gate_bias_init"]  # initial gate bias b_g of the
    #                                 gating variants (paper: -6).
    shortcut_scale: float = VARIANT_DEFAULTS["scale"]  # "scaling": the shortcut's factor.
    residual_scale: Optional[float] = None  # "scaling": F's factor; None: 1 - shortcut_scale.
    shortcut_dropout: float = VARIANT_DEFAULTS["dropout_rate"]  # "dropout": the shortcut's
    #                                 drop rate.

    # Data.
    dataset: str = "cifar10"       # "cifar10" | "cifar100" | "synthetic" (datasets.DATASETS).
    label_mode: str = "fine"       # "fine"; "coarse": CIFAR-100's 20 superclasses.
    data_dir: Optional[str] = None  # folder or archive; else $CIFAR10_DIR ($CIFAR100_DIR),
    #                                 else ~/.keras/datasets.
    val_fraction: float = 0.0      # training images held out for model selection: 0, all 50k
    #                                 (the paper's Table 6 nets); 0.1: the paper's 45k/5k split.
    normalization: str = "pixel_mean"  # "pixel_mean" (paper) | "channel_std" | "none".
    augment: bool = True           # augment the training images (as `augmentation` says).
    augmentation: str = "crop_flip"  # "crop_flip" (paper: pad-4 random crop, flip) |
    #                                 "shift_flip" (the Keras example's ImageDataGenerator:
    #                                 shifts uniform in +-10% per axis, bilinear, edge pixels
    #                                 repeated, flip; pipeline.shift_flip_batch).
    input_pipeline: str = "auto"   # "tfdata" (host, TensorFlow) | "device" (numpy batches,
    #                                 crop_flip in the compiled step; no TensorFlow) | "auto".
    synthetic_train: int = 2048    # images, dataset="synthetic" only.
    synthetic_test: int = 512

    # Optimisation.
    optimizer: str = "sgd"         # "sgd" (momentum, paper) | "adam" (keras-example).
    batch_size: int = 128          # images per iteration (paper: 128).
    lr: float = 0.1                # base learning rate.
    momentum: float = 0.9          # SGD momentum.
    weight_decay: float = 1e-4     # paper semantics: gradient += wd * w, through momentum.
    weight_decay_on: Optional[str] = None  # "all" | "kernels" (WEIGHT_DECAY_ON); None: the
    #                                 preset's ("all" for the paper, as Torch).
    nesterov: bool = False         # Nesterov momentum (SGD only; the paper: plain momentum).
    label_smoothing: float = 0.0   # cross-entropy against (1 - e) * one-hot + e / classes
    #                                 (the paper: 0).
    iterations: Optional[int] = paper.ITERATIONS  # to train (64k), exactly unless
    #                                 whole_passes; ignored if epochs is set.
    epochs: Optional[int] = None   # passes to train; None: derived from iterations.
    whole_passes: bool = False     # True: train whole logging periods (passes unless
    #                                 log_every), rounding `iterations` up, the lr milestones
    #                                 still fractions of `iterations`: 64,000 -> 164 passes of
    #                                 391 = 64,124, drops at 32k and 48k, as every run did before
    #                                 this field and as the experiment files train (Torch's
    #                                 CIFAR code counts epochs). False: exactly `iterations`, the
    #                                 last period partial.
    lr_schedule: str = "step"      # "step" (paper: lr_milestones, lr_factors) | "linear"
    #                                 (rise from warmup_lr over warmup_iterations, then linear
    #                                 decay to 0 at the last iteration) | "cosine" (the same
    #                                 rise, then a half cosine to 0; schedules.py).
    lr_milestones: tuple = (0.5, 0.75)  # fractions of the planned iterations (paper: 32k, 48k).
    lr_factors: tuple = (0.1, 0.01)     # lr multiplier from each milestone on.
    warmup_iterations: Optional[int] = None  # None: 400 at depth >= 110 (paper), else 0;
    #                                 or in passes, e.g. "1 pass" (PASS_FIELDS).
    warmup_lr: float = 0.01        # paper: 0.01 until training error < 80%.
    plateau_patience: Optional[int] = None  # logging periods (evaluations); None: no
    #                                 ReduceLROnPlateau.
    plateau_factor: float = math.sqrt(0.1)
    plateau_min_lr: float = 0.5e-6
    plateau_survives_schedule: bool = True  # False: the schedule sets its rate afresh at every
    #                                 epoch start, so the plateau's cuts reach no batch (the
    #                                 Keras example's LearningRateScheduler; callbacks.py).

    # Run.
    seed: int = 0
    jit_compile: bool = False      # XLA; worth it on GPU.
    precision: str = "float32"     # Keras dtype policy: "float32" (paper) | "mixed_bfloat16" |
    #                                 "mixed_float16" | "auto": mixed where the hardware computes
    #                                 it natively (float16 on a GPU, bfloat16 on a CPU with
    #                                 avx512_bf16 or AMX), else float32 (cpu.resolve_precision).
    #                                 A run directory's config.json holds the policy its run used.
    steps_per_execution: int = 1
    drop_remainder: bool = False   # device input path only: drop each pass's last partial batch
    #                                 (50,000 = 390 x 128 + 80: 390 iterations a pass, 80 images
    #                                 a pass left out, a different 80 each pass), so the training
    #                                 step has one shape (one XLA compile). The planned
    #                                 iterations and milestones (64k; 32k, 48k) stay; whole
    #                                 passes make it 165 x 390 = 64,350 (default 164 x 391).
    eval_batch_size: Optional[int] = None  # device input path: evaluation batch; None:
    #                                 batch_size. One that divides the test set (10,000: 125,
    #                                 200, 250, 500, 1000) gives one eval shape, one compile.
    log_every: Optional[int] = None  # the logging period: iterations per history row (and
    #                                  evaluation); None: one pass; or in passes, e.g.
    #                                  "2 passes" (PASS_FIELDS). Short runs log more often.
    deterministic: bool = False    # TF op determinism: a resumed run matches an unbroken
    #                                 one bit for bit (docs/reliability.md has the cost).
    strategy: str = "auto"         # "auto" | "one" | "mirrored" | "multiworker" (distribute.py);
    #                                 batch_size stays the global batch, lr is not rescaled.
    allow_any_depth: bool = False  # True: build nets deeper than MAX_DEPTH (the papers'
    #                                 deepest); not part of a run's identity (NOT_IDENTITY).

    def __post_init__(self):
        self.lr_milestones = tuple(self.lr_milestones)
        self.lr_factors = tuple(self.lr_factors)

    @property
    def num_classes(self) -> int:
        """Classes of the data set and label mode (datasets.DATASETS): the classifier's width."""
        return datasets.DATASETS[self.dataset].num_classes(self.label_mode)

    @property
    def resolved_block(self) -> str:
        return self.block or architecture.DEFAULT_BLOCKS.get(self.version, "basic")

    @property
    def resolved_warmup(self) -> int:
        if self.warmup_iterations is not None:
            return self.warmup_iterations
        return 400 if self.depth >= 110 else 0

    @property
    def net_name(self) -> str:
        """A short name such as `resnet56_v1`, `plain20_v1` or `resnet164_v2`."""
        return architecture.net_name(self.version, self.depth, plain=self.plain,
                                     unit=self.unit, shortcut_variant=self.shortcut_variant)

    @property
    def net(self) -> architecture.NetSpec:
        """The net this config trains, as one value, He 2016's variant parameters included (its
        `name` parses back to it; `models.build_model(config.net, ...)` builds it).

        Raises:
            ValueError: a net the constructors do not build (validated against its preset).
        """
        fields = dict(
            version=self.version, depth=self.depth, block=self.block,
            shortcut=self.shortcut, plain=self.plain, unit=self.unit,
            shortcut_variant=self.shortcut_variant, preset=self.preset,
            gate_bias_init=self.gate_bias_init, scale=self.shortcut_scale,
            residual_scale=self.residual_scale, dropout_rate=self.shortcut_dropout)
        cached = self.__dict__.get("_net")  # built and validated once while these are unchanged
        if cached is None or cached[0] != fields:
            cached = self.__dict__["_net"] = (fields, architecture.NetSpec(**fields))
        return cached[1]

    def validate(self) -> "Config":
        """Raises ConfigError naming the bad value and the allowed ones; returns self.

        The one validator of a config: the CLI calls it (through `resolve`) before anything is
        written or TensorFlow imported. A config is checked once: validating it again, unchanged
        (`run_experiment` does, for configs built by hand), returns at once.
        """
        state = self.to_dict()
        if self.__dict__.get("_validated") == state:
            return self
        self._check()
        self.__dict__["_validated"] = state
        return self

    def _check(self) -> None:
        """The checks of `validate`, on every field."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if (field.type in ("float", "Optional[float]") and isinstance(value, float)
                    and not math.isfinite(value)):
                raise ConfigError(f"{field.name} must be a finite number; got {value!r}")
        for name, allowed in (("version", architecture.VERSIONS), ("preset", presets.PRESETS),
                              ("dataset", datasets.DATASETS),
                              ("normalization", datasets.NORMALIZATIONS),
                              ("optimizer", OPTIMIZERS), ("lr_schedule", schedules.SCHEDULES),
                              ("augmentation", AUGMENTATIONS),
                              ("strategy", STRATEGIES), ("input_pipeline", PIPELINES),
                              ("precision", ("auto", *cpu.PRECISIONS)),
                              ("weight_decay_on", (None, *WEIGHT_DECAY_ON))):
            check_choice(name, getattr(self, name), allowed, ConfigError)
        check_choice("label_mode", self.label_mode, datasets.DATASETS[self.dataset].label_modes,
                     ConfigError)
        # The net validates itself, against this preset: the Keras example's v2 is
        # bottleneck-only.
        try:
            self.net
        except ValueError as e:
            raise ConfigError(str(e)) from None
        for name in ("batch_size", "steps_per_execution", "synthetic_train", "synthetic_test"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1; got {getattr(self, name)}")
        for name in ("epochs", "iterations", "log_every", "eval_batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1; got {value}")
        if self.epochs is None and self.iterations is None:
            raise ConfigError("set epochs or iterations")
        for name, (high, why) in MAX_COUNTS.items():
            value = getattr(self, name)
            if value is not None and value > high:
                raise ConfigError(f"{name} must be <= {high:,} ({why}); got {value}")
        if self.val_fraction is not None and not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1); got {self.val_fraction}")
        for name in ("lr", "warmup_lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0; got {getattr(self, name)}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0; got {self.weight_decay}")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing must be in [0, 1); got {self.label_smoothing}")
        if self.nesterov and self.optimizer != "sgd":
            raise ConfigError(f"nesterov applies to optimizer 'sgd' only; got optimizer "
                              f"{self.optimizer!r}")
        if len(self.lr_milestones) != len(self.lr_factors):
            raise ConfigError(f"lr_milestones {short(self.lr_milestones)} and lr_factors "
                              f"{short(self.lr_factors)} must have the same length")
        self._check_ranges()

    def _check_ranges(self) -> None:
        """The numeric ranges `validate` did not check above (issue #25): each a ConfigError."""
        for name in ("lr_milestones", "lr_factors"):
            for value in getattr(self, name):
                if (isinstance(value, bool) or not isinstance(value, (int, float))
                        or not math.isfinite(value)):
                    raise ConfigError(f"{name} must be a list of finite numbers; got "
                                      f"{short(list(getattr(self, name)))}")
        if not all(0 < m < 1 for m in self.lr_milestones) or any(
                a >= b for a, b in zip(self.lr_milestones, self.lr_milestones[1:])):
            raise ConfigError(f"lr_milestones must be strictly increasing fractions in (0, 1); "
                              f"got {short(list(self.lr_milestones))}")
        if not all(f > 0 for f in self.lr_factors):
            raise ConfigError(f"lr_factors must be > 0; got {short(list(self.lr_factors))}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1); got {self.momentum}")
        for name in ("warmup_iterations", "plateau_patience"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"{name} must be >= 0 (or null); got {value}")
        if not 0 < self.plateau_factor < 1:
            raise ConfigError(f"plateau_factor must be in (0, 1); got {self.plateau_factor}")
        if self.plateau_min_lr < 0:
            raise ConfigError(f"plateau_min_lr must be >= 0; got {self.plateau_min_lr}")
        low, high = SEED_RANGE
        if not low <= self.seed <= high:
            raise ConfigError(f"seed must be in [{low}, {high}]; got {self.seed}")
        num_train = self.registry_num_train()
        if self.epochs is not None:
            total = self.epochs * self.iterations_per_pass(max(num_train, 1))
            if total > MAX_ITERATIONS:
                raise ConfigError(f"epochs {self.epochs} are {total:,} iterations here; at most "
                                  f"{MAX_ITERATIONS:,} (156 times the paper's 64k)")
        if self.batch_size > num_train:
            raise ConfigError(f"batch_size {self.batch_size} is larger than the {num_train} "
                              f"training images of {self.dataset} (val_fraction "
                              f"{self.val_fraction})")
        block = self.resolved_block
        if self.depth > MAX_DEPTH.get(block, math.inf) and not self.allow_any_depth:
            params, gigabytes = _MAX_DEPTH_MEMORY[block]
            deepest = MAX_DEPTH[block]
            here = gigabytes * self.depth / deepest * self.batch_size / 128
            raise ConfigError(
                f"depth {self.depth} is above {deepest}, the deepest {block}-block net of the "
                f"papers (ResNet-{deepest}: {params} parameters, about {gigabytes:.0f} GB of "
                f"float32 activations at batch 128, estimated from its feature maps; growing "
                f"with depth, about {here:,.0f} GB here); pass --set allow_any_depth=true to "
                "build it anyway")

    def registry_num_train(self) -> int:
        """Training images after the validation hold-out, from the data set's registry entry
        (the official file sizes, or synthetic_train), without reading the data."""
        release = datasets.DATASETS[self.dataset].release
        total = (self.synthetic_train if release is None
                 else sum(release.full_sizes[name] for name in release.train_files))
        return total - round(self.val_fraction * total)

    def iterations_per_pass(self, num_train: int) -> int:
        """Iterations of one pass over `num_train` images (the last batch may be partial, or
        is dropped with `drop_remainder`)."""
        if self.drop_remainder and num_train >= self.batch_size:
            return num_train // self.batch_size
        return math.ceil(num_train / self.batch_size)

    def period_name(self, num_train: int) -> str:
        """What one logging period of this run is to a reader: "pass" where it is one pass over
        `num_train` images (the default), else "period" (`log_every`)."""
        steps = self.plan(num_train)[0]
        return "pass" if steps == self.iterations_per_pass(num_train) else "period"

    def plan(self, num_train: int) -> tuple[int, int, int]:
        """Returns (steps_per_period, periods, planned_iterations) for `num_train` images.

        A logging period is `log_every` iterations, one pass by default; Keras' `fit` calls it
        an "epoch" (its `steps_per_epoch` and `epochs` are these periods), this package does
        not: an epoch is a pass (`epochs`), and history.csv's `period` column counts periods
        (`epoch` in files written before issue #39, spec/rundir.py). The schedule's milestones are fractions of
        `planned_iterations` (`iterations`, or `epochs` passes). Training stops there, the last
        period partial, unless `whole_passes`: then it runs whole periods, passing
        `planned_iterations` by less than one (`train_iterations`): the paper's 64k on all 50k
        images at batch 128 (391 iterations per pass, the last of 80 images) is 164 periods,
        64,124 iterations, with drops at 32k and 48k; on the 45k split (352 per pass) 182,
        64,064.
        """
        steps = self.iterations_per_pass(num_train)
        total = self.epochs * steps if self.epochs is not None else self.iterations
        steps = min(self.log_every or steps, total)  # a run shorter than one period is one
        return steps, math.ceil(total / steps), total

    def train_iterations(self, num_train: int) -> int:
        """The iterations training runs on `num_train` images: `plan`'s planned iterations,
        rounded up to whole periods with `whole_passes`."""
        steps, periods, total = self.plan(num_train)
        return steps * periods if self.whole_passes else total

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(Config)}

# The options of `evaluate` (evaluate.py), here so that the CLI offers them without TensorFlow.
EVAL_CHECKPOINTS = ("auto", "best", "final")  # auto: best with a validation split, else final
EVAL_SPLITS = ("test", "val")
EVAL_TTAS = (None, "flip")


def _unknown_keys(keys) -> str:
    """`"depht (did you mean 'depth'?)"`: unknown setting names, each with its nearest field."""
    keys = list(keys)
    shown = keys[:5]  # a file of a million keys gets one line, not a million suggestions
    near = {k: closest(k, FIELDS) for k in shown}  # suggests today's fields only
    text = ", ".join(f"{k} (did you mean {near[k]!r}?)" if near[k] else
                     (k if isinstance(k, str) and len(k) <= 80 else short(k)) for k in shown)
    return text + (f" and {len(keys) - len(shown):,} more" if len(keys) > len(shown) else "")


class _BoundedLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses a document whose aliases expand past MAX_YAML_NODES
    nodes, or refer to themselves, before any Python object is built."""

    def construct_document(self, node):
        sizes, open_ = {}, set()

        def size(n) -> int:  # nodes of `n` expanded, each shared node counted where it is used
            if id(n) in sizes:
                return sizes[id(n)]
            if id(n) in open_:
                raise yaml.YAMLError("a YAML alias refers to a node that holds it")
            open_.add(id(n))
            children = (n.value if isinstance(n, yaml.SequenceNode) else
                        [x for pair in n.value for x in pair] if isinstance(n, yaml.MappingNode)
                        else [])
            total = 1
            for child in children:
                total += size(child)
                if total > MAX_YAML_NODES:
                    raise yaml.YAMLError(f"it holds more than {MAX_YAML_NODES:,} items with "
                                         "its YAML aliases expanded")
            open_.discard(id(n))
            sizes[id(n)] = total
            return total

        size(node)
        return super().construct_document(node)


def _load_yaml(text: str):
    """`yaml.safe_load(text)`, refusing aliases that expand past MAX_YAML_NODES (a YAMLError)."""
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _one_line(error: Exception) -> str:
    """An error's message on one line: YAML's spans several (the context, the line, a caret),
    so it is cut to its problem and where."""
    mark = getattr(error, "problem_mark", None)
    if getattr(error, "problem", None) and mark is not None:
        return f"{error.problem} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join(str(error).split())[:300] or type(error).__name__


def _read_mapping(path: pathlib.Path) -> dict[str, Any]:
    """A JSON or YAML file's mapping, at most MAX_CONFIG_BYTES read and YAML aliases bounded."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(f"cannot read config file {path}: larger than "
                              f"{MAX_CONFIG_BYTES:,} bytes (a config is a few hundred)")
        text = raw.decode()
        data = json.loads(text) if path.suffix == ".json" else _load_yaml(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"cannot read config file {path}: {_one_line(e)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings; got a "
                          f"{type(data).__name__}")
    return data


def read_file(path) -> dict[str, Any]:
    """Reads a JSON or YAML config file into a dict of known fields.

    At most MAX_CONFIG_BYTES are read, and YAML aliases may expand to at most MAX_YAML_NODES
    items: a larger file (`/dev/zero`) or an alias bomb is refused in one line.
    """
    path = pathlib.Path(path)
    data = _read_mapping(path)
    unknown = sorted(set(data) - set(FIELDS), key=str)
    if unknown:
        raise ConfigError(f"config file {path}: unknown setting(s) {_unknown_keys(unknown)}")
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """Parses `key=value` (value in YAML syntax) into a known field and its value."""
    key, sep, raw = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep:
        raise ConfigError(f"--set {short(text)}: expected KEY=VALUE with KEY one of the config "
                          "fields")
    if key not in FIELDS:
        raise ConfigError(f"--set {short(text)}: unknown key {_unknown_keys([key])}; expected "
                          f"KEY=VALUE with KEY one of {', '.join(FIELDS)}")
    try:
        return key, _load_yaml(raw)
    except yaml.YAMLError as e:  # `lr=[1`: YAML's message, its line and caret, on one line
        raise ConfigError(f"--set {short(text)}: cannot read the value as YAML ({_one_line(e)})"
                          ) from None


def resolve(file: Optional[str] = None, overrides: Optional[dict[str, Any]] = None, *,
            settings: Optional[dict[str, Any]] = None) -> Config:
    """Builds a validated Config: defaults, then preset, then `file`, then `overrides`.

    Args:
        file: optional JSON/YAML config file.
        overrides: field values from flags; None values mean "not given".
        settings: the file's content already read (`read_file`), instead of `file`.

    Returns:
        The validated Config.
    """
    settings = dict(settings) if settings is not None else read_file(file) if file else {}
    settings.update({k: v for k, v in (overrides or {}).items() if v is not None})
    preset = settings.get("preset", Config.preset)
    values = {**presets.recipe(preset, ConfigError), **settings}
    passes = {k: values[k] for k in PASS_FIELDS if isinstance(values.get(k), str)}
    try:
        config = Config(**{**values, **dict.fromkeys(passes)})
    except TypeError as e:
        raise ConfigError(str(e)) from None
    _check_types(config)
    if not passes:
        return config.validate()
    per_pass = config.validate().iterations_per_pass(config.registry_num_train())
    for name, text in passes.items():
        match = _PASSES.match(text)
        # Bounded here too: a thousand-digit count is inf as a float, and round(inf) raises.
        if not match or not 0 < float(match[1]) <= MAX_ITERATIONS:
            raise ConfigError(f"{name} must be an int (iterations) or a positive number of "
                              f"passes such as '2 passes'; got {short(text)} (at most "
                              f"{MAX_ITERATIONS:,} passes)")
        setattr(config, name, max(1, round(float(match[1]) * per_pass)))
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
                              f"got {short(value)}")
        if kind == "float":
            if not math.isfinite(value):  # `--lr inf`, `.nan` in YAML: no range check holds
                raise ConfigError(f"{name} must be a finite number; got {value!r}")
            setattr(config, name, float(value))


def keras_backend() -> str:
    """The Keras backend a run will use, found as Keras finds it but without importing it
    (which would import TensorFlow): the imported Keras' if any, else $KERAS_BACKEND, else
    "backend" of $KERAS_HOME/keras.json (default ~/.keras), else "tensorflow"."""
    import os
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "backend"):
        return keras.backend.backend()
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = os.environ.get("KERAS_HOME") or os.path.join(
        os.path.expanduser("~") if os.access(os.path.expanduser("~"), os.W_OK) else "/tmp",
        ".keras")
    try:
        backend = files.read_json(pathlib.Path(home, "keras.json")).get("backend")
    except (OSError, ValueError, AttributeError):
        backend = None
    return backend if isinstance(backend, str) and backend else "tensorflow"


def check_input_pipeline(config: Config, path: Optional[str] = None) -> None:
    """Refuses settings of the device input path on the tf.data one (ConfigError, one line).

    Args:
        config: the run's config.
        path: the input path it trains through ("tfdata" or "device"); None: the one
            `input_pipeline` means under `keras_backend()` ("auto": tfdata under TensorFlow),
            so that the CLI refuses before importing TensorFlow (issue #38).
    """
    if path is None:
        path = (config.input_pipeline if config.input_pipeline != "auto" else
                "tfdata" if keras_backend() == "tensorflow" else "device")
    if path != "tfdata":
        return
    given = [f"{name}={getattr(config, name)!r}" for name in ("drop_remainder", "eval_batch_size")
             if getattr(config, name)]
    if given:
        how = ("input_pipeline 'auto' under the TensorFlow backend" if config.input_pipeline
               == "auto" else "input_pipeline 'tfdata'")
        raise ConfigError(f"{', '.join(given)} applies to input_pipeline 'device' only; this run "
                          f"trains through tf.data ({how}); pass --set input_pipeline=device, or "
                          "leave drop_remainder false and eval_batch_size null")


def precision_refusal(workdir, saved: str, resolved: str, asked: str) -> ConfigError:
    """The one line that refuses a run directory trained in `saved` to a run in `resolved`
    (`asked`: the precision as requested, "auto" or a policy), naming both and the ways out."""
    here = " (--precision auto on this machine)" if asked == "auto" else ""
    return ConfigError(f"{workdir} holds a run trained in {saved}, but this run would train in "
                       f"{resolved}{here}; pass --precision {saved} to resume it, or use another "
                       "--workdir")


def default_workdir(config: Config, root="runs") -> pathlib.Path:
    """`runs/<net>[-shortcut][-preset][-dataset]/seed<k>`, e.g. `runs/resnet56_v1/seed0`.

    Here, without TensorFlow, so that the CLI finds a finished run before importing it.
    """
    parts = [config.net_name]
    if config.shortcut and not config.plain:
        parts.append(f"option{config.shortcut}")
    if config.block and config.block != config.resolved_block:
        parts.append(config.block)
    parts += [v for v in (config.preset, config.dataset, config.label_mode)
              if v not in ("paper", "cifar10", "fine")]
    return pathlib.Path(root) / "-".join(parts) / f"seed{config.seed}"


def save(config: Config, path) -> None:
    """Writes `config` as JSON, atomically (temporary file, then rename)."""
    files.write_json(path, config.to_dict())


MIGRATE = "python -m benchmarks.migrate_config_json"  # the script that upgrades old config.json


def load(path, raw: Optional[dict[str, Any]] = None) -> Config:
    """Reads a run directory's config.json, written by `save` (`raw`: its content, if already
    read by `read_file`).

    Raises:
        ConfigError: the file is unreadable or invalid; or written by an earlier version (a
            field missing, unknown or null where today's is not), naming the script that
            migrates it once (benchmarks/migrate_config_json.py).
    """
    raw = _read_mapping(pathlib.Path(path)) if raw is None else raw
    missing = [k for k in FIELDS if k not in raw]
    unknown = sorted(set(raw) - set(FIELDS), key=str)
    null = [k for k, f in FIELDS.items() if k in raw and raw[k] is None
            and not f.type.startswith("Optional[")]
    if missing or unknown or null:
        what = "; ".join(f"{label} {', '.join(map(str, keys[:5]))}" for label, keys in (
            ("lacks", missing), ("has unknown", unknown), ("has null", null)) if keys)
        raise ConfigError(f"{path} is not of this version ({what}); if an earlier "
                          f"version wrote it, migrate it once: {MIGRATE} {path}")
    return resolve(settings=raw)
