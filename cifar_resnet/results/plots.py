"""Figures 6 and 7 of He et al. 2015, "Deep Residual Learning for Image Recognition" (sec 4.2).

Figure 6: "Training on CIFAR-10. Dashed lines denote training error, and bold lines denote testing
error" against iterations (1e4), plain nets (left), ResNets (middle), ResNet-110 and 1202 (right).
Figure 7: "Standard deviations (std) of layer responses on CIFAR-10 ... after BN and before
nonlinearity. Top: the layers are shown in their original order. Bottom: the responses are
ranked in descending order."

Figures are `matplotlib.figure.Figure` objects (no pyplot state), saved as PNG and PDF; notebooks
display the returned figure. `write_report` is what `python -m cifar_resnet report` runs.
"""

from __future__ import annotations

import math
import pathlib
import re
from typing import Optional

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cifar_resnet.spec import config as config_lib, files, paper, rundir
from cifar_resnet.results import analysis, paired
from cifar_resnet.results import evaluate as evaluate_lib
from cifar_resnet.spec.config import ConfigError

PAPER_YLIM = 20  # % error, the top of Figure 6's axes


def _depth(net: str) -> int:
    match = re.search(r"\d+", net)
    return int(match[0]) if match else 0


def _colours(nets, groups=None) -> dict[str, tuple]:
    """One colour per depth, shared by plain and residual nets of that depth (as the paper).

    With `groups` (analysis.Group), keyed by each group's title: groups of one depth that
    differ by more than plain/residual (a recipe, precision or data) get colours of their own.
    """
    if groups is None:
        keys = {n: (_depth(n), "") for n in nets}
    else:
        keys = {g.title: (_depth(g.net), g.name[len(g.net):]) for g in groups}
    shades = sorted(set(keys.values()))
    cmap = colormaps["viridis"]
    return {n: cmap(0.85 * shades.index(k) / max(len(shades) - 1, 1)) for n, k in keys.items()}


def _panels(experiment, nets) -> dict[str, list[str]]:
    """The experiment's panels, else plain nets and residual nets."""
    if experiment is not None and experiment.panels:
        return experiment.panels
    plain = [n for n in nets if n.startswith("plain")]
    return {k: v for k, v in (("plain", plain), ("resnet", [n for n in nets if n not in plain]))
            if v}


def _curves(runs) -> Optional[dict[str, np.ndarray]]:
    """Iterations and train/test error (%) averaged over seeds, cut to the shortest history."""
    histories = [r.history for r in runs if r.history]
    if not histories:
        return None
    length = min(map(len, histories))
    cols = {k: np.array([[row[k] for row in h[:length]] for h in histories])
            for k in ("iterations", "error", "test_error")}
    return {"iterations": cols["iterations"][0], "train": 100 * cols["error"].mean(0),
            "test": 100 * cols["test_error"].mean(0)}


# Data identities (data.json's sha256 of the arrays) that have a name. This project's shared
# copy is a reconstruction of CIFAR-10 in which 55,000 of the 60,000 images carry JPEG
# quality-75 loss (README "Speed"); every committed figure was trained on it.
KNOWN_DATA = {
    "671a4007d25af5001d1e081e1b2cc9b759177743a1e7d3ccc8ce6e27916b2efa":
        "reconstructed CIFAR-10 (55k of 60k images JPEG q75)",
}
DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "synthetic": "synthetic data"}


def _seeds(seeds) -> str:
    seeds = sorted(set(seeds))
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"seeds {seeds[0]}-{seeds[-1]}"
    return ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(map(str, seeds))


def _schedule(run) -> Optional[str]:
    """A run's learning-rate schedule in a few words: "lr 0.1, x0.1 at 50%, x0.01 at 75%"."""
    cfg = run.config
    try:
        config = config_lib.Config(**{k: v for k, v in cfg.items() if k in config_lib.FIELDS})
    except (TypeError, ValueError):
        return None
    text = f"lr {config.lr:g}"
    if config.lr_schedule == "step":
        steps = ", ".join(f"x{f:g} at {m:.0%}" for m, f in zip(config.lr_milestones,
                                                                  config.lr_factors))
        text += f", {steps}" if steps else ", constant"
    else:
        text += f", {config.lr_schedule} schedule"
    if cfg.get("warmup_iterations"):
        text += f" (warm-up {config.warmup_iterations} it. at {config.warmup_lr:g})"
    if config.plateau_patience:
        text += f", on plateaus x{config.plateau_factor:.3g}"
    return text


def describe_runs(runs, *, seeds: bool = True) -> str:
    """What a figure of `runs` shows, for its subtitle: schedule length (iterations, epochs as
    passes, batch) and learning rates, precision, data and seeds per curve (curves are means over
    the seeds named; a curve is a group of runs that differ by seed alone)."""
    def values(get):
        found = []
        for run in runs:
            value = get(run)
            if value is not None and value not in found:
                found.append(value)
        return found

    def per_pass(run):
        cfg = run.config
        frac = cfg.get("val_fraction") or 0.0
        n = {"synthetic": cfg.get("synthetic_train")}.get(cfg.get("dataset"), 50000)
        return math.ceil(round(n * (1 - frac)) / cfg.get("batch_size", 128)) if n else None

    def length(run):
        if run.metrics and run.metrics.get("iterations"):
            return int(run.metrics["iterations"])
        if {"iterations", "epochs"} & run.config.keys():
            try:  # the runner's plan: the paper's 64k in whole passes trains as 64,124
                config = config_lib.load(rundir.RunDir(run.path).config)
                return config.train_iterations(config.registry_num_train())
            except (ConfigError, OSError, ValueError):
                pass
        return int(run.history[-1]["iterations"]) if run.history else None

    lengths = values(length)
    parts = []
    if lengths:
        text = " / ".join(f"{n:,}" for n in sorted(lengths)) + " iterations"
        passes = values(lambda r: (length(r) / per_pass(r)) if per_pass(r) and length(r) else None)
        if len(passes) == 1:
            text += f" ({passes[0]:.3g} epochs)"
        batches = values(lambda r: r.config.get("batch_size"))
        if len(batches) == 1:
            text += f", batch {batches[0]}"
        parts.append(text)
    schedules = values(_schedule)
    if schedules:
        parts[-1:] = [(parts[-1] + ", " if parts else "") + " / ".join(schedules)]
    precisions = values(lambda r: (r.metrics or {}).get("precision") or r.config.get("precision"))
    parts.append(" / ".join(p for p in precisions if p != "auto") or "precision not recorded")
    data = []
    for run in runs:
        record = None
        try:
            record = files.read_json(rundir.RunDir(run.path).data)
        except (OSError, ValueError):
            pass
        name = DATASET_NAMES.get(run.config.get("dataset", "cifar10"), run.config.get("dataset"))
        if record and record.get("sha256") in KNOWN_DATA:
            name = KNOWN_DATA[record["sha256"]]
        elif record and record.get("sha256"):
            name += f" (data sha256:{record['sha256'][:8]})"
        frac = run.config.get("val_fraction") or 0.0
        if run.config.get("dataset") != "synthetic":
            name += ", all 50k training images" if not frac else f", {1 - frac:.0%} of training"
        if name not in data:
            data.append(name)
    parts.append("; ".join(data))
    if seeds:
        by_net: dict[str, list[int]] = {}
        for group in analysis.group_runs(list(runs)):
            for run in group.runs:
                if run.history:
                    by_net.setdefault(group.title, []).append(run.seed)
        groups: dict[str, list[str]] = {}
        for net, net_seeds in by_net.items():
            groups.setdefault(_seeds(net_seeds), []).append(net)
        def curve(seeds_text):
            return seeds_text if seeds_text.startswith("seed ") else f"mean of {seeds_text}"
        if len(groups) == 1:
            parts.append(curve(next(iter(groups))))
        elif groups:
            parts.append("; ".join(f"{', '.join(v)}: {curve(k)}" for k, v in groups.items()))
    # Two lines: the schedule and precision, then the data and seeds.
    return " · ".join(parts[:2]) + "\n" + " · ".join(parts[2:])


def _paper_label(net: str, entry: dict, axis_end: Optional[float]) -> str:
    """A paper line's legend entry; says when the paper's number comes from a longer schedule
    than the axis shows."""
    error = entry["error"]
    if str(entry.get("source", "")).startswith("He") and axis_end is not None \
            and axis_end < paper.ITERATIONS:
        return (f"{net} paper {error}% after {paper.ITERATIONS // 1000}k it. "
                f"(here {int(axis_end):,} it.)")
    return f"{net} paper ({error}%)"


def _paper_numbers(experiment, runs) -> dict[str, dict]:
    """Net -> the paper's entry: the experiment's PAPER, else (runs of no experiment) looked
    up by each net's architecture (analysis.paper_for_config)."""
    if experiment is not None:
        return experiment.paper
    found = {}
    for run in runs:
        if run.net not in found:
            found[run.net] = analysis.paper_for_config(run.config)
    return {net: entry for net, entry in found.items() if entry}


def _save(fig: Figure, out_dir, stem: str) -> list[pathlib.Path]:
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.png", out / f"{stem}.pdf"]
    for path in paths:  # each all or nothing: never half a figure
        files.save_figure(fig, path, dpi=150, bbox_inches="tight")
    return paths


def figure6(runs_dir, experiment=None, out_dir=None, *, ylim=None) -> Optional[Figure]:
    """Training (dashed) and test (bold) error against iterations, one panel per net group.

    Each net's curve is the mean over its seeds (complete or not), per logging period (a row of
    history.csv). The paper's final test error of a net (the experiment's PAPER), where it has
    one, is a dotted line in the net's colour. The y-axis is 0-20% like the paper's when every point fits; otherwise it is
    widened, in steps of 10%, until no curve is cut.

    Args:
        runs_dir: the sweep's folder, e.g. `runs/figure6`.
        experiment: an Experiment or its name; default the folder's name. Gives the panels
            (its `panels`), else one panel of plain and one of residual nets.
        out_dir: when given, writes figure6.png and figure6.pdf there.
        ylim: (bottom, top) in %, instead of the automatic range.

    Returns:
        The Figure, or None when no run has finished a logging period.
    """
    runs = analysis.find_runs(runs_dir)
    experiment = analysis.load_experiment(experiment or runs[0].experiment,
                                          required=experiment is not None)
    groups = analysis.group_runs(runs)  # a curve per group: runs that differ by seed alone
    by_net = {g.title: g.runs for g in groups}
    net_of = {g.title: g.net for g in groups}
    curves = {t: c for t, group in by_net.items() if (c := _curves(group)) is not None}
    panels = {name: [g.title for g in groups if g.net in nets and g.title in curves]
              for name, nets in _panels(experiment, sorted({g.net for g in groups},
                                                           key=analysis.net_sort_key)).items()}
    panels = {name: nets for name, nets in panels.items() if nets}
    if not panels:
        return None
    paper = {t: entry for t in by_net
             if (entry := _paper_numbers(experiment, runs).get(net_of[t]))}
    if ylim is None:
        shown = {n for nets in panels.values() for n in nets}
        worst = max(max(np.nanmax(curves[n]["train"]), np.nanmax(curves[n]["test"]),
                        paper.get(n, {}).get("error", 0)) for n in shown)
        ylim = (0, PAPER_YLIM if worst <= PAPER_YLIM else min(100, 10 * math.ceil(worst / 10)))
    colours = _colours(list(curves), [g for g in groups if g.title in curves])
    fig = Figure(figsize=(4.5 * len(panels), 3.6), layout="constrained")
    # One iteration axis, as the paper's: a net still training is drawn against the others.
    axes = fig.subplots(1, len(panels), squeeze=False, sharex=True)[0]
    # The paper's x unit is 1e4 iterations; tiny runs (tests, smoke) would show only zeros.
    axis_end = max(c["iterations"][-1] for c in curves.values())
    scale = 1e4 if axis_end >= 2000 else 1
    for ax, (name, nets) in zip(axes, panels.items()):
        drawn = set()
        for net in nets:
            c = curves[net]
            x = c["iterations"] / scale
            marker = "o" if len(x) < 10 else None  # a run of one period is a single point
            ax.plot(x, c["train"], "--", color=colours[net], linewidth=1, marker=marker,
                    markersize=3)
            ax.plot(x, c["test"], "-", color=colours[net], linewidth=2.2, marker=marker,
                    markersize=5, label=net)
            if net in paper and paper[net].get("error") is not None \
                    and net_of[net] not in drawn:  # once per net: its groups share it
                drawn.add(net_of[net])
                ax.axhline(paper[net]["error"], linestyle=":", linewidth=1.5, color=colours[net],
                           label=_paper_label(net_of[net], paper[net], axis_end))
        ax.set(xlabel="iter. (1e4)" if scale == 1e4 else "iter.", ylim=ylim, title=name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", title="dashed: train, bold: test"
                  + (", dotted: paper" if any(n in paper for n in nets) else ""),
                  title_fontsize="x-small")
    axes[0].set_ylabel("error (%)")
    axes[0].set_xlim(left=0)  # after every panel is drawn: the right end fits them all
    fig.suptitle(describe_runs([r for net in curves for r in by_net[net]]), fontsize="small")
    if out_dir is not None:
        _save(fig, out_dir, "figure6")
    return fig


def figure7(runs_dir, out_dir=None, *, nets=None, max_depth: int = 110,
            batch_size: int = 250, responses_root=None, data_dir=None,
            skipped: Optional[list] = None) -> Optional[Figure]:
    """Std of layer responses of plain (dashed) vs residual (solid) nets on the test set.

    Top: in layer order; bottom: sorted in descending order (He 2015 Figure 7). Uses each net's
    lowest complete seed's final.keras, through `analysis.run_layer_responses`, or the
    `layer_responses.json` kept with a report's copy of the run.

    Args:
        runs_dir: the sweep's folder, or a report's folder.
        out_dir: when given, writes figure7.png and figure7.pdf there.
        responses_root: when given, each run's responses are kept in
            `analysis.report_copy(responses_root, run)` (a report's copy of the run), and reused
            from there; nothing is written into run directories.
        nets: net names to plot; default every complete v1 net of depth <= `max_depth` (the
            paper's Figure 7 stops at 110; a 1202-layer forward pass over the test set is slow).
        max_depth: see `nets`.
        batch_size: images per forward pass.
        data_dir: the test data; default the data each run's data.json names.
        skipped: when a list, a run whose model or data cannot be read is left out and named
            there in one line; otherwise that error is raised.

    Returns:
        The Figure, or None when no selected net has a complete run.
    """
    from cifar_resnet.spec import datasets
    chosen: dict[str, analysis.Run] = {}
    found = analysis.group_runs(analysis.find_runs(runs_dir))
    for group in found:  # a group's lowest complete seed
        for run in group.runs:
            wanted = (group.net in nets if nets is not None else
                      run.config.get("version") == 1 and run.config.get("depth", 0) <= max_depth)
            if wanted and run.status == "complete":
                chosen[group.title] = run
                break
    responses = {}
    for title, run in chosen.items():
        cache = (analysis.report_copy(responses_root, run) if responses_root is not None
                 else None)
        try:
            responses[title] = analysis.run_layer_responses(
                run, batch_size=batch_size, cache_dir=cache, data_dir=data_dir)[1]
        except (ConfigError, datasets.DataError) as e:
            if skipped is None:
                raise
            skipped.append(f"figure7 without {title}: {e}")
    chosen = {t: r for t, r in chosen.items() if t in responses}
    if not chosen:
        return None
    names = list(chosen)
    colours = _colours(names, [g for g in found if g.title in chosen])
    fig = Figure(figsize=(7, 6), layout="constrained")
    top, bottom = fig.subplots(2, 1)
    for net in names:
        stds = responses[net]
        style = dict(color=colours[net], linestyle="--" if chosen[net].config.get("plain")
                     else "-", linewidth=1.5, label=net)
        index = np.arange(1, len(stds) + 1)
        top.plot(index, stds, **style)
        bottom.plot(index, np.sort(stds)[::-1], **style)
    data_names = sorted({DATASET_NAMES.get(r.config.get("dataset", "cifar10"),
                                           r.config.get("dataset")) for r in chosen.values()})
    fig.suptitle(f"Standard deviations (std) of layer responses on the {' / '.join(data_names)} "
                 "test set\n"
                 "(3x3 layers, after BN, before ReLU/addition; dashed: plain, solid: ResNet)\n"
                 + describe_runs(list(chosen.values()), seeds=False)
                 + f" · final models, {_seeds(r.seed for r in chosen.values())}",
                 fontsize="medium")
    top.set(title="original order", xlabel="layer index (original)",
            ylabel="std of layer response")
    bottom.set(title="sorted by magnitude", xlabel="layer index (sorted by magnitude)",
               ylabel="std of layer response")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        ax.set_xlim(left=0)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    top.legend(fontsize="small", ncols=2)
    if out_dir is not None:
        _save(fig, out_dir, "figure7")
    return fig


def error_vs_time(runs_dir, experiment=None, out_dir=None) -> Optional[Figure]:
    """Test error against wall-clock time, one line per run: time to accuracy (issue #4).

    The paper's error of each net (the experiment's PAPER) is a dotted line in the net's colour.

    Args:
        runs_dir: the sweep's folder, e.g. `runs/fast`.
        experiment: an Experiment or its name; default the folder's name.
        out_dir: when given, writes error_vs_time.png and .pdf there.

    Returns:
        The Figure, or None when no run has finished a logging period.
    """
    runs = [r for r in analysis.find_runs(runs_dir) if r.history]
    if not runs:
        return None
    experiment = analysis.load_experiment(experiment or runs[0].experiment,
                                          required=experiment is not None)
    paper = _paper_numbers(experiment, runs)
    groups = analysis.group_runs(runs)  # a colour per group: runs that differ by seed alone
    # The paper's line once per net, in the colour of the net's first group.
    paper = {g.title: paper[g.net] for g in {g.net: g for g in reversed(groups)}.values()
             if g.net in paper}
    colours = _colours([g.title for g in groups], groups)
    fig = Figure(figsize=(5, 3.6), layout="constrained")
    ax = fig.subplots()
    for group in groups:
        for run in group.runs:
            minutes = [row["wall_time"] / 60 for row in run.history]
            error = [100 * row["test_error"] for row in run.history]
            ax.plot(minutes, error, "-o", markersize=2.5, color=colours[group.title],
                    label=f"{group.title} seed {run.seed}")
    axis_end = max(row["iterations"] for run in runs for row in run.history)
    for net in colours:
        if net in paper and paper[net].get("error") is not None:
            ax.axhline(paper[net]["error"], linestyle=":", color=colours[net],
                       label=_paper_label(next(g.net for g in groups if g.title == net),
                                          paper[net], axis_end))
    ax.set(xlabel="wall time (minutes)", ylabel="test error (%)", ylim=(0, None), xlim=(0, None))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.suptitle(describe_runs(runs, seeds=False), fontsize="x-small")
    if out_dir is not None:
        _save(fig, out_dir, "error_vs_time")
    return fig


def default_report_dir(runs_dir) -> pathlib.Path:
    """`report/<name>` beside `runs_dir`: never inside a run, and distinct per input.

    `runs/figure6` -> `runs/report/figure6`; `runs/figure6/resnet20/seed0` ->
    `runs/figure6/resnet20/report/seed0`.
    """
    source = pathlib.Path(runs_dir).resolve()
    return source.parent / "report" / source.name


def write_paired(runs, out) -> list[pathlib.Path]:
    """paired.md and paired.csv: each pair of paper.COMPARISONS among `runs`, on all test images
    and on the exact 1,000 (results/paired.py); nothing when no pair has per-image results."""
    pairs, notes = paired.from_runs(runs, paper.COMPARISONS, head=evaluate_lib.EXACT_TEST_IMAGES)
    if not pairs and not notes:
        return []
    files.atomic_write_text(out / "paired.md", paired.markdown(pairs, notes))
    files.atomic_write_text(out / "paired.csv", paired.csv_text(pairs))
    return [out / "paired.md", out / "paired.csv"]


def write_report(runs_dir, out_dir=None, experiment=None, *, evaluate: bool = False,
                 data_dir=None) -> dict:
    """The table (results.md, table.csv), each group's final errors (results.csv), Figures 6
    and 7 and test error against wall time (PNG, PDF) of a sweep, a net's folder or one run,
    and a self-contained copy of its data.

    Writes only into `out_dir` (and, with `evaluate`, each complete run's eval/): besides the
    table and figures, `runs/<experiment>/<net>/seed<k>/` holds each run's config.json,
    metrics.json, history.csv, data.json, the layer responses of Figure 7 and its final
    evaluations (not the checkpoints), so the report folder can be committed and read again by
    `report` and the notebooks. `report.json` marks the folder as a report.

    All or nothing: everything is written into a temporary folder beside `out_dir` first and
    moved into `out_dir` only once it is complete (each file by an atomic rename), so a report
    that fails leaves `out_dir` as it was. Files of `out_dir` the report does not write (a
    README) are kept. The runs are read once, so a report written inside the folder it reads
    is never read back as runs. Runs whose files cannot be read are left out and listed.

    Args:
        runs_dir: the sweep's folder, e.g. `runs/figure6`; a net's folder; a run directory;
            or a report's folder (to redraw it).
        out_dir: default `default_report_dir(runs_dir)`, beside the input.
        experiment: an Experiment or its name; default the folder's name, if it is one.
        evaluate: first evaluate each complete run's final model on the test set, as
            `evaluate --checkpoint final --head 1000`, with and without `--tta flip`, into the
            run's eval/; results.csv then has the exact-1,000 and the flip-TTA errors.
        data_dir: the test data for `evaluate` and Figure 7; default the data each run's
            data.json names.

    Returns:
        {"markdown": the table, "files": paths written, "skipped": notes on figures without
        data, "broken": one line per run left out because it cannot be read}.

    Raises:
        ConfigError: no readable runs, or `out_dir` lies inside one of the runs.
    """
    import os
    import shutil
    import tempfile

    out = pathlib.Path(out_dir) if out_dir is not None else default_report_dir(runs_dir)
    broken: list[str] = []
    runs = analysis.find_runs(runs_dir, broken)
    resolved = out.resolve()
    for run in runs:
        if run.path.resolve() == resolved or run.path.resolve() in resolved.parents:
            raise ConfigError(
                f"--out {out} lies inside the run directory {run.path}; choose a folder outside "
                "it (default: report/ beside the input)")
    skipped: list[str] = []
    if evaluate:
        for run in runs:
            if run.status == "complete" and rundir.RunDir(run.path).final.is_file():
                for which in rundir.FINAL_EVALUATIONS:
                    evaluate_lib.evaluate_final(run.path, which, data_dir=data_dir)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        stage = pathlib.Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.report-"))
    except OSError as e:
        raise files.write_error(out, e) from None
    try:
        # Marked as a report from the start: a search of the folder above never counts it.
        files.write_json(stage / analysis.REPORT_MARKER, {"runs": []})
        rows = analysis.results_table(runs, experiment)
        names = [analysis.write_table(rows, stage)[0], stage / "table.csv"]
        names.append(analysis.write_final_errors(runs, stage / "results.csv"))
        copies = stage / "runs"
        for run in runs:
            copy = analysis.copy_run(run, analysis.report_copy(copies, run))
            kept = analysis.report_copy(out / "runs", run) / rundir.LAYER_RESPONSES
            if kept.is_file() and not (copy / rundir.LAYER_RESPONSES).exists():
                # the last report's cache, never through a link
                files.atomic_write_bytes(copy / rundir.LAYER_RESPONSES, files.read_bytes(kept))
        names.append(copies)
        for stem, fig, why in (
                ("figure6", lambda: figure6(runs, experiment, stage),
                 "no run has finished a logging period"),
                ("figure7", lambda: figure7(runs, stage, responses_root=copies,
                                            data_dir=data_dir, skipped=skipped),
                 "no complete v1 run"),
                ("error_vs_time", lambda: error_vs_time(runs, experiment, stage),
                 "no run has finished a logging period")):
            if fig() is None:
                skipped.append(f"{stem}: {why}")
            else:
                names += [stage / f"{stem}.png", stage / f"{stem}.pdf"]
        names += write_paired(runs, stage)
        files.write_json(stage / analysis.REPORT_MARKER, {
            "source": str(runs_dir), "runs": [str(analysis.report_copy("runs", r)) for r in runs],
            "files": [str(p.relative_to(stage)) for p in names],
            **({"broken": broken} if broken else {})})
        # Complete: into place. The run copies replace the last report's as one folder.
        out.mkdir(parents=True, exist_ok=True)
        if (out / "runs").exists():
            os.replace(out / "runs", stage / "runs.old")
        for name in [p.relative_to(stage) for p in names] + [pathlib.Path(analysis.REPORT_MARKER)]:
            os.replace(stage / name, out / name)
    except OSError as e:
        raise files.write_error(out, e) from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    written = [out / p.relative_to(stage) for p in names]
    return {"markdown": analysis.format_markdown(rows), "files": written, "skipped": skipped,
            "broken": broken}
