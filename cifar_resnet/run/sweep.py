"""Sweeps: every net of an experiment file, K seeds each, one run directory per run.

The paper's results are sets of runs (He et al. 2015 Table 6 and Figure 6: ResNet-20 to 1202 and
plain nets; He et al. 2016: v1 vs pre-activation). `plan` lays them out as
`<runs_dir>/<experiment>/<net>/seed<k>`; `run_sweep` trains whatever is not finished with
`train.run_experiment`, which resumes interrupted runs and returns at once for finished ones.
A failing run does not stop the others; failures are returned with their error.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import pathlib
import shlex
import statistics
import subprocess
import sys
from typing import Any, Callable, Optional, Sequence

import yaml

from cifar_resnet.spec.choices import short
from cifar_resnet.spec import config as config_lib, experiments, files, presets, rundir
from cifar_resnet.spec.config import ConfigError

STATES = ("done", "running", "partial", "pending", "failed")


@dataclasses.dataclass(frozen=True)
class PlannedRun:
    """One net and seed of an experiment, and where it trains."""

    experiment: str
    net: str
    seed: int
    workdir: pathlib.Path
    config: Optional[config_lib.Config]  # None when the settings are invalid
    error: Optional[str] = None          # why `config` is None

    def train_args(self) -> list[str]:
        """Arguments of `python -m cifar_resnet train` that train exactly this run."""
        return ["--workdir", str(self.workdir), *_set_flags(self.config)]

    @property
    def command(self) -> str:
        if self.config is None:
            return f"(invalid settings: {self.error})"
        return shlex.join(["python", "-m", "cifar_resnet", "train", *self.train_args()])


def _set_flags(config: config_lib.Config) -> list[str]:
    """`--set key=value` for the net (version, depth) and each field off its preset's default."""
    base = config_lib.Config(**presets.recipe(config.preset)).to_dict()
    flags = []
    for key, value in config.to_dict().items():
        if value != base[key] or key in ("version", "depth") or key == "preset" and value != "paper":
            # YAML reads `--set` values: keep strings YAML would turn into something else
            # ("none" -> None) quoted; lists and numbers in JSON, which YAML reads back.
            plain = isinstance(value, str) and yaml.safe_load(value) == value
            text = value if plain else json.dumps(value, separators=(",", ":"))
            flags += ["--set", f"{key}={text}"]
    return flags


def parse_shard(text: str) -> tuple[int, int]:
    """Parses `i/N` (0 <= i < N) into (i, N)."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard {text!r}: expected i/N, e.g. 0/4") from None
    if not 0 <= index < count:
        raise ConfigError(f"--shard {text!r}: need 0 <= i < N")
    return index, count


def plan(experiment, *, seeds: int = 1, runs_dir="runs", overrides: Optional[dict] = None,
         nets: Optional[Sequence[str]] = None, shard: Optional[tuple[int, int]] = None
         ) -> list[PlannedRun]:
    """The runs of a sweep, in the order they train.

    Args:
        experiment: an experiments.Experiment, or a name or path for `load_experiment`.
        seeds: K; seeds 0..K-1 of every net.
        runs_dir: root of the run directories.
        overrides: config settings that win over the experiment file (`--set`, `--data-dir`).
        nets: a subset of the experiment's nets (default all).
        shard: (i, N): every N-th run starting at i, to spread a sweep over machines.

    Returns:
        Seed-major runs (seed 0 of every net first, so a partial sweep covers every net).
        A run whose settings are invalid has `config=None` and `error` set.

    Raises:
        ConfigError: unknown experiment or net, or seeds < 1.
    """
    if not isinstance(experiment, experiments.Experiment):
        experiment = experiments.load_experiment(experiment)
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1; got {seeds}")
    unknown = [n for n in nets or () if n not in experiment.nets]
    if unknown:
        raise ConfigError(f"experiment {experiment.name!r} has no net(s) {', '.join(unknown)}; "
                          f"its nets: {', '.join(experiment.nets)}")
    runs = []
    for seed in range(seeds):
        for net in experiment.nets:
            if nets and net not in nets:
                continue
            workdir = pathlib.Path(runs_dir) / experiment.name / net / f"seed{seed}"
            try:
                config, error = experiments.run_config(experiment, net, seed, overrides), None
            except ConfigError as e:
                config, error = None, str(e)
                _refuse_bad_overrides(experiment, net, seed, overrides, error)
            runs.append(PlannedRun(experiment.name, net, seed, workdir, config, error))
    if shard is not None:
        index, count = shard
        runs = runs[index::count]
    return runs


def _refuse_bad_overrides(experiment, net: str, seed: int, overrides: Optional[dict],
                          error: str) -> None:
    """Raises ConfigError when `overrides` (the command line's `--set`, `--data-dir`) are what
    make a run's settings invalid: a bad value given once is bad input (exit 2, one line,
    nothing run), not one failed run per net (issue #38). A net that is invalid in the
    experiment file itself stays that run's own failure."""
    if not overrides:
        return
    try:
        experiments.run_config(experiment, net, seed)
    except ConfigError:
        return  # invalid without the overrides too: the experiment file's own problem
    given = " ".join(f"--data-dir {v}" if k == "data_dir" else
                     f"--set {k}={v if isinstance(v, str) else short(v)}"
                     for k, v in overrides.items())
    raise ConfigError(f"{error} (from the command line's {given}; nothing was run)")


def status(run: PlannedRun) -> tuple[str, str]:
    """(state, detail): done, running (its lock's process is alive), partial (started, not
    finished), pending, or failed."""
    if run.config is None:
        return "failed", f"invalid settings: {run.error}"
    try:
        metrics = rundir.read_metrics(run.workdir) or {}
    except rundir.MetricsUnreadable as e:  # damaged: training decides (train.py)
        metrics = {}
        print(f"warning: {e.path} is unreadable ({type(e.cause).__name__})", file=sys.stderr)
    if metrics.get("status") == "complete":
        return "done", f"test error {100 * metrics['final_test_error']:.2f}%"
    if metrics.get("status") == "failed":
        return "failed", metrics.get("reason", f"see {rundir.METRICS}")
    history = rundir.RunDir(run.workdir).history
    rows = max(0, len(history.read_text().splitlines()) - 1) if history.exists() else 0
    detail = (progress(run.config, history) if rows else None) or (
        f"{rows} {_period_word(run.config, rows)} recorded")
    pid = rundir.lock_holder(run.workdir)
    if pid is not None:
        return "running", f"process {pid}, {detail}"
    if rows or rundir.RunDir(run.workdir).started():
        return "partial", detail
    return "pending", ""


RECENT_PERIODS = 5  # the pace of a run under way: the median of its last periods' wall times


def _period_word(config: config_lib.Config, count: int = 2) -> str:
    """What a history row of `config`'s run is to a reader: "pass(es)" where a logging period
    is one pass over the training images (the default), else "period(s)" (`log_every`)."""
    one = config.period_name(config.registry_num_train())
    return one if count == 1 else one + ("es" if one == "pass" else "s")


def progress(config: config_lib.Config, history) -> Optional[str]:
    """How far a started run is, from its history.csv, and how long the rest takes at its
    recent pace, e.g. "46 of 164 passes, 17,986 of 64,124 iterations; about 5.3 hours to go
    at 168 s a pass (the median of the last 5)"; "periods" where `log_every` makes a logging
    period other than a pass; None for a damaged history.csv. The pace is the median step of
    history's wall_time (training and its test pass, time in the process only: not the gaps
    between sessions) over the last RECENT_PERIODS periods, so it is the pace of the machine
    as it was then shared."""
    from cifar_resnet.spec import estimate  # the duration format; no TensorFlow either
    try:
        rows = rundir.read_history(history)
    except rundir.HistoryError:
        return None
    _, periods, _ = config.plan(config.registry_num_train())
    done = int(rows[-1]["iterations"]) if rows else 0
    total = config.train_iterations(config.registry_num_train())
    text = (f"{len(rows)} of {periods} {_period_word(config, periods)}, {done:,} of {total:,} "
            "iterations")
    walls = [r["wall_time"] for r in rows[-RECENT_PERIODS - 1:]]
    paces = [b - a for a, b in zip(walls, walls[1:]) if b > a]  # NaN compares False
    if paces and len(rows) < periods:
        pace = statistics.median(paces)
        text += (f"; about {estimate.format_duration((periods - len(rows)) * pace)} to go at "
                 f"{pace:.0f} s a {_period_word(config, 1)} (the median of the last "
                 f"{len(paces)})")
    return text


def format_status(runs: Sequence[PlannedRun]) -> str:
    """A line per run (state, directory, detail, command) and a count per state."""
    rows = [(run, *status(run)) for run in runs]
    counts = ", ".join(f"{sum(s == state for _, s, _ in rows)} {state}" for state in STATES)
    lines = [f"{len(runs)} run(s): {counts}"]
    for run, state, detail in rows:
        lines.append(f"{state:8} {run.workdir}" + (f"  ({detail})" if detail else ""))
        lines.append(f"         {run.command}")
    return "\n".join(lines)


@dataclasses.dataclass
class SweepResult:
    """What a sweep did: runs trained now, runs already done or running elsewhere, failures."""

    trained: list[PlannedRun] = dataclasses.field(default_factory=list)
    skipped: list[PlannedRun] = dataclasses.field(default_factory=list)
    running: list[PlannedRun] = dataclasses.field(default_factory=list)  # in another process
    failed: list[tuple[PlannedRun, str]] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        lines = [f"sweep: {len(self.trained)} trained, {len(self.skipped)} already done, "
                 f"{len(self.running)} running elsewhere, {len(self.failed)} failed"]
        lines += [f"FAILED {run.workdir}: {error}" for run, error in self.failed]
        return "\n".join(lines)


# What RunLocked says (reliability.run_lock), in-process or in a train process's log.
_LOCKED = "is in use by process"


def _train_in_process(run: PlannedRun) -> Optional[str]:
    """Trains `run` in this process; returns the error, or None on success."""
    import keras
    from cifar_resnet.run import train
    try:
        train.run_experiment(run.config, run.workdir)
        return None
    except Exception as e:  # any failure is this run's, and must not stop the sweep
        return f"{type(e).__name__}: {e}"
    finally:
        keras.backend.clear_session()  # free this run's graphs before the next one


def _train_subprocess(run: PlannedRun) -> Optional[str]:
    """Trains `run` with `python -m cifar_resnet train`, output to `<workdir>/train.log`."""
    run.workdir.mkdir(parents=True, exist_ok=True)
    log_path = rundir.RunDir(run.workdir).train_log
    package_root = str(pathlib.Path(__file__).parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (package_root, os.environ.get("PYTHONPATH")) if p)}
    fd = files.open_nofollow(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)  # not a link
    with os.fdopen(fd, "a") as log:
        code = subprocess.call([sys.executable, "-m", "cifar_resnet", "train", *run.train_args()],
                               stdout=log, stderr=subprocess.STDOUT, env=env)
    if code == 0:
        return None
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    last = (errors or lines or ["no output"])[-1]
    return f"exit status {code}: {last} (log: {log_path})"


def run_sweep(runs: Sequence[PlannedRun], *, jobs: int = 1,
              log: Callable[[str], Any] = print) -> SweepResult:
    """Trains every run that is not done; never stops at a failure.

    Args:
        runs: from `plan`.
        jobs: 1 trains the runs one after the other in this process; N > 1 trains N at a time,
            each in its own `python -m cifar_resnet train` process (output in its train.log).
        log: receives one line as each run starts and ends.

    Returns:
        The SweepResult; `failed` holds each failed run with its error.
    """
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1; got {jobs}")
    result = SweepResult()
    # Finished, or trained by another process (training it here would collide): not ours.
    elsewhere = {"done": result.skipped, "running": result.running}
    todo = []
    for run in runs:
        state, detail = status(run)
        if state in elsewhere:
            elsewhere[state].append(run)
        elif run.config is None:
            result.failed.append((run, detail))
        else:
            todo.append(run)

    def one(i_run):
        i, run = i_run
        state = status(run)[0]
        # Runs were classified when the sweep started: a second sweep over the same folder may
        # have taken or finished this one since. Its lock would refuse us; that is no failure.
        if state in elsewhere:
            log(f"[{i}/{len(todo)}] {run.workdir}: "
                + ("already done" if state == "done" else "running elsewhere"))
            return run, state, None
        log(f"[{i}/{len(todo)}] {run.workdir}: {state}, training")
        error = (_train_in_process if jobs == 1 else _train_subprocess)(run)
        if error and _LOCKED in error:
            # Another sweep took the run between the check above and our lock: not a failure.
            state = "done" if status(run)[0] == "done" else "running"
            log(f"[{i}/{len(todo)}] {run.workdir}: "
                + ("already done" if state == "done" else "running elsewhere"))
            return run, state, None
        log(f"[{i}/{len(todo)}] {run.workdir}: " + (f"FAILED: {error}" if error else "done"))
        return run, "failed" if error else "trained", error

    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        outcomes = (map if jobs == 1 else pool.map)(one, enumerate(todo, 1))
        for run, outcome, error in outcomes:
            if outcome == "failed":
                result.failed.append((run, error))
            else:
                (result.trained if outcome == "trained" else elsewhere[outcome]).append(run)
    return result
