"""The report half of the experiments: results table, layer responses, Figures 6 and 7, CLI."""

import csv
import json
import os

import keras
import numpy as np
import pytest

from cifar_resnet.results import analysis, evaluate, plots
from cifar_resnet.spec import config as config_lib, files, rundir
from cifar_resnet.nets import models
from cifar_resnet.__main__ import main

@pytest.mark.slow
def test_table_of_a_sweep_has_a_row_per_net_with_only_complete_runs_averaged(sweep):
    rows = analysis.results_table(sweep)
    assert [r["net"] for r in rows] == ["plain8", "resnet8", "resnet14"]  # experiment order
    plain, resnet, unrun = rows
    metrics = files.read_json(sweep / "resnet8" / "seed0" / "metrics.json")
    assert resnet["n"] == 1 and resnet["error_std"] is None
    assert resnet["error_mean"] == pytest.approx(100 * metrics["final_test_error"])
    # All training images by default: no validation split, so no best-by-validation numbers.
    assert "best_test_error" not in metrics and resnet["best_val_error_mean"] is None
    assert resnet["paper_error"] == 10.0 and resnet["paper_source"] == "made up for the test"
    assert resnet["params"] == 75_290 and resnet["epochs"] == 1
    assert plain["n"] == 1 and plain["paper_error"] is None
    assert plain["status"] == "1 complete; seed1 incomplete (0 passes)"
    assert unrun["n"] == 0 and unrun["error_mean"] is None and unrun["status"] == "not run"


def _fake_run(root, seed, metrics):
    path = root / "resnet20" / f"seed{seed}"
    path.mkdir(parents=True)
    files.write_json(path / "config.json", {"seed": seed, "version": 1, "depth": 20})
    if metrics is not None:
        files.write_json(path / "metrics.json", metrics)


def test_mean_and_sample_std_over_seeds_from_hand_made_metrics(tmp_path):
    root = tmp_path / "handmade"
    for seed, (final, best) in enumerate([(0.10, 0.11), (0.12, 0.13)]):
        _fake_run(root, seed, {"status": "complete", "final_test_error": final,
                               "best_test_error": best, "params": 272_474, "epochs": 182})
    _fake_run(root, 2, {"status": "failed", "reason": "loss is NaN or Inf", "epoch": 3})
    _fake_run(root, 3, None)
    [row] = analysis.results_table(root)
    # 10% and 12%: mean 11, sample std sqrt(((10-11)^2 + (12-11)^2) / 1) = sqrt(2).
    assert row["n"] == 2 and row["error_mean"] == pytest.approx(11.0)
    assert row["error_std"] == pytest.approx(2 ** 0.5)
    assert row["best_val_error_mean"] == pytest.approx(12.0)
    assert row["status"] == ("2 complete; seed2 failed (loss is NaN or Inf); "
                             "seed3 incomplete (0 passes)")
    # No experiment lists the run, but the net has a paper number (issue #26).
    assert row["experiment"] == "handmade" and row["paper_error"] == 8.75
    assert row["paper_source"] == "He 2015 Table 6"

    md, table = analysis.write_table([row], tmp_path / "out")
    assert ("| resnet20 | 0.27M | 8.75 | He 2015 Table 6; after its own schedule (64,000 "
            "iterations) | 11.00 ± 1.41 | 2 | 12.00 | 182 |") in md.read_text()
    assert "final model (the paper's protocol)" in md.read_text()
    with table.open() as f:
        [saved] = list(csv.DictReader(f))
    assert float(saved["error_mean"]) == pytest.approx(11.0) and saved["paper_error"] == "8.75"


def test_a_missing_or_empty_runs_dir_is_a_config_error(tmp_path):
    with pytest.raises(config_lib.ConfigError, match="does not exist"):
        analysis.find_runs(tmp_path / "nope")
    with pytest.raises(config_lib.ConfigError, match="no run directories"):
        analysis.results_table(tmp_path)


def test_response_layers_are_the_bns_after_each_3x3_conv():
    # v1 basic, depth 6n+2: the stem and 2 per block, 3n blocks: 6n+1 = depth - 1 layers.
    for depth, plain in ((8, False), (14, True), (20, False)):
        names = analysis.response_layers(models.build_model(1, depth, plain=plain))
        assert len(names) == depth - 1
        assert names[:3] == ["stem_bn", "stage1_block1_bn1", "stage1_block1_bn2"]
    # Bottleneck: only the middle 3x3 conv of each unit (bn2), plus the stem: 1 + 3n.
    names = analysis.response_layers(models.build_model(1, 29, block="bottleneck"))
    assert len(names) == 1 + 9 and names[1] == "stage1_block1_bn2"
    # Pre-activation (v2): the BN after a unit's 3x3 conv is the unit's next one (bn3 of a
    # 1-3-1 bottleneck); no stem BN.
    assert analysis.response_layers(models.build_model(2, 11)) == [
        f"stage{s}_block1_bn3" for s in (1, 2, 3)]


def test_layer_responses_match_a_direct_numpy_std(sweep):
    [run] = [r for r in analysis.find_runs(sweep) if r.net == "resnet8" and r.seed == 0]
    model = keras.saving.load_model(run.path / "final.keras", compile=False)
    images = np.concatenate([x for x, _ in analysis.make_test_dataset(run.config)])
    stds = analysis.layer_responses(model, images, batch_size=48)  # 128 = 48 + 48 + 32
    assert stds.shape == (7,) and np.all(stds > 0)
    probe = keras.Model(model.inputs, model.get_layer("stage2_block1_bn2").output)
    direct = probe.predict(images, verbose=0).astype(np.float64).std(axis=(0, 1, 2)).mean()
    names = analysis.response_layers(model)
    assert stds[names.index("stage2_block1_bn2")] == pytest.approx(direct, rel=1e-4)


def test_layer_responses_are_kept_in_the_cache_dir_never_in_the_run(sweep, tmp_path):
    [run] = [r for r in analysis.find_runs(sweep) if r.net == "plain8" and r.seed == 0]
    before = sorted(p.name for p in run.path.iterdir())
    names, stds = analysis.run_layer_responses(run, cache_dir=tmp_path)
    assert sorted(p.name for p in run.path.iterdir()) == before
    cache = files.read_json(tmp_path / rundir.LAYER_RESPONSES)
    assert cache["layers"] == names and cache["std"] == pytest.approx(stds.tolist())
    files.write_json(tmp_path / rundir.LAYER_RESPONSES, {**cache, "std": [1.0] * len(names)})
    assert analysis.run_layer_responses(run, cache_dir=tmp_path)[1].tolist() == [1.0] * len(names)
    os.utime(run.path / "final.keras")  # a newer model invalidates the cache
    assert analysis.run_layer_responses(run, cache_dir=tmp_path)[1] == pytest.approx(stds)


def test_figures_follow_the_experiment_panels_and_the_papers_styles(sweep):
    fig6 = plots.figure6(sweep)
    assert [ax.get_title() for ax in fig6.axes] == ["plain", "resnet"]
    for ax in fig6.axes:
        train_line, test_line = ax.lines[:2]
        assert train_line.get_linestyle() == "--" and test_line.get_linestyle() == "-"
        assert test_line.get_linewidth() > train_line.get_linewidth()
    # The paper's final error of resnet8 (the experiment's PAPER): a dotted line at 10%.
    [paper] = [line for line in fig6.axes[1].lines if line.get_linestyle() == ":"]
    assert list(paper.get_ydata()) == [10.0, 10.0] and "paper" in paper.get_label()
    assert not [line for line in fig6.axes[0].lines if line.get_linestyle() == ":"]
    fig7 = plots.figure7(sweep)
    top, bottom = fig7.axes
    assert [line.get_label() for line in top.lines] == ["plain8", "resnet8"]
    for line_top, line_bottom in zip(top.lines, bottom.lines):
        assert list(line_bottom.get_ydata()) == sorted(line_top.get_ydata(), reverse=True)
    # Labelled as the paper's Figure 7: std of layer responses against the layer index, in the
    # original order (top) and sorted by magnitude (bottom).
    assert "std" in fig7.get_suptitle() and "layer responses" in fig7.get_suptitle()
    assert (top.get_title(), bottom.get_title()) == ("original order", "sorted by magnitude")
    assert top.get_xlabel() == "layer index (original)"
    assert bottom.get_xlabel() == "layer index (sorted by magnitude)"
    assert top.get_ylabel() == bottom.get_ylabel() == "std of layer response"


def _handmade_history(root, net, errors):
    path = root / net / "seed0"
    path.mkdir(parents=True)
    files.write_json(path / "config.json", {"seed": 0, "version": 1, "depth": 20})
    rows = [",".join(rundir.HISTORY_FIELDS)]
    for i, (train_error, test_error) in enumerate(errors):
        rows.append(f"{i},{100 * (i + 1)},0.1,1.0,{train_error},,,1.0,{test_error},1.0,{i + 1.0}")
    (path / "history.csv").write_text("\n".join(rows) + "\n")


@pytest.mark.parametrize("errors, top", [
    ([(0.15, 0.18), (0.08, 0.12)], 20),             # fits the paper's 0-20%: kept
    ([(0.35, 0.30), (0.08, 0.12)], 40),             # an early point above 20%: widened
    ([(0.9, 0.9), (0.72, 0.713)], 90),              # a short run: every point shown
])
def test_figure6_is_the_papers_0_to_20_unless_a_curve_would_be_cut(tmp_path, errors, top):
    _handmade_history(tmp_path / "handmade", "resnet20", errors)
    fig = plots.figure6(tmp_path / "handmade")
    (ax,) = fig.axes
    assert ax.get_ylim() == (0, top)
    assert max(max(line.get_ydata()) for line in ax.lines) <= ax.get_ylim()[1]


def test_figure6_panels_share_the_iteration_axis_while_a_net_is_still_training(tmp_path):
    """As in the paper's Figure 6, plain and residual panels span the same iterations, so a
    plain net that has just started is drawn against the residual nets' full length."""
    _handmade_history(tmp_path / "handmade", "resnet20", [(0.5, 0.5)] * 30)
    _handmade_history(tmp_path / "handmade", "plain20", [(0.6, 0.6)] * 3)
    fig = plots.figure6(tmp_path / "handmade")
    plain, residual = fig.axes
    assert (plain.get_title(), residual.get_title()) == ("plain", "resnet")
    assert plain.get_xlim() == residual.get_xlim()
    assert plain.get_xlim()[1] >= residual.lines[0].get_xdata()[-1] == 0.3  # 3,000 iter. (1e4)


def test_error_vs_time_plots_each_run_history_and_the_paper_line(sweep):
    fig = plots.error_vs_time(sweep, "figtest")
    (ax,) = fig.axes
    curves = {line.get_label(): line for line in ax.lines}
    assert sorted(curves) == ["plain8 seed 0", "resnet8 paper (10.0%)", "resnet8 seed 0"]
    [run] = [r for r in analysis.find_runs(sweep) if r.net == "resnet8" and r.history]
    line = curves["resnet8 seed 0"]
    assert list(line.get_xdata()) == pytest.approx([r["wall_time"] / 60 for r in run.history])
    assert list(line.get_ydata()) == pytest.approx([100 * r["test_error"] for r in run.history])
    assert list(curves["resnet8 paper (10.0%)"].get_ydata()) == [10.0, 10.0]


def _snapshot(folder):
    """Every file under `folder` and its modification time."""
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_report_cli_writes_table_figures_and_a_readable_copy_only_to_out(sweep, tmp_path, capsys):
    before = _snapshot(sweep)
    assert main(["report", str(sweep), "--out", str(tmp_path)]) == 0
    assert _snapshot(sweep) == before  # nothing written inside the runs
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("| net | params | paper error (%)")
    assert "| resnet8 |" in out and out == (tmp_path / "results.md").read_text()
    for name in ("results.csv", "table.csv", "figure6.png", "figure6.pdf", "figure7.png",
                 "figure7.pdf", "error_vs_time.png", "error_vs_time.pdf", "report.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert (tmp_path / "figure6.png").read_bytes()[:4] == b"\x89PNG"
    copy = tmp_path / "runs" / "figtest" / "resnet8" / "seed0"
    for name in ("config.json", "metrics.json", "history.csv", "data.json",
                 rundir.LAYER_RESPONSES):
        assert (copy / name).is_file(), name
    assert not list(copy.glob("*.keras"))
    # The report's folder is self-contained: report and the figures read it back alike.
    assert analysis.results_table(tmp_path) == analysis.results_table(sweep)
    again = tmp_path.parent / "again"
    assert main(["report", str(tmp_path), "--out", str(again)]) == 0
    capsys.readouterr()
    assert (again / "results.md").read_text() == out
    assert (again / "figure7.png").is_file()
    assert (files.read_json(again / "runs" / "figtest" / "resnet8" / "seed0"
                            / rundir.LAYER_RESPONSES)
            == files.read_json(copy / rundir.LAYER_RESPONSES))


@pytest.mark.slow
def test_report_of_a_run_or_a_net_names_the_net_and_writes_beside_it(sweep, tmp_path, capsys):
    import shutil
    run = sweep / "resnet8" / "seed0"
    before = _snapshot(sweep)
    for given in (run, sweep / "resnet8"):
        assert main(["report", str(given)]) == 0
        assert "| resnet8 |" in capsys.readouterr().out
        assert [r.net for r in analysis.find_runs(given)] == ["resnet8"]
        out = given.parent / "report" / given.name
        assert (out / "results.md").is_file() and (out / "figure6.png").is_file()
        shutil.rmtree(given.parent / "report")
    assert _snapshot(sweep) == before
    # Outside an experiment's folder the net is named from its config.json.
    lone = tmp_path / "lone" / "seed0"
    shutil.copytree(run, lone)
    [found] = analysis.find_runs(lone)
    assert found.net == "resnet8_v1"
    with pytest.raises(config_lib.ConfigError, match="inside the run directory"):
        plots.write_report(lone, lone / "report")


def test_report_cli_rejects_a_bad_runs_dir_in_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err
    assert not (tmp_path / "missing").exists()


def test_final_errors_csv_has_one_row_per_complete_net_in_percent(sweep, tmp_path):
    path = analysis.write_final_errors(sweep, tmp_path / "results.csv")
    header, *rows = path.read_text().splitlines()
    assert header == ("net,train_error,test_error,exact1000_error,exact1000_std_error,"
                      "tta_error")
    by_net = {r.split(",")[0]: r.split(",")[1:] for r in rows}
    assert sorted(by_net) == ["plain8", "resnet8"]  # plain8 seed1 is not complete
    metrics = json.loads((sweep / "resnet8" / "seed0" / "metrics.json").read_text())
    # Without the final evaluations (`report --evaluate`) their columns are empty.
    assert by_net["resnet8"] == [f"{100 * metrics['final_train_error']:.2f}",
                                 f"{100 * metrics['final_test_error']:.2f}", "", "", ""]


@pytest.mark.slow
def test_report_evaluate_fills_results_csv_from_the_final_models(sweep, tmp_path, monkeypatch,
                                                                capsys):
    import shutil
    runs = tmp_path / "figtest"
    # One net's folder (--evaluate writes into its runs' eval/); seed1 of plain8 is unfinished.
    shutil.copytree(sweep / "resnet8", runs / "resnet8")
    shutil.copytree(sweep / "plain8" / "seed1", runs / "plain8" / "seed1")
    # The synthetic test split has 128 images; its first 100 stand for the exact 1,000.
    monkeypatch.setattr(evaluate, "EXACT_TEST_IMAGES", 100)
    out = tmp_path / "report"
    assert main(["report", str(runs), "--out", str(out), "--evaluate"]) == 0
    capsys.readouterr()
    with (out / "results.csv").open() as f:
        rows = {r["net"]: r for r in csv.DictReader(f)}
    assert sorted(rows) == ["resnet8"]  # complete runs only
    assert not (runs / "plain8" / "seed1" / rundir.EVAL).exists()
    run = rundir.RunDir(runs / "resnet8" / "seed0")
    plain = files.read_json(run.evaluation("test", "final"))
    flip = files.read_json(run.evaluation("test", "final", "flip"))
    metrics = files.read_json(run.metrics)
    row = rows["resnet8"]
    # The evaluation rebuilds the test split as training saw it: the same final error.
    assert plain["error"] == pytest.approx(metrics["final_test_error"], abs=1e-6)
    assert float(row["test_error"]) == pytest.approx(100 * plain["error"], abs=0.005)
    assert float(row["exact1000_error"]) == pytest.approx(100 * plain["head"]["error"], abs=0.005)
    assert plain["head"]["num_images"] == 100
    e = plain["head"]["error"]
    assert float(row["exact1000_std_error"]) == pytest.approx(100 * (e * (1 - e) / 100) ** 0.5,
                                                              abs=0.005)
    assert float(row["tta_error"]) == pytest.approx(100 * flip["error"], abs=0.005)
    assert flip["error_without_tta"] == plain["error"]
    # The report keeps the evaluations, so results.csv reads back from the report alone.
    copy = rundir.RunDir(out / "runs" / "figtest" / "resnet8" / "seed0")
    assert files.read_json(copy.evaluation("test", "final", "flip")) == flip
    again = analysis.write_final_errors(out, tmp_path / "again.csv")
    assert again.read_text() == (out / "results.csv").read_text()
    # The raw table of results.md is table.csv.
    with (out / "table.csv").open() as f:
        assert [r["net"] for r in csv.DictReader(f)] == ["plain8", "resnet8", "resnet14"]
    assert (out / "results.md").read_text().count("| resnet8 |") == 1


# Issue #26: a lone run's report is named after the run or its net, with the paper's number.

def _lone_run(path, **cfg):
    path.mkdir(parents=True)
    files.write_json(path / "config.json", {"seed": 0, "version": 1, **cfg})
    files.write_json(path / "metrics.json", {"status": "complete", "final_test_error": 0.6568,
                                             "params": 272_474, "epochs": 1})


@pytest.mark.parametrize("layout, experiment", [("runs/quick", "quick"),
                                                ("runs/resnet20_v1/seed0", "resnet20_v1")])
def test_a_lone_run_is_named_after_its_folder_or_net_never_the_checkout(layout, experiment,
                                                                        tmp_path):
    checkout = tmp_path / "cifar-resnet"
    _lone_run(checkout / layout, depth=20)
    [run] = analysis.find_runs(checkout / layout)
    assert (run.experiment, run.net) == (experiment, "resnet20_v1")
    assert "cifar-resnet" not in str(analysis.report_copy("runs", run))
    [row] = analysis.results_table(checkout / layout)
    assert row["paper_error"] == 8.75 and row["paper_source"] == "He 2015 Table 6"


@pytest.mark.parametrize("cfg, error, source", [
    ({"depth": 20, "plain": True}, None, None),  # plain nets: in the paper's figures only
    ({"depth": 56}, 6.97, "He 2015 Table 6"),
    ({"depth": 164, "version": 2}, 5.46, "He 2016 Table 3"),
    ({"depth": 50}, None, None),
    ({"depth": 20, "shortcut": "B"}, None, None),
])
def test_paper_numbers_are_found_by_the_net(cfg, error, source):
    entry = analysis.paper_for_config({"version": 1, **cfg})
    assert entry.get("error") == error and entry.get("source") == source


# Issue #26: figures say what they are.

CPU_REPRO = os.path.join(os.path.dirname(__file__), os.pardir, "docs", "cpu-repro")


def _texts(fig):
    legends = [t.get_text() for ax in fig.axes if ax.get_legend()
               for t in ax.get_legend().get_texts()]
    return fig._suptitle.get_text() if fig._suptitle else "", legends


def test_figure6_of_the_committed_report_says_schedule_precision_data_and_seeds(monkeypatch):
    monkeypatch.delenv("CIFAR_RESNET_EXPERIMENTS", raising=False)  # cpu_repro's paper numbers
    title, legends = _texts(plots.figure6(CPU_REPRO))
    assert "7,820 iterations (20 epochs), batch 128" in title
    assert "mixed_bfloat16" in title
    assert "reconstructed CIFAR-10" in title and "all 50k training images" in title
    assert "plain20, plain56: seed 0" in title
    assert "resnet20, resnet56: mean of seeds 0, 1" in title
    # The paper's 64k-iteration errors against a 7,820-iteration axis say so.
    assert "resnet20 paper 8.75% after 64k it. (here 7,820 it.)" in legends
    assert not [t for t in legends if "paper" in t and "64k" not in t]


def test_a_run_under_way_is_titled_with_the_length_the_runner_will_train(tmp_path):
    # The paper's 64k iterations run as whole passes: 164 of 391 = 64,124, the length a
    # finished run's metrics.json records. A run still training has only its config.json.
    root = tmp_path / "full"
    for net, metrics in (("resnet20", {"status": "complete", "iterations": 64_124}),
                         ("resnet56", None)):
        path = root / net / "seed0"
        path.mkdir(parents=True)
        files.write_json(path / "config.json", {"version": 1, "depth": int(net[6:]),
                                                "iterations": 64_000, "val_fraction": 0.0})
        if metrics:
            files.write_json(path / "metrics.json", metrics)
    title = plots.describe_runs(analysis.find_runs(root))
    assert title.startswith("64,124 iterations (164 epochs), lr 0.1, x0.1 at 50%, x0.01 at 75% · ")


def test_a_report_folder_reads_as_the_runs_its_report_json_lists(tmp_path):
    report = tmp_path / "report"
    for folder in ("runs/exp/resnet20/seed0", "abandoned/resnet20"):
        (report / folder).mkdir(parents=True)
        files.write_json(report / folder / "config.json", {"version": 1, "depth": 20})
    files.write_json(report / analysis.REPORT_MARKER, {"runs": ["runs/exp/resnet20/seed0"]})
    [run] = analysis.find_runs(report)
    assert (run.experiment, run.net, run.path) == (
        "exp", "resnet20", report / "runs" / "exp" / "resnet20" / "seed0")
    # A report.json written before it listed its runs: every run directory below.
    files.write_json(report / analysis.REPORT_MARKER, {"files": []})
    assert len(analysis.find_runs(report)) == 2


def test_error_vs_time_and_figure7_say_what_they_are(monkeypatch):
    monkeypatch.delenv("CIFAR_RESNET_EXPERIMENTS", raising=False)
    title, legends = _texts(plots.error_vs_time(CPU_REPRO))
    assert "7,820 iterations" in title and "mixed_bfloat16" in title
    assert "resnet56 paper 6.97% after 64k it. (here 7,820 it.)" in legends
    title7 = plots.figure7(CPU_REPRO)._suptitle.get_text()
    assert "7,820 iterations" in title7 and "final models, seed 0" in title7


def test_a_paper_line_at_the_papers_length_is_plain():
    entry = {"error": 8.75, "source": "He 2015 Table 6"}
    assert plots._paper_label("resnet20", entry, 64124) == "resnet20 paper (8.75%)"
    assert "after 64k it. (here 100 it.)" in plots._paper_label("resnet20", entry, 100)
    keras_entry = {"error": 7.84, "source": "Keras example"}
    assert plots._paper_label("resnet20_v1", keras_entry, 100) == "resnet20_v1 paper (7.84%)"


def test_a_lone_runs_figures_draw_its_nets_paper_number(tmp_path, monkeypatch):
    monkeypatch.delenv("CIFAR_RESNET_EXPERIMENTS", raising=False)
    run = tmp_path / "cifar-resnet" / "runs" / "quick"
    _lone_run(run, depth=20, batch_size=128, precision="float32")
    row = {k: 0.7 for k in rundir.HISTORY_FIELDS}
    row.update(period=0, iterations=100, wall_time=60.0)
    (run / "history.csv").write_text(",".join(rundir.HISTORY_FIELDS) + "\n"
                                     + ",".join(str(row[k]) for k in rundir.HISTORY_FIELDS) + "\n")
    for fig in (plots.figure6(run), plots.error_vs_time(run)):
        title, legends = _texts(fig)
        assert "resnet20_v1 paper 8.75% after 64k it. (here 100 it.)" in legends
        assert title.startswith("100 iterations") and "float32" in title


# Issue #40 item 1: only runs that differ by their seed alone are averaged.

def _recipe_run(root, net, seed, error, **cfg):
    path = root / net / f"seed{seed}"
    path.mkdir(parents=True)
    files.write_json(path / "config.json", {"seed": seed, "version": 1, "depth": 20, **cfg})
    files.write_json(path / "metrics.json", {"status": "complete", "final_test_error": error,
                                             "final_train_error": error / 2, "params": 272_474,
                                             "epochs": 2, "precision": cfg.get("precision",
                                                                               "float32")})
    rows = [",".join(rundir.HISTORY_FIELDS)]
    for i in range(2):
        row = {k: error for k in rundir.HISTORY_FIELDS}
        row.update(period=i, iterations=50 * (i + 1), wall_time=10.0 * (i + 1))
        rows.append(",".join(str(row[k]) for k in rundir.HISTORY_FIELDS))
    (path / "history.csv").write_text("\n".join(rows) + "\n")
    return path


def _recipes(root):
    """resnet20 at 782 iterations, seeds 0 and 1; at 100 iterations; and in bfloat16."""
    _recipe_run(root, "resnet20", 0, 0.40, iterations=782)
    _recipe_run(root, "resnet20", 1, 0.42, iterations=782)
    _recipe_run(root, "resnet20", 2, 0.60, iterations=100)
    _recipe_run(root, "resnet20", 3, 0.44, iterations=782, precision="mixed_bfloat16")
    return root


def test_runs_of_other_recipes_or_precisions_are_separate_rows_named_apart(tmp_path):
    root = _recipes(tmp_path / "mixed")
    rows = {r["net"]: r for r in analysis.results_table(root)}
    assert sorted(rows) == ["resnet20 (100 it., float32)", "resnet20 (782 it., float32)",
                            "resnet20 (782 it., mixed_bfloat16)"]
    assert rows["resnet20 (782 it., float32)"]["n"] == 2
    assert rows["resnet20 (782 it., float32)"]["error_mean"] == pytest.approx(41.0)
    assert rows["resnet20 (100 it., float32)"]["error_mean"] == pytest.approx(60.0)
    # results.csv has the same rows, names and means.
    csv_rows = {r["net"]: r for r in analysis.final_errors(root)}
    assert sorted(csv_rows) == sorted(rows)
    for name, row in rows.items():
        assert csv_rows[name]["test_error"] == pytest.approx(row["error_mean"])
    # So do the figures: a curve per row, a legend entry per run.
    [ax] = plots.figure6(root).axes
    assert sorted(line.get_label() for line in ax.lines if line.get_linestyle() == "-") == \
        sorted(rows)
    [ax] = plots.error_vs_time(root).axes
    labels = [line.get_label() for line in ax.lines if "paper" not in line.get_label()]
    assert len(labels) == len(set(labels)) == 4
    assert [line.get_label() for line in ax.lines if "paper" in line.get_label()] == [
        "resnet20 paper 8.75% after 64k it. (here 100 it.)"]  # once per net
    assert "resnet20 (100 it., float32) seed 2" in labels
    title = plots.describe_runs(analysis.find_runs(root))
    assert "resnet20 (782 it., float32): mean of seeds 0, 1" in title


def test_runs_of_several_experiments_are_named_by_experiment_in_results_csv(tmp_path):
    _recipe_run(tmp_path / "runs" / "a", "resnet20", 0, 0.40, iterations=782)
    _recipe_run(tmp_path / "runs" / "b", "resnet20", 0, 0.60, iterations=782)
    names = [r["net"] for r in analysis.final_errors(tmp_path / "runs")]
    assert names == ["a/resnet20", "b/resnet20"]


def test_the_committed_reports_keep_their_row_names(monkeypatch):
    monkeypatch.delenv("CIFAR_RESNET_EXPERIMENTS", raising=False)
    for report in (CPU_REPRO, os.path.join(os.path.dirname(CPU_REPRO), "full-repro")):
        with open(os.path.join(report, "results.csv")) as f:
            committed = [r["net"] for r in csv.DictReader(f)]
        assert [r["net"] for r in analysis.final_errors(report)] == committed
        assert sorted(r["net"] for r in analysis.results_table(report) if r["n"]) == committed


# Issue #38 items 8 and 12: a damaged run never hides the others; a report is all or nothing.

def test_a_damaged_run_is_listed_in_one_line_and_the_others_reported(tmp_path, capsys):
    root = _recipes(tmp_path / "mixed")
    (root / "resnet20" / "seed2" / "metrics.json").write_text("{not json")
    (root / "resnet20" / "seed3" / "history.csv").write_text("epoch,iterations\nx,y\n")
    assert main(["report", str(root), "--out", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    damaged = [line for line in captured.err.splitlines() if "damaged run" in line]
    assert len(damaged) == 2
    assert "seed2/metrics.json is unreadable" in damaged[0]
    assert "seed3/history.csv" in damaged[1]
    assert "| resnet20 | 0.27M |" in captured.out  # seeds 0 and 1, now the only recipe
    assert files.read_json(tmp_path / "out" / "report.json")["broken"] == [
        line.split("damaged run ", 1)[1] for line in damaged]


def test_a_report_inside_the_runs_folder_is_never_read_back_as_runs(tmp_path, capsys):
    root = _recipes(tmp_path / "mixed")
    for _ in range(2):
        assert main(["report", str(root), "--out", str(root / "rep")]) == 0
        out = capsys.readouterr().out
        assert "| resnet20 (782 it., float32) | 0.27M |" in out
        assert "41.00 ± 1.41 | 2 |" in out  # seeds 0 and 1, never their copies
    assert not [p for p in root.iterdir() if p.name.startswith(".")]


def test_a_report_that_fails_leaves_its_folder_as_it_was(tmp_path, monkeypatch):
    root = _recipes(tmp_path / "mixed")
    out = tmp_path / "out"
    out.mkdir()
    (out / "README.md").write_text("kept")

    def broken(*args, **kwargs):
        raise RuntimeError("drawing failed")
    monkeypatch.setattr(plots, "error_vs_time", broken)
    with pytest.raises(RuntimeError, match="drawing failed"):
        plots.write_report(root, out)
    assert sorted(p.name for p in out.iterdir()) == ["README.md"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mixed", "out"]  # no temporary left
    monkeypatch.undo()
    written = plots.write_report(root, out)["files"]
    assert (out / "README.md").read_text() == "kept"
    assert all(p.exists() for p in written) and (out / "figure6.png").is_file()


# Issue #40 item 10: figures say the schedule, and which data.

def test_figures_state_the_lr_schedule_and_figure7_its_data(sweep, monkeypatch):
    monkeypatch.delenv("CIFAR_RESNET_EXPERIMENTS", raising=False)
    title, _ = _texts(plots.figure6(CPU_REPRO))
    assert "lr 0.1, x0.1 at 50%, x0.01 at 75%" in title
    monkeypatch.setenv("CIFAR_RESNET_EXPERIMENTS", str(sweep.parent.parent / "experiments"))
    title7 = plots.figure7(sweep)._suptitle.get_text()
    assert "on the synthetic data test set" in title7 and "CIFAR-10" not in title7
