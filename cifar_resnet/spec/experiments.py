"""Experiment files: one readable Python module per paper setting, under `experiments/`.

An experiment is a set of nets trained with one recipe, e.g. He et al. 2015 Table 6 (ResNet-20
to 1202 on CIFAR-10) or Figure 6 (plain vs residual). Its file holds module-level

    RECIPE  config overrides shared by every net (fields of `config.Config`)
    NETS    net name -> config overrides of that net
    PAPER   net name -> {"error": test error in %, "source": "Table 6", optional "std", "note"}
    PANELS  figure panel -> net names (optional)

and a docstring citing the paper's table or figure. `run_config` turns one net and seed into a
validated Config; `cifar_resnet.run.sweep` trains all of them.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import pathlib
from typing import Any, Optional, Union

from cifar_resnet.spec import config as config_lib
from cifar_resnet.spec.config import ConfigError


# What an experiment file means where its RECIPE and NETS say nothing, before the Config's
# defaults. Its "64k iterations" (iterations=64000) is whole passes, 164 of 391 = 64,124 with
# the lr drops at 32k and 48k, as the papers' Torch code counted epochs and as every committed
# run trained; a file may say whole_passes=False for exactly `iterations`.
RECIPE_DEFAULTS = {"whole_passes": True}


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One paper setting: a shared recipe and the nets trained with it."""

    name: str                      # "table6"
    doc: str                       # the file's docstring
    recipe: dict                   # config overrides shared by every net
    nets: dict[str, dict]          # net name -> config overrides
    paper: dict[str, dict]         # net name -> {"error": %, "source": ..., "std"?, "note"?}
    panels: dict[str, list[str]]   # figure panel -> net names; may be empty


def experiments_dir() -> pathlib.Path:
    """Where experiment files are found by name.

    `$CIFAR_RESNET_EXPERIMENTS` if set; else, in an installed copy (`pip install .`), the files
    shipped with the package (`cifar_resnet/experiment_files`, built from `experiments/`); else
    the repository's `experiments/` folder.
    """
    override = os.environ.get("CIFAR_RESNET_EXPERIMENTS")
    if override:
        return pathlib.Path(override)
    return builtin_experiments_dir()


def builtin_experiments_dir() -> pathlib.Path:
    """The experiment files that come with the code (the papers' tables), whatever
    `$CIFAR_RESNET_EXPERIMENTS` says."""
    package = pathlib.Path(__file__).parents[1]
    shipped = package / "experiment_files"
    return shipped if shipped.is_dir() else package.parent / "experiments"


def list_experiments() -> list[str]:
    """Names of the experiment files, e.g. ["figure6", "keras_example", "table6", ...]."""
    folder = experiments_dir()
    return sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))


def _find(name_or_path) -> pathlib.Path:
    text = str(name_or_path)
    if text.endswith(".py") or os.sep in text:
        path = pathlib.Path(text)
        if not path.is_file():
            raise ConfigError(f"experiment file {path} not found")
        return path
    path = experiments_dir() / f"{text.replace('-', '_')}.py"  # `keras-example` works too
    if not path.is_file():
        raise ConfigError(f"unknown experiment {text!r}; available: "
                          f"{', '.join(list_experiments()) or '(none)'} (in {experiments_dir()})")
    return path


def load_experiment(name_or_path) -> Experiment:
    """Loads an experiment by name ("table6") or from a path to a .py file.

    Args:
        name_or_path: an experiment name from `list_experiments()`, or a path ending in `.py`.

    Returns:
        The Experiment; its net names in PAPER and PANELS are checked against NETS.

    Raises:
        ConfigError: unknown experiment (naming the available ones), or a malformed file.
    """
    path = _find(name_or_path)
    spec = importlib.util.spec_from_file_location(f"cifar_resnet_experiment_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # a broken file is bad input, reported in one line
        raise ConfigError(f"cannot load experiment file {path}: {type(e).__name__}: {e}") from None
    nets = getattr(module, "NETS", None)
    if not isinstance(nets, dict) or not nets:
        raise ConfigError(f"experiment file {path} must define NETS, a non-empty dict")
    experiment = Experiment(
        name=path.stem, doc=(module.__doc__ or "").strip(),
        recipe=dict(getattr(module, "RECIPE", {})),
        nets={name: dict(overrides) for name, overrides in nets.items()},
        paper={name: dict(entry) for name, entry in getattr(module, "PAPER", {}).items()},
        panels={name: list(members) for name, members in getattr(module, "PANELS", {}).items()})
    for where, names in [("PAPER", experiment.paper),
                         *((f"PANELS[{p!r}]", m) for p, m in experiment.panels.items())]:
        unknown = [n for n in names if n not in experiment.nets]
        if unknown:
            raise ConfigError(f"experiment file {path}: {where} names unknown net(s) "
                              f"{', '.join(unknown)}; NETS has {', '.join(experiment.nets)}")
    for where, overrides in [("RECIPE", experiment.recipe), *experiment.nets.items()]:
        unknown = sorted(set(overrides) - set(config_lib.FIELDS))
        if unknown:
            raise ConfigError(f"experiment file {path}: {where} has unknown setting(s) "
                              f"{', '.join(unknown)}")
    return experiment


def run_config(experiment: Union[Experiment, str], net: str, seed: int,
               overrides: Optional[dict[str, Any]] = None) -> config_lib.Config:
    """The validated Config of one run: the recipe, then the net, then the seed, then `overrides`.

    Args:
        experiment: an Experiment, or a name or path for `load_experiment`.
        net: a key of `experiment.nets`.
        seed: the run's random seed.
        overrides: e.g. from `--set` and `--data-dir`; they win over the experiment file.

    Raises:
        ConfigError: unknown net (naming the experiment's nets) or an invalid setting.
    """
    if not isinstance(experiment, Experiment):
        experiment = load_experiment(experiment)
    if net not in experiment.nets:
        raise ConfigError(f"experiment {experiment.name!r} has no net {net!r}; "
                          f"its nets: {', '.join(experiment.nets)}")
    settings = {**RECIPE_DEFAULTS, **experiment.recipe, **experiment.nets[net], "seed": seed,
                **(overrides or {})}
    return config_lib.resolve(overrides=settings)
