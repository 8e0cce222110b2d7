"""benchmarks/weight_growth.py: a replay of a run's first pass that records each kernel's norm."""

import json

import numpy as np
import pytest

from benchmarks import weight_growth
from cli_runs import earlier_run


@pytest.fixture
def fixture_run(tmp_path):
    """A finished depth-8 run of 2 passes (tests/fixtures), config.json migrated."""
    return earlier_run("complete", tmp_path / "fixture")


def test_kernel_norms_are_squared_norms_of_conv_and_dense_kernels_in_net_order():
    from cifar_resnet import resnet_v1
    net = resnet_v1(input_shape=(32, 32, 3), depth=8, num_classes=10)
    kernels = [v for v in net.trainable_weights if len(v.shape) in (2, 4)]
    for i, v in enumerate(kernels):
        v.assign(np.full(v.shape, float(i + 1), "float32"))
    norms = weight_growth.kernel_norms(net)
    assert list(norms) == [v.path.split("/")[0] for v in kernels]
    assert list(norms)[0] == "stem_conv" and list(norms)[-1] == "classifier"
    assert list(norms.values()) == [float((i + 1) ** 2 * np.prod(v.shape))
                                    for i, v in enumerate(kernels)]


def test_the_replay_is_the_runs_first_pass_and_leaves_the_run_alone(fixture_run, tmp_path,
                                                                   capsys):
    run = fixture_run
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    out = tmp_path / "growth.json"
    assert weight_growth.main([str(run), "--json", str(out)]) == 0
    [result] = json.loads(out.read_text())
    history_loss = float((run / "history.csv").read_text().splitlines()[1].split(",")[3])
    assert result["run_losses"] == [history_loss]
    # The same seed, data and recipe: the run's own first-pass loss (2 iterations a pass here).
    assert result["losses"] == pytest.approx([history_loss], rel=1e-4)
    # The cross-entropy alone: the loss less the (small, at depth 8) weight-decay term.
    assert 0 < result["losses"][0] - result["cross_entropies"][0] < 0.5
    assert list(result["sum_sq"]) == ["0", "1", "2"]
    assert len(result["layers"]) == 8 and all(len(v) == 8 for v in result["sum_sq"].values())
    assert result["sum_sq"]["2"] != result["sum_sq"]["0"]  # SGD moved every recorded kernel
    assert "iteration    2: first" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_a_bad_override_is_one_line_and_exit_2(fixture_run, capsys):
    assert weight_growth.main([str(fixture_run), "--set", "precision"]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_an_override_the_config_refuses_is_one_line_and_exit_2(fixture_run, capsys):
    assert weight_growth.main([str(fixture_run), "--set", "precision=float64"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "precision" in err and err.count("\n") == 1


def test_follow_records_each_pass_checkpoint_once_and_stops_when_the_run_is_done(fixture_run,
                                                                                  tmp_path):
    """The last pass, whose checkpoint the runner deleted with backup/, from final.keras."""
    import keras
    from cifar_resnet.run import build
    from cifar_resnet.spec import config as config_lib
    run = fixture_run
    net = build.build_net(config_lib.load(run / "config.json"))
    (run / "backup").mkdir()
    net.save_weights(run / "backup" / "epoch1.weights.h5")
    kernel = net.get_layer("stem_conv").kernel
    kernel.assign(2 * kernel)
    net.save_weights(run / "backup" / "epoch1-iter3.weights.h5")  # mid-pass: not a pass's end
    out = tmp_path / "norms.jsonl"
    assert weight_growth.main(["--follow", str(run), "--json", str(out)]) == 0
    line, last = [json.loads(x) for x in out.read_text().splitlines()]
    assert (line["pass"], line["iteration"]) == (1, 2)  # 2 iterations a pass in this run
    assert line["sum_sq"]["stem_conv"] == pytest.approx(
        float(np.sum(np.square(kernel.numpy()))) / 4, rel=1e-6)
    assert list(line["sum_sq"]) == list(weight_growth.kernel_norms(net))
    assert (last["pass"], last["iteration"]) == (2, 4)  # metrics.json: 2 passes
    final = keras.saving.load_model(run / "final.keras", compile=False)
    assert last["sum_sq"] == weight_growth.kernel_norms(final) != line["sum_sq"]
    weight_growth.main(["--follow", str(run), "--json", str(out)])
    assert len(out.read_text().splitlines()) == 2


def test_more_passes_and_a_warm_up_are_recorded_and_told_apart_from_the_run(fixture_run, tmp_path,
                                                                           capsys):
    out = tmp_path / "growth.json"
    assert weight_growth.main([str(fixture_run), "--passes", "2", "--set", "warmup_iterations=1",
                               "--json", str(out)]) == 0
    [result] = json.loads(out.read_text())
    assert result["warmup_iterations"] == 1
    assert list(result["sum_sq"]) == ["0", "1", "2", "3", "4"]  # marks after the warm-up too
    assert len(result["losses"]) == len(result["run_losses"]) == 2
    assert "(different)" in capsys.readouterr().out  # lr 0.01 for the first iteration


def test_saved_results_are_read_back_printed_and_plotted(tmp_path, capsys):
    result = {"run_dir": "/runs/full_repro/plain56/seed0", "overrides": {"precision": "float32"},
              "precision": "float32", "warmup_iterations": 0, "layers": ["stem_conv", "classifier"],
              "sum_sq": {"0": [6.0, 3.0], "1": [60.0, 3.0], "391": [600.0, 6.0]},
              "losses": [2.0], "run_losses": [2.0]}
    saved = tmp_path / "growth.json"
    saved.write_text(json.dumps([result]))
    png = tmp_path / "growth.png"
    assert weight_growth.main([str(saved), "--plot", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    out = capsys.readouterr().out
    assert out.startswith("plain56 precision=float32 (float32), from ")
    assert "iteration  391: first     100.0x  largest     100.0x (stem_conv)" in out
    assert weight_growth.main([str(tmp_path / "missing.json")]) == 2
    assert capsys.readouterr().err.startswith("error: cannot read ")


def test_a_replay_the_runner_stops_as_diverged_keeps_the_norms_up_to_it(fixture_run, tmp_path,
                                                                        capsys):
    out = tmp_path / "growth.json"
    assert weight_growth.main([str(fixture_run), "--set", "lr=1e6", "--json", str(out)]) == 0
    [result] = json.loads(out.read_text())
    assert "training diverged" in result["stopped"] and "<scratch>" in result["stopped"]
    assert result["losses"] == result["cross_entropies"] == []
    assert list(result["sum_sq"]) == ["0", "1", "2"]
    assert "training loss of each period (none finished)" in capsys.readouterr().out
