"""How long a `train` run will take, said in one line before it starts (issue #26). No TensorFlow.

The rate is a measured one where the code has it: a finished run of the same net and precision
(its metrics.json `images_per_sec`), first among the runs beside the new one (this machine),
else among the reports committed in docs/ (the machine named there). A net with no measurement
of its own gets a measured net's rate scaled by their cost per image (`relative_cost`): forward
multiply-adds plus the activations its layers write, weighted. Multiply-adds alone (basic block
18·c²·HW, bottleneck 17·c²·HW) put a bottleneck net at 0.63 of ResNet-56 v1's cost, but its
block-outputs are 4 times wider and a CPU moves them through memory: the project's bench on a
2-core Intel Xeon with AMX in bf16 gave ResNet-20 / 56 / 110 v1 and ResNet-56 v2 1,250 / 428 /
224 / 247 img/s (as reported in the newcomer issue, #40), ResNet-56 v2 at 1.7 times
ResNet-56 v1's time. ACTIVATION_WEIGHT is the least-squares fit to those four (17.4); from any
one of them it gives the other three within 4%, where multiply-adds alone made ResNet-56 v2
2.7 times too fast. One machine's fit: other CPUs weigh memory differently, so the line says
"rough".
"""

from __future__ import annotations

import json
import pathlib
import statistics
from typing import Optional

from cifar_resnet.spec import config as config_lib, rundir

REPOSITORY_DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs"
SAY_ABOVE_SECONDS = 600  # runs shorter than about 10 minutes start without a word
# Without a measured rate: a run of this many images or more gets a line all the same (10
# minutes at 1,000 img/s, faster than any CPU measured here).
UNKNOWN_RATE_ABOVE_IMAGES = 600_000
_DEPTH = 5  # folders below a root searched for metrics.json (docs/<report>/runs/<exp>/<net>/seed<k>)


def relative_macs(config: config_lib.Config) -> float:
    """Forward multiply-adds per image, in units of one stage-block of 3x3 convolutions at 16
    channels on 32x32 (c²·HW = 262,144); the same for every stage of the CIFAR nets."""
    if config.resolved_block == "bottleneck":
        blocks = 3 * ((config.depth - 2) // 9)
        return 1 + 17 * blocks
    blocks = 3 * ((config.depth - 2) // 6)
    return 1 + 18 * blocks


# Activations a block writes per image, in tensors of its stage's width (c·HW, or the inner
# width of a bottleneck): conv, BN, ReLU twice, the addition and its ReLU (basic); BN-ReLU of
# the 4x-wide input, three convs with their BN and ReLU, the wide output and the addition
# (bottleneck, either version). The stem writes 3 at stage 1's width.
BLOCK_ACTIVATIONS = {"basic": 7, "bottleneck": 22}
STAGE_WIDTHS = (1, 0.5, 0.25)  # c·HW of stages 1-3: 16x32x32, 32x16x16, 64x8x8
ACTIVATION_WEIGHT = 17  # cost of one activation unit (16x32x32) in stage-block MACs (above)


def relative_activations(config: config_lib.Config) -> float:
    """Activation elements written per image, in units of 16x32x32 (`BLOCK_ACTIVATIONS`)."""
    block = config.resolved_block
    per_stage = (config.depth - 2) // (9 if block == "bottleneck" else 6)
    return 3 + BLOCK_ACTIVATIONS[block] * per_stage * sum(STAGE_WIDTHS)


def relative_cost(config: config_lib.Config) -> float:
    """The cost per image that scales a measured rate to another net: multiply-adds plus
    ACTIVATION_WEIGHT times the activations (module docstring)."""
    return relative_macs(config) + ACTIVATION_WEIGHT * relative_activations(config)


def _measurements(roots) -> list[tuple[pathlib.Path, config_lib.Config, float, str]]:
    """(run dir, config, images/s, cpu model) of every finished run under `roots`."""
    found, seen = [], set()
    for root in roots:
        root = pathlib.Path(root)
        if not root.is_dir():
            continue
        for depth in range(_DEPTH + 1):
            for metrics_path in root.glob("/".join(["*"] * depth + [rundir.METRICS])):
                run = metrics_path.parent.resolve()
                if run in seen:
                    continue
                seen.add(run)
                try:
                    metrics = json.loads(metrics_path.read_text())
                    config = config_lib.load(rundir.RunDir(run).config)
                except Exception:  # not a run of ours, or one from another version
                    continue
                rate = metrics.get("images_per_sec")
                if metrics.get("status") == "complete" and rate:
                    cpu = (metrics.get("cpu") or {}).get("model") or "an unnamed CPU"
                    found.append((run, config, float(rate), cpu))
    return found


def _same(a: config_lib.Config, b: config_lib.Config, precision: str) -> bool:
    return (a.net_name == b.net_name and a.resolved_block == b.resolved_block
            and b.precision == precision)


def estimate(config: config_lib.Config, workdir, precision: str, num_train: int,
             roots=None) -> Optional[tuple[float, str]]:
    """(seconds, what the estimate rests on) for training `config` (validation and test passes
    not counted), or None when no measured rate of the precision is known."""
    workdir = pathlib.Path(workdir)
    local_roots = [workdir.parent.parent, workdir.parent] if roots is None else roots
    iterations = config.train_iterations(num_train)
    images = iterations * config.batch_size
    for where, roots_ in (("this machine's run", local_roots),
                          ("the committed run", [REPOSITORY_DOCS] if roots is None else [])):
        found = [m for m in _measurements(roots_) if m[1].precision == precision]
        same = [m for m in found if _same(config, m[1], precision)]
        if same:
            rate = statistics.median(m[2] for m in same)
            run, cpu = same[0][0], same[0][3]
            runs = f"{where} {_short(run)}" if len(same) == 1 else \
                f"the median of {len(same)} runs, e.g. {where} {_short(run)}"
            basis = f"{config.net_name} {precision} at {rate:.0f} img/s measured by {runs} ({cpu})"
            return images / rate, basis
        if found:  # the nearest measured net, of the same block type if there is one
            run, other, rate, cpu = min(found, key=lambda m: (
                m[1].resolved_block != config.resolved_block,
                abs(relative_cost(m[1]) - relative_cost(config))))
            scale = relative_cost(config) / relative_cost(other)
            basis = (f"{other.net_name} {precision} at {rate:.0f} img/s measured by {where} "
                     f"{_short(run)} ({cpu}), scaled by multiply-adds and activations "
                     f"x{scale:.2f} (rough on a CPU)")
            return images * scale / rate, basis
    return None


def _short(run: pathlib.Path) -> str:
    try:
        return str(run.relative_to(pathlib.Path.cwd()))
    except ValueError:
        return str(run)


def format_duration(seconds: float) -> str:
    minutes = seconds / 60
    if minutes < 90:
        return f"{minutes:.0f} minutes"
    hours = minutes / 60
    return f"{hours:.1f} hours" if hours < 48 else f"{hours / 24:.1f} days"


def line(config: config_lib.Config, workdir, precision: str, *, gpu: bool,
         num_train: Optional[int] = None, roots=None) -> Optional[str]:
    """The line to print before a run, or None (a short run, synthetic data, a GPU without a
    measured rate, or nothing measured at this precision)."""
    if config.dataset == "synthetic":
        return None
    if num_train is None:
        num_train = round(50000 * (1 - config.val_fraction))
    workdir_path = pathlib.Path(workdir)
    if gpu and roots is None:  # the committed rates are CPU ones: only this machine's runs
        roots = [workdir_path.parent.parent, workdir_path.parent]
    found = estimate(config, workdir, precision, num_train, roots=roots)
    iterations = config.train_iterations(num_train)
    if found is None:
        if iterations * config.batch_size < UNKNOWN_RATE_ABOVE_IMAGES:
            return None
        return (f"{workdir}: {iterations:,} iterations; no measured img/s of {precision} "
                f"{'on GPU ' if gpu else ''}to estimate how long (a finished run of this net "
                "beside it will give one): likely hours on a CPU")
    seconds, basis = found
    if seconds < SAY_ABOVE_SECONDS:
        return None
    return (f"{workdir}: {iterations:,} iterations, about {format_duration(seconds)} of training "
            f"(estimate: {basis}; evaluation passes not counted)")
