"""Reading sweeps back: run directories into the results table, and layer responses.

He et al. 2015, "Deep Residual Learning for Image Recognition", section 4.2: Table 6 reports the
test error of each net (ResNet-110 as "best (mean +- std)" over 5 runs), and Figure 7 the
"standard deviations (std) of layer responses": "The responses are the outputs of each 3x3 layer,
after BN and before other nonlinearity (ReLU/addition)", on the test set.

A sweep writes `runs/<experiment>/<net>/seed<k>/`, each a run directory of `train.py`.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import pathlib
import re
from typing import Any, Optional

import keras
import numpy as np

from cifar_resnet.data import device_input
from cifar_resnet.spec import architecture, config as config_lib, datasets, files, rundir
from cifar_resnet.nets import models  # noqa: F401  (registers the custom layers load_model needs)
from cifar_resnet.results import evaluate

TABLE_FIELDS = ("experiment", "net", "params", "paper_error", "paper_mean", "paper_std",
                "paper_source", "paper_note", "n", "error_mean", "error_std",
                "best_val_error_mean", "epochs", "status")
REPORT_MARKER = "report.json"  # written by plots.write_report into its output folder


@dataclasses.dataclass(frozen=True)
class Run:
    """One run directory of a sweep.

    Attributes:
        experiment: the sweep's name (`runs/<experiment>/<net>/seed<k>`).
        net: the net's name within the experiment, e.g. "resnet20".
        seed: the seed, from `seed<k>` or else the config.
        path: the run directory.
        config: config.json as a dict.
        metrics: metrics.json as a dict, None while the run has not ended.
        history: history.csv rows (`rundir.read_history`), [] before the first logging period
            ends.
    """

    experiment: str
    net: str
    seed: int
    path: pathlib.Path
    config: dict
    metrics: Optional[dict]
    history: list

    @property
    def status(self) -> str:
        """"complete", "failed", or "incomplete" (running, interrupted or not started)."""
        return (self.metrics or {}).get("status", "incomplete")


def config_net_name(cfg: dict) -> str:
    """The net's name from a config.json dict, e.g. "resnet56_v1" or "plain20_v1"."""
    try:
        return config_lib.Config(**{k: v for k, v in cfg.items() if k in config_lib.FIELDS}
                                 ).net_name
    except (TypeError, ValueError):
        return architecture.net_name(cfg.get("version", 1), cfg.get("depth", ""),
                                     plain=bool(cfg.get("plain")))


def _in_report(path: pathlib.Path, root: pathlib.Path) -> bool:
    """Whether `path` lies in a report's folder below `root` (its copies are not runs)."""
    return any((folder / REPORT_MARKER).exists()
               for folder in path.parents if folder != root and root in folder.parents)


def _name_above(path: pathlib.Path, cfg: dict, known: dict) -> tuple[str, str]:
    """(experiment, net) of a run directory given as, or directly inside, the folder searched.

    The folder above the run names the net when the folder above that is an experiment that
    lists it (`runs/figure6/resnet20/seed0`); otherwise the net is named from its config.json.
    """
    net_folder = path.resolve().parent
    experiment = net_folder.parent.name
    if experiment not in known:
        known[experiment] = load_experiment(experiment) if experiment else None
    exp = known[experiment]
    if exp is not None and net_folder.name in exp.nets:
        return experiment, net_folder.name
    # Not a sweep's run: named after the run's own folder (runs/quick), or its net's folder for
    # runs/<net>/seed<k>; never after a folder further up (the checkout's, issue #26).
    own = path.resolve().name
    return (net_folder.name if re.fullmatch(r"seed\d+", own) else own), config_net_name(cfg)


def find_runs(runs_dir, broken: Optional[list] = None) -> list[Run]:
    """Every run directory (one holding config.json) under `runs_dir`, in path order.

    `runs_dir` may be a folder of sweeps, a sweep (`runs/table6`), a net's folder
    (`runs/table6/resnet20`) or one run directory. The experiment is the folder above
    `<net>/seed<k>`; when that lies above `runs_dir`, the net is named by its folder if the
    experiment lists it, else from its config.json (never "seed0"). Copies of runs inside a
    report's folder (`report.json`, see `plots.write_report`) below `runs_dir` are skipped, so
    reports written beside runs never count twice; a report folder itself can be read: as the
    runs its report.json lists, so files kept beside them (an abandoned run's, say) stay out.
    A list of Runs is returned as it is (the functions that take `runs_dir` take one too).

    A run whose config.json, metrics.json or history.csv cannot be read is left out, so one
    damaged run never hides the others: each is one line in `broken` when a list is given,
    else a warning.

    Raises:
        ConfigError: `runs_dir` is not a directory or holds no readable run.
    """
    if isinstance(runs_dir, (list, tuple)):
        return list(runs_dir)
    root = pathlib.Path(runs_dir)
    if not root.is_dir():
        raise config_lib.ConfigError(f"runs directory {root} does not exist")
    runs, known, damaged = [], {}, []
    listed = None  # in a report's folder: the runs its report.json lists (older ones list none)
    if (root / REPORT_MARKER).is_file():
        names = files.read_json(root / REPORT_MARKER).get("runs")
        listed = None if names is None else {root / name for name in names}
    for config_path in sorted(root.rglob(rundir.CONFIG)):
        path = config_path.parent
        if _in_report(path, root) or listed is not None and path not in listed:
            continue
        try:
            runs.append(_read_run(root, path, known))
        except (OSError, ValueError, TypeError, KeyError, rundir.HistoryError) as e:
            # MetricsUnreadable and JSON errors are ValueErrors; HistoryError names its line.
            reason = " ".join(str(e).split())[:200] or type(e).__name__
            damaged.append(f"{path}: {reason}" if str(path) not in reason else reason)
    if broken is not None:
        broken.extend(damaged)
    else:
        import warnings
        for note in damaged:
            warnings.warn(f"left out the damaged run {note}", stacklevel=2)
    if not runs:
        why = f"; damaged: {damaged[0]}" if damaged else ""
        raise config_lib.ConfigError(f"no run directories (with {rundir.CONFIG}) under {root}"
                                     f"{why}")
    return runs


def _read_run(root: pathlib.Path, path: pathlib.Path, known: dict) -> Run:
    """The Run of the run directory `path` found under `root`."""
    parts = path.relative_to(root).parts
    cfg = files.read_json(path / rundir.CONFIG)
    if not isinstance(cfg, dict):
        raise ValueError(f"{path / rundir.CONFIG} is not a JSON mapping")
    match = re.fullmatch(r"seed(\d+)", path.name)
    if len(parts) >= 3:
        experiment, net = parts[-3], parts[-2]
    elif len(parts) == 2 and not (match and parts[-2] == config_net_name(cfg)
                                  and load_experiment(root.resolve().name) is None):
        experiment, net = root.resolve().name, parts[-2]
    else:  # one run, or `runs/<net>/seed<k>` (train's default folder): not a sweep's run
        experiment, net = _name_above(path, cfg, known)
    return Run(
        experiment=experiment, net=net,
        seed=int(match[1]) if match else cfg.get("seed", 0),
        path=path, config=cfg,
        metrics=rundir.read_metrics(path),  # None while the run has not ended
        history=rundir.read_history(rundir.RunDir(path).history))  # [] before a period ends


def load_experiment(name_or_path, required: bool = False):
    """The `experiments.Experiment` of that name or file (or `name_or_path` itself if it is one).

    Returns None for an unknown name, unless `required` (then ConfigError names the known ones).
    """
    from cifar_resnet.spec import experiments
    if isinstance(name_or_path, experiments.Experiment):
        return name_or_path
    try:
        return experiments.load_experiment(name_or_path)
    except config_lib.ConfigError:
        if required:
            raise
        return None


def net_sort_key(net: str):
    """Plain nets first, then by depth: "plain20" < "plain56" < "resnet20" < "resnet1202"."""
    match = re.match(r"([a-z_-]*)(\d+)(.*)", net)
    return (match[1], int(match[2]), match[3]) if match else (net, 0, "")


def _mean_std(values):
    """Mean and sample std (n - 1, as for the paper's "6.61 +- 0.16" over 5 runs); std None
    for a single value."""
    values = np.asarray(values, float)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else None


def _status(runs: list[Run]) -> str:
    complete = sum(r.status == "complete" for r in runs)
    notes = [f"{complete} complete"] if complete else []
    for r in runs:
        if r.status == "failed":
            notes.append(f"seed{r.seed} failed ({r.metrics.get('reason', 'unknown')})")
        elif r.status != "complete":
            # A history row is a pass unless log_every set another logging period.
            unit = "periods" if r.config.get("log_every") else "passes"
            notes.append(f"seed{r.seed} incomplete ({len(r.history)} {unit})")
    return "; ".join(notes) or "not run"


# Config fields that never make two runs different results: where the data was read from,
# how the work was placed and logged. Every other field, the precision the run trained in and
# its data's content tell runs apart; runs that differ by their seed alone are averaged.
NOT_RECIPE = ("seed", "data_dir", "allow_any_depth", "input_pipeline", "jit_compile",
              "steps_per_execution", "eval_batch_size", "log_every", "deterministic", "strategy")


@dataclasses.dataclass
class Group:
    """Runs of one net that differ by their seed alone: one row of the table, one curve.

    Attributes:
        experiment: the runs' experiment.
        net: the net's name within it.
        name: the row's name: `net`, or, where the experiment holds the net under several
            recipes, precisions or data, `net (what sets this group apart)`.
        title: `name`, prefixed by `experiment/` when the runs come from several experiments
            (results.csv's `net` and the figures' legends).
        runs: the runs, by seed.
        variant: the recipe (config fields but NOT_RECIPE), "precision" and "data" (sha256).
    """

    experiment: str
    net: str
    name: str
    title: str
    runs: list
    variant: dict


def _variant(run: Run) -> dict:
    """What must agree for runs to be averaged: the config but NOT_RECIPE (defaults filled in,
    so an older config.json matches a newer one), the precision trained in, the data's
    content (None when not recorded yet)."""
    cfg = dict(run.config)
    try:
        config = config_lib.Config(**{k: v for k, v in cfg.items() if k in config_lib.FIELDS})
        # Defaults as the runner resolves them: "not given" and its value are one recipe.
        cfg = {**config.to_dict(), "block": config.resolved_block,
               "val_fraction": config.val_fraction,
               "warmup_iterations": config.resolved_warmup}
    except (TypeError, ValueError, AttributeError):
        pass
    if cfg.get("epochs") is not None:
        cfg["iterations"] = None  # ignored when epochs is set (config.py)
    variant = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()
               if k not in NOT_RECIPE}
    variant["precision"] = (run.metrics or {}).get("precision") or cfg.get("precision")
    generated = getattr(datasets.DATASETS.get(cfg.get("dataset")), "release", 0) is None
    if generated:  # synthetic data is a function of the config (its seed too): no identity
        variant["data"] = None
        return variant
    try:
        record = files.read_json(rundir.RunDir(run.path).data)
        variant["data"] = record.get("sha256") if isinstance(record, dict) else None
    except (OSError, ValueError):
        variant["data"] = None
    return variant


def _difference(key: str, value) -> str:
    """One field that sets a group apart, as a reader reads it."""
    if key == "iterations" and value is not None:
        return f"{value:,} it."
    if key == "epochs" and value is not None:
        return f"{value} epochs"
    if key == "precision":
        return str(value)
    if key == "data":
        return f"data sha256:{value[:8]}" if value else "data unrecorded"
    return f"{key}={value}"


def group_runs(runs) -> list[Group]:
    """The runs (or the runs under a folder) in groups that differ by seed alone.

    Runs are grouped by experiment, net and `_variant`; a run whose data is not recorded yet
    (one just started) joins the group of its recipe when that group's data is one data set.
    Groups are in the experiment's order of nets, then by depth, then by name.
    """
    runs = find_runs(runs)
    buckets: dict[tuple, list[tuple[Run, dict]]] = {}
    for run in runs:
        variant = _variant(run)
        recipe = {k: v for k, v in variant.items() if k != "data"}
        key = (run.experiment, run.net, json.dumps(recipe, sort_keys=True, default=str))
        buckets.setdefault(key, []).append((run, variant))
    found: dict[tuple, list[tuple[list, dict]]] = {}
    for (experiment, net, _), members in buckets.items():
        by_data: dict = {}
        for run, variant in members:
            by_data.setdefault(variant["data"], []).append(run)
        if len(by_data) == 2 and None in by_data:  # a run without data.json yet joins
            unrecorded = by_data.pop(None)
            next(iter(by_data.values())).extend(unrecorded)
        for data, group in by_data.items():
            variant = {**members[0][1], "data": data}
            found.setdefault((experiment, net), []).append((group, variant))
    several = len({experiment for experiment, _ in found}) > 1
    groups = []
    for (experiment, net), variants in found.items():
        differ = [k for k in variants[0][1] if len({json.dumps(v[k], default=str)
                                                    for _, v in variants}) > 1]
        for group, variant in variants:
            name = net + (f" ({', '.join(_difference(k, variant[k]) for k in differ)})"
                          if len(variants) > 1 else "")
            groups.append(Group(experiment, net, name,
                                f"{experiment}/{name}" if several else name,
                                sorted(group, key=lambda r: r.seed), variant))
    loaded: dict = {}

    def order(g: Group):
        if g.experiment not in loaded:
            loaded[g.experiment] = load_experiment(g.experiment)
        listed = list(loaded[g.experiment].nets) if loaded[g.experiment] else []
        return (g.experiment, listed.index(g.net) if g.net in listed else len(listed),
                net_sort_key(g.net), g.name)
    return sorted(groups, key=order)


def results_table(runs_dir, experiment=None) -> list[dict[str, Any]]:
    """One row per group of runs that differ by seed alone (`group_runs`): paper error vs
    ours over seeds, as Table 6 of He 2015.

    Only complete runs are averaged; failed and unfinished ones are named in `status`. Errors
    are test errors in %: `error_mean`/`error_std` of the final model (the paper's protocol),
    `best_val_error_mean` of the model with the best validation error. A net trained under
    several recipes, precisions or data has a row for each, named by what sets it apart.

    Args:
        runs_dir: a sweep's folder, e.g. `runs/table6`, or a folder of sweeps (or its Runs).
        experiment: an Experiment or its name; default inferred from each run's experiment
            name. Its nets without runs get a row too, and its paper numbers fill the paper
            columns. When no experiment is found, those columns are empty.

    Returns:
        Rows with keys TABLE_FIELDS; None where there is no value.
    """
    runs = find_runs(runs_dir)
    groups = group_runs(runs)
    if experiment is not None:
        exp = load_experiment(experiment, required=True)
        loaded = {name: exp for name in {r.experiment for r in runs}}
    else:
        loaded = {name: load_experiment(name) for name in {r.experiment for r in runs}}
    for exp_name, exp in loaded.items():
        have = {g.net for g in groups if g.experiment == exp_name}
        for net in (exp.nets if exp else ()):
            if net not in have:
                groups.append(Group(exp_name, net, net, net, [], {}))

    def order(g):
        exp = loaded[g.experiment]
        listed = list(exp.nets) if exp else []
        return (g.experiment, listed.index(g.net) if g.net in listed else len(listed),
                net_sort_key(g.net), g.name)

    rows = []
    for g in sorted(groups, key=order):
        exp = loaded[g.experiment]
        paper = (exp.paper.get(g.net, {}) if exp else {})
        if not paper and g.runs and not (exp and g.net in exp.nets):
            paper = paper_for_config(g.runs[0].config)  # a run of no experiment
        done = [r.metrics for r in g.runs if r.status == "complete"]
        mean, std = _mean_std([100 * m["final_test_error"] for m in done]) if done else (None,
                                                                                         None)
        best = [100 * m["best_test_error"] for m in done if m.get("best_test_error") is not None]
        epochs = sorted({m["epochs"] for m in done if "epochs" in m})
        rows.append(dict(
            experiment=g.experiment, net=g.name,
            params=done[0].get("params") if done else None,
            paper_error=paper.get("error"), paper_mean=paper.get("mean"),
            paper_std=paper.get("std"),
            paper_source=paper.get("source"), paper_note=paper.get("note"),
            n=len(done), error_mean=mean, error_std=std,
            best_val_error_mean=_mean_std(best)[0] if best else None,
            epochs=("-".join(map(str, (epochs[0], epochs[-1]))) if len(epochs) > 1
                    else epochs[0] if epochs else None),
            status=_status(g.runs)))
    return rows


# Where a run outside any experiment finds its paper number, first match first: the papers'
# own tables, then the experiments that quote them.
PAPER_EXPERIMENTS = ("table6", "figure6", "v2", "v2_cifar100", "ablation_shortcuts",
                     "ablation_activations", "keras_example")


def _net_identity(config: config_lib.Config) -> tuple:
    """What makes two configs the same net on the same data (not the schedule or the data's
    path): the net as one value (defaults resolved, He 2016's parameters included) and the
    labels it learns."""
    return config.net, config.dataset, config.label_mode


def paper_for_config(cfg: dict) -> dict:
    """The paper's entry ({"error", "source", ...}) for the net of a config.json dict, looked up
    among the experiments' nets (PAPER_EXPERIMENTS, in order); {} when no paper has the net.

    The number is the paper's, for its own schedule (64k iterations for He 2015/2016); the
    entry's note says so.
    """
    try:
        identity = _net_identity(config_lib.Config(
            **{k: v for k, v in cfg.items() if k in config_lib.FIELDS}))
    except (TypeError, ValueError):
        return {}
    from cifar_resnet.spec import experiments
    folders = list(dict.fromkeys([experiments.experiments_dir(),
                                  experiments.builtin_experiments_dir()]))
    candidates = [folder / f"{name}.py" for name in PAPER_EXPERIMENTS for folder in folders]
    for path in candidates:
        exp = load_experiment(str(path)) if path.is_file() else None
        if exp is None:
            continue
        for net, entry in exp.paper.items():
            if entry.get("error") is None:
                continue
            try:
                other = config_lib.resolve(None, {**exp.recipe, **exp.nets[net]})
            except Exception:
                continue
            if _net_identity(other) == identity:
                length = (f"{exp.recipe['iterations']:,} iterations"
                          if "iterations" in exp.recipe else
                          f"{exp.recipe['epochs']} epochs" if "epochs" in exp.recipe else None)
                schedule = f"after its own schedule ({length})" if length else None
                note = "; ".join(n for n in (entry.get("note"), schedule) if n)
                return {**entry, "note": note}
    return {}


def _pm(mean, std):
    if mean is None:
        return ""
    return f"{mean:.2f}" + (f" ± {std:.2f}" if std is not None else "")


def _paper(row):
    """ "6.97", "6.97 ± 0.20", or "6.43 (6.61 ± 0.16)" for a best run and the mean of runs."""
    if row["paper_mean"] is not None:
        return f"{row['paper_error']:.2f} ({_pm(row['paper_mean'], row['paper_std'])})"
    return _pm(row["paper_error"], row["paper_std"])


def format_markdown(rows: list[dict]) -> str:
    """The rows as a Markdown table (errors in %, params in millions)."""
    show_exp = len({r["experiment"] for r in rows}) > 1
    head = (["experiment"] if show_exp else []) + [
        "net", "params", "paper error (%)", "source", "ours (%) mean ± std", "n",
        "best-by-val (%)", "epochs", "runs"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        source = "; ".join(s for s in (r["paper_source"], r["paper_note"]) if s)
        cells = ([r["experiment"]] if show_exp else []) + [
            r["net"], f"{r['params'] / 1e6:.2f}M" if r["params"] else "",
            _paper(r), source, _pm(r["error_mean"], r["error_std"]),
            str(r["n"]), _pm(r["best_val_error_mean"], None),
            "" if r["epochs"] is None else str(r["epochs"]), r["status"]]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Ours: test error of each run's final model (the paper's protocol). best-by-val: "
              "test error at the logging period of lowest validation error, only for runs that "
              "held out a validation split (val_fraction > 0; the default trains on all 50k "
              "images)."]
    return "\n".join(lines) + "\n"


def write_table(rows: list[dict], out_dir) -> tuple[pathlib.Path, pathlib.Path]:
    """Writes `results.md` (format_markdown) and `table.csv` (its raw values) into `out_dir`.

    Returns:
        The paths of results.md and table.csv.
    """
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md, table = out / "results.md", out / "table.csv"
    files.atomic_write_text(md, format_markdown(rows))
    _write_csv(table, TABLE_FIELDS, rows)
    return md, table


def _write_csv(path, fields, rows) -> None:
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if r[k] is None else r[k] for k in fields} for r in rows)
    files.atomic_write_text(path, text.getvalue())


# results.csv: each net's final errors in %, the short form of a reproduction's result.
FINAL_FIELDS = ("net", "train_error", "test_error", "exact1000_error", "exact1000_std_error",
                "tta_error")


def _final_evaluations(run: Run) -> dict:
    """The final model's test errors in % from the run's evaluations (`report --evaluate`):
    exact1000_error (with `head` 1000) and tta_error (flip), each None where not made."""
    found = {}
    for key, spec in rundir.FINAL_EVALUATIONS.items():
        path = rundir.RunDir(run.path).evaluation(*spec)
        found[key] = files.read_json(path) if path.is_file() else {}
    head = found["plain"].get("head") or {}
    return {"exact1000_error": (100 * head["error"] if head.get("num_images") ==
                                evaluate.EXACT_TEST_IMAGES else None),
            "tta_error": 100 * found["flip"]["error"] if "error" in found["flip"] else None}


def final_errors(runs_dir) -> list[dict]:
    """Rows of FINAL_FIELDS, one per group of complete runs that differ by seed alone
    (`group_runs`; `net` is the group's title, as in results.md and the figures), in the
    experiment's order.

    train_error and test_error are the final model's (metrics.json), in %, the mean over the
    group's complete seeds. exact1000_error and tta_error come from its final evaluations
    (`evaluate --checkpoint final --head 1000`, and `--tta flip`; `report --evaluate` writes
    them), the mean over seeds when every complete seed has them, else None;
    exact1000_std_error is the binomial standard error of one run's error on 1,000 images,
    sqrt(e (1 - e) / 1000), at that mean.
    """
    rows = []
    for group in sorted(group_runs(runs_dir),
                        key=lambda g: (g.experiment, net_sort_key(g.net), g.name)):
        done = [r for r in group.runs if r.status == "complete"]
        if not done:
            continue
        row = dict.fromkeys(FINAL_FIELDS)
        row.update(net=group.title,
                   **{k: 100 * float(np.mean([r.metrics[f"final_{k}"] for r in done]))
                      for k in ("train_error", "test_error")})
        evaluations = [_final_evaluations(r) for r in done]
        for key in ("exact1000_error", "tta_error"):
            values = [e[key] for e in evaluations]
            if None not in values:
                row[key] = float(np.mean(values))
        if row["exact1000_error"] is not None:
            e = row["exact1000_error"] / 100
            row["exact1000_std_error"] = 100 * float(np.sqrt(e * (1 - e) / evaluate.EXACT_TEST_IMAGES))
        rows.append(row)
    return rows


def write_final_errors(runs_dir, path) -> pathlib.Path:
    """Writes `final_errors(runs_dir)` as CSV, in % to 2 decimals, to `path` (a report's
    results.csv); returns it."""
    path = pathlib.Path(path)
    _write_csv(path, FINAL_FIELDS, [{k: v if not isinstance(v, float) else f"{v:.2f}"
                                     for k, v in row.items()} for row in final_errors(runs_dir)])
    return path


# ----------------------------------------------------------------------------------------------
# Layer responses (He 2015 Figure 7).


# A 3x3 convolution of the residual branch or the stem, as `models` names them: `stem_conv`,
# `stage{s}_block{b}_conv{i}` (models.py module docstring).
_CONV_NAME = re.compile(r"(stem|stage\d+_block\d+)_conv(\d*)")


def response_layers(model: keras.Model) -> list[str]:
    """Names of the BatchNormalization layers applied right after each 3x3 conv, in order.

    Found by the documented layer names of `models`: a 3x3 `stem_conv` or `stageS_blockB_convI`
    is followed by `stem_bn` or `stageS_blockB_bnI` in the conv-BN-ReLU layers of v1 and plain
    nets (Figure 7's nets). Basic blocks give depth - 1 layers (1 + 2 per block; the classifier
    is the last of the "depth" weighted layers), bottleneck blocks 1 + 1 per block. Their outputs
    are the responses "after BN and before other nonlinearity (ReLU/addition)". Shortcut
    projections (1x1, `..._shortcut_conv`) are not in the residual branch and never match. A
    name is kept only if that BN's input is that conv's output (public `Layer.input`/`output`),
    so a renamed or rewired net gives no wrong layer. In a pre-activation (v2) net the BN after
    conv I is `..._bnI+1`, which feeds a ReLU inside the unit: a different quantity (and the BN
    opening the next unit is not counted); the paper plots v1 only.
    """
    names = []
    for layer in model.layers:
        match = _CONV_NAME.fullmatch(layer.name)
        if not match or tuple(getattr(layer, "kernel_size", ())) != (3, 3):
            continue
        prefix, index = match[1], match[2]
        candidates = [f"{prefix}_bn{index}"]
        if index:  # BN-ReLU-conv units: the next layer's BN
            candidates.append(f"{prefix}_bn{int(index) + 1}")
        for name in candidates:
            try:
                bn = model.get_layer(name)
            except ValueError:
                continue
            if bn.input is layer.output:
                names.append(name)
                break
    return names


def layer_responses(model: keras.Model, images, batch_size: int = 250,
                    layers: Optional[list[str]] = None) -> np.ndarray:
    """The std of each 3x3 layer's response (after BN, before ReLU/addition), in layer order.

    The std of a layer is taken per channel, over all images and positions, then averaged over
    channels: BN normalises per channel, so this is the scale the layer's learned gamma and
    the data give each channel, comparable across layers of different widths. Moments are
    accumulated batch by batch (law of total variance) in float64, so memory stays one batch.

    Args:
        model: a v1/plain net built by `models` (or loaded from a run's .keras file).
        images: normalized float32 images (N, 32, 32, 3), or a tf.data.Dataset or PyDataset
            of image batches or of (images, labels) batches, as `make_test_dataset` gives.
        batch_size: images per forward pass when `images` is an array.
        layers: BN layer names; default `response_layers(model)`.

    Returns:
        float64 array, one std per layer of `layers`.
    """
    layers = response_layers(model) if layers is None else layers
    if not layers:
        raise ValueError(f"model {model.name} has no BatchNormalization after a 3x3 conv")
    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in layers])

    count, means, sq = 0, None, None  # per layer: sum of n * mean and of n * (var + mean^2)
    for x in _image_batches(images, batch_size):
        outputs = probe.predict_on_batch(x)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        n = int(x.shape[0]) * int(x.shape[1]) * int(x.shape[2])
        stats = [(y.mean(axis=(0, 1, 2)), y.var(axis=(0, 1, 2)))
                 for y in (np.asarray(y, np.float64) for y in outputs)]
        batch_means = [n * m for m, _ in stats]
        batch_sq = [n * (v + m**2) for m, v in stats]
        means = batch_means if means is None else [a + b for a, b in zip(means, batch_means)]
        sq = batch_sq if sq is None else [a + b for a, b in zip(sq, batch_sq)]
        count += n
    if not count:
        raise ValueError("no images to compute layer responses on")
    return np.array([np.sqrt(np.maximum(s / count - (m / count)**2, 0)).mean()
                     for m, s in zip(means, sq)])


def _image_batches(images, batch_size):
    """Image batches of an array, a PyDataset or a tf.data.Dataset (labels dropped)."""
    if isinstance(images, keras.utils.PyDataset):
        batches = (images[i] for i in range(len(images)))
    elif isinstance(images, np.ndarray):
        batches = (images[i:i + batch_size] for i in range(0, len(images), batch_size))
    else:
        batches = images
    for batch in batches:
        batch = batch[0] if isinstance(batch, (tuple, list)) else batch
        yield np.asarray(batch, np.float32)


def make_test_dataset(cfg: dict, batch_size: int = 250, run_dir=None, data_dir=None):
    """The test split of a run, rebuilt from its config.json dict, normalized as in training.

    With `run_dir`, the data is the one the run's data.json names, checked by its content
    (`rundata.load_splits`), or `data_dir` when given. Without, a relative `data_dir` of the
    config is tried from the working directory, then from the repository root (runs are made
    from the root; notebooks run in `notebooks/`).
    """
    config = config_lib.Config(**{k: v for k, v in cfg.items() if k in config_lib.FIELDS})
    if run_dir is not None:
        from cifar_resnet.results import rundata
        splits = rundata.load_splits(run_dir, config, data_dir)
    else:
        data_dir = data_dir or config.data_dir
        if data_dir and not pathlib.Path(data_dir).expanduser().exists():
            root_relative = pathlib.Path(__file__).resolve().parents[2] / data_dir
            data_dir = str(root_relative) if root_relative.exists() else data_dir
        splits = datasets.load_splits(config, data_dir)
    if keras.backend.backend() != "tensorflow":  # batches of (images,), numpy-normalized
        return device_input.NormalizedImages(splits.test[0], mean=splits.mean, std=splits.std,
                                             batch_size=batch_size)
    from cifar_resnet.data import pipeline  # tf.data: the TensorFlow backend only
    return pipeline.make_dataset(*splits.test, batch_size=batch_size, mean=splits.mean,
                             std=splits.std, training=False)


def report_copy(runs_root, run: Run) -> pathlib.Path:
    """Where a report keeps its copy of `run`: `runs_root/<experiment>/<net>/seed<k>`, a layout
    `find_runs` reads back with the same experiment and net names."""
    return pathlib.Path(runs_root) / run.experiment / run.net / f"seed{run.seed}"


def copy_run(run: Run, target) -> pathlib.Path:
    """Copies a run's small files (rundir.REPORT_FILES and its final evaluations' JSON; not its
    checkpoints) to `target`; returns it."""
    target = pathlib.Path(target)
    target.mkdir(parents=True, exist_ok=True)
    pairs = [(run.path / name, target / name) for name in rundir.REPORT_FILES]
    pairs += [(rundir.RunDir(run.path).evaluation(*spec), rundir.RunDir(target).evaluation(*spec))
              for spec in rundir.FINAL_EVALUATIONS.values()]
    for source, copy in pairs:
        if source.exists() and source.resolve() != copy.resolve():
            copy.parent.mkdir(parents=True, exist_ok=True)
            # Never through a link either way: a planted one would copy out the file it names.
            files.atomic_write_bytes(copy, files.read_bytes(source))
    return target


def run_layer_responses(run: Run, model_file: str = rundir.FINAL, batch_size: int = 250,
                        cache_dir=None, data_dir=None) -> tuple[list[str], np.ndarray]:
    """Layer responses of a run's model on its test set; never written into the run.

    A `layer_responses.json` in `cache_dir` or in the run directory is reused while it names
    the same model file and that file is unchanged, or when the model is absent (a report's
    copy of a run keeps the responses, not the checkpoint). Otherwise they are computed from
    the model and, when `cache_dir` is given, written there.

    The model is checked against the run's config and evaluated on the data its data.json
    names (or `data_dir`), as `evaluate` does (`rundata`).

    Returns:
        (layer names, stds), as `response_layers` and `layer_responses`.

    Raises:
        ConfigError: neither the model nor saved responses exist, or the model is damaged or
            another net than the run's.
        DataError: the run's data is not found, or is not the data it trained on.
    """
    model_path = run.path / model_file
    stamp = model_path.stat().st_mtime_ns if model_path.exists() else None
    for folder in (cache_dir, run.path):
        cache = pathlib.Path(folder) / rundir.LAYER_RESPONSES if folder is not None else None
        if cache is not None and cache.exists():
            saved = files.read_json(cache)
            if saved.get("model") == model_file and stamp in (None, saved.get("model_mtime_ns")):
                return saved["layers"], np.asarray(saved["std"])
    if stamp is None:
        raise config_lib.ConfigError(f"{run.path}: no {model_file} and no {rundir.LAYER_RESPONSES}; "
                                     "is the run complete?")
    from cifar_resnet.results import rundata
    config = config_lib.Config(**{k: v for k, v in run.config.items() if k in config_lib.FIELDS})
    model = rundata.load_checkpoint(model_path, config)
    names = response_layers(model)
    stds = layer_responses(model, make_test_dataset(run.config, batch_size, run.path, data_dir),
                           layers=names)
    if cache_dir is not None:
        pathlib.Path(cache_dir).mkdir(parents=True, exist_ok=True)
        files.write_json(pathlib.Path(cache_dir) / rundir.LAYER_RESPONSES, {
            "model": model_file, "model_mtime_ns": stamp,
            "statistic": "per-channel std over test images and positions, averaged over "
                         "channels", "layers": names, "std": stds.tolist()})
    return names, stds
