"""The benchmark (benchmarks/bench.py), the PyTorch reference, and the GPU-path levers on CPU."""

import json
import multiprocessing as mp
import os

import numpy as np
import pytest

import optional
from cifar_resnet.spec import cpu
from benchmarks import bench


@pytest.mark.slow
def test_bench_tiny_run_writes_json_and_table(tmp_path):
    # Few processes keep this fast; the torch worker shares the same protocol and code path.
    impls = ["keras", "keras:noaug:onednn=0", "pipeline"]
    code = bench.main(["--nets", "resnet8", "--impls", ",".join(impls), "--steps", "2",
                       "--epochs", "2", "--dataset", "synthetic", "--synthetic-size", "600",
                       "--out", str(tmp_path)])
    assert code == 0
    results = json.loads((tmp_path / "bench.json").read_text())
    # All 600 images train: the bench holds out no validation split.
    assert results["dataset"] == "synthetic" and results["train_images"] == 600
    assert results["settings"] == dict(steps=2, epochs=2, batch_size=128)
    assert results["machine"]["tensorflow"].startswith("2.21")
    assert results["machine"]["native_bf16"] is cpu.has_native_bf16()
    # Each worker's own precision and oneDNN state: the default path gets import's default
    # (or the user's setting), the lever its own.
    keras_info, lever_info = results["impls"]["keras"], results["impls"]["keras:noaug:onednn=0"]
    assert keras_info["precision"] == "float32" and keras_info["augment"] is True
    assert keras_info["TF_ENABLE_ONEDNN_OPTS"] == os.environ["TF_ENABLE_ONEDNN_OPTS"]
    assert lever_info["TF_ENABLE_ONEDNN_OPTS"] == "0" and lever_info["augment"] is False
    if lever_info["enabled"] is not None:  # TensorFlow says: it followed the variable
        assert lever_info["enabled"] is False
    runs = results["nets"]["resnet8"]
    assert sorted(runs) == sorted(impls)
    for r in runs.values():
        rates = [e["images_per_sec"] for e in r["epochs"]]
        assert len(rates) == 2 and all(rate > 0 for rate in rates)
        assert r["min"] <= r["median"] <= r["max"] and r["min"] == min(rates)
        assert all(e["load"] >= 0 for e in r["epochs"])
        assert all(e["steal"] is None or 0 <= e["steal"] <= 1 for e in r["epochs"])
    table = (tmp_path / "bench.md").read_text()
    assert "| resnet8 | keras |" in table and "| resnet8 | pipeline |" in table
    assert "oneDNN on: keras" in table


def test_bench_torch_workers_run_and_pair_with_their_reference(tmp_path):
    optional.importorskip("torch")
    impls = ["torch", "torch-bf16:noaug"]
    assert bench.main(["--nets", "resnet8", "--impls", ",".join(impls), "--steps", "2",
                       "--epochs", "2", "--dataset", "synthetic", "--synthetic-size", "600",
                       "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "bench.json").read_text())
    assert results["impls"]["torch"]["augment"] is True
    assert results["impls"]["torch-bf16:noaug"] == dict(
        results["impls"]["torch-bf16:noaug"], precision="bfloat16", augment=False)
    assert all(e["images_per_sec"] > 0 for r in results["nets"]["resnet8"].values()
               for e in r["epochs"])


def test_dead_worker_is_an_error_naming_it_not_a_hang():
    # A worker that dies before answering (e.g. a kernel TensorFlow cannot build) used to leave
    # the parent waiting on its pipe for ever.
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=os._exit, args=(3,))
    proc.start()
    with pytest.raises(RuntimeError, match=r"the keras-bf16 worker exited with code 3"):
        bench._receive("keras-bf16", parent, proc)
    parent, child = ctx.Pipe()
    child.send(("ready", {}))
    assert bench._receive("keras", parent, proc) == ("ready", {})  # a message wins over exit


@pytest.mark.parametrize("spec, expected", [
    ("keras", ("keras", {})), ("keras:xla:spe=4", ("keras", {"xla": 1, "spe": 4})),
    ("torch-bf16:intra=1", ("torch-bf16", {"intra": 1})),
    ("torch:noaug", ("torch", {"noaug": 1}))])
def test_parse_impl(spec, expected):
    assert bench.parse_impl(spec) == expected


@pytest.mark.parametrize("spec", ["jax", "keras:fast", "keras:spe=x"])
def test_parse_impl_rejects(spec):
    with pytest.raises(ValueError, match="not one of|integer"):
        bench.parse_impl(spec)


def test_references_and_nets():
    assert bench.reference_of("keras:xla") == "torch"
    assert bench.reference_of("keras-bf16") == "torch-bf16"
    assert bench.reference_of("torch") is None
    assert bench.reference_of("keras-bf16:noaug:xla") == "torch-bf16:noaug"
    assert bench.parse_net("resnet164_v2") == (164, 2) and bench.parse_net("resnet56") == (56, 1)
    with pytest.raises(ValueError, match="resnet20"):
        bench.parse_net("vgg16")


def test_bench_rejects_bad_impl_with_exit_2(tmp_path, capsys):
    assert bench.main(["--impls", "keras:warp", "--out", str(tmp_path)]) == 2
    assert "warp" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# The PyTorch reference is the same net as ours.


def _keras_resnet20():
    from cifar_resnet.run import build
    from cifar_resnet.spec import config as config_lib
    return build.build_model(config_lib.resolve(overrides=dict(depth=20)))


def test_torch_reference_matches_option_a_resnet20():
    torch = optional.importorskip("torch")
    from benchmarks import torch_resnet
    from cifar_resnet.run import metrics as metrics_lib

    net = torch_resnet.CifarResNet(20, 1)
    model = _keras_resnet20()
    assert torch_resnet.count_params(net) == metrics_lib.count_params(model) == 269_722
    # Same weights in the same order, up to layout: Keras kernels are (kh, kw, in, out) and
    # (in, out), PyTorch's (out, in, kh, kw) and (out, in).
    to_torch = {4: (3, 2, 0, 1), 2: (1, 0), 1: (0,)}
    keras_shapes = [tuple(np.transpose(np.zeros(w.shape), to_torch[len(w.shape)]).shape)
                    for w in model.trainable_weights]
    assert keras_shapes == [tuple(p.shape) for p in net.parameters()]
    # Option A shortcuts: ResNet-20 has no 1x1 convolution at all.
    assert not any(isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1)
                   for m in net.modules())


def test_torch_plain_reference_is_the_keras_plain_net_without_additions():
    torch = optional.importorskip("torch")
    from benchmarks import torch_resnet
    from cifar_resnet.run import build, metrics as metrics_lib
    from cifar_resnet.spec import config as config_lib

    net = torch_resnet.CifarResNet(56, 1, plain=True)
    model = build.build_model(config_lib.resolve(overrides=dict(depth=56, plain=True)))
    assert torch_resnet.count_params(net) == metrics_lib.count_params(model) == 853_018
    assert all(unit.shortcut is None for unit in net.units)
    x = torch.randn(2, 16, 32, 32)
    unit = net.units[0].eval()  # a plain unit is relu(bn2(conv2(relu(bn1(conv1(x))))))
    with torch.no_grad():
        want = torch.relu(unit.bn2(unit.conv2(torch.relu(unit.bn1(unit.conv1(x))))))
        torch.testing.assert_close(unit(x), want)
    with pytest.raises(ValueError, match="plain nets are version 1"):
        torch_resnet.CifarResNet(29, 2, plain=True)


def test_torch_augment_is_crop_and_flip_of_padded_image():
    torch = optional.importorskip("torch")
    from benchmarks import torch_resnet

    images = torch.randint(0, 256, (64, 32, 32, 3), dtype=torch.uint8)
    mean, std = torch.zeros(32, 32, 3), torch.ones(1, 1, 3)
    out = torch_resnet.augment(images, mean, std, torch.Generator().manual_seed(0))
    assert out.shape == (64, 3, 32, 32) and out.is_contiguous(memory_format=torch.channels_last)
    padded = torch.nn.functional.pad(images.float() / 255, (0, 0, 4, 4, 4, 4))
    for i in range(64):  # every output is one of the 81 x 2 windows of its padded image
        crop = out[i].permute(1, 2, 0)
        assert any(torch.equal(crop, w) or torch.equal(crop, w.flip(1))
                   for w in (padded[i, r:r + 32, c:c + 32] for r in range(9) for c in range(9)))


# ------------------------------------------------------------------------------------------------
# GPU-path levers (XLA, bfloat16) follow the default path's loss trajectory.


def _losses(config, images, labels, steps=6):
    import keras
    from cifar_resnet.run import build
    keras.utils.set_random_seed(0)
    model = build.build_model(config)
    return np.array([float(model.train_on_batch(images, labels)[0]) for _ in range(steps)])


@pytest.mark.slow
def test_xla_and_bf16_follow_default_loss_trajectory(tiny_config):
    import dataclasses
    from cifar_resnet.spec import datasets
    (x, y), _ = datasets.make_synthetic(64, 1, seed=0)
    images = (x.astype(np.float32) / 255 - 0.5) / 0.25
    base = _losses(tiny_config, images, y)
    xla = _losses(dataclasses.replace(tiny_config, jit_compile=True), images, y)
    bf16 = _losses(dataclasses.replace(tiny_config, precision="mixed_bfloat16"), images, y)
    assert base[-1] < base[0]  # the trajectory moves, so agreement is not trivial
    # XLA only reorders and fuses float32 arithmetic: float32 rounding (1e-7) amplified over
    # 6 SGD steps; observed 2e-5 relative, bound 10x that.
    np.testing.assert_allclose(xla, base, rtol=2e-4)
    # bfloat16 rounds every activation and gradient to 8 significant bits (2^-9 = 0.2%
    # relative), with float32 weights and loss; observed at most 7e-4 relative over 6 steps.
    # 1e-2 leaves room for that noise yet is smaller than the loss change of one step (~8%).
    np.testing.assert_allclose(bf16, base, rtol=1e-2)


def test_summarize_ratio_of_medians_and_paired_ratio():
    epochs = lambda *rates: [dict(images_per_sec=r, load=1.0) for r in rates]
    results = bench.summarize({"nets": {"n": {"keras": epochs(100, 300, 200),
                                              "torch:passive": epochs(100, 100, 400)}}})
    keras = results["nets"]["n"]["keras"]
    assert (keras["min"], keras["median"], keras["max"]) == (100, 200, 300)
    assert keras["reference"] == "torch:passive"  # a lever variant of the reference counts
    assert keras["ratio"] == 2.0  # 200 / 100
    assert keras["paired_ratio"] == 1.0  # median of 1, 3, 0.5


def test_summarize_pairs_noaug_with_noaug():
    epochs = lambda *rates: [dict(images_per_sec=r, load=1.0) for r in rates]
    results = bench.summarize({"nets": {"n": {
        "keras": epochs(100), "keras:noaug": epochs(300), "torch": epochs(200),
        "torch:noaug:passive": epochs(600)}}})
    runs = results["nets"]["n"]
    assert (runs["keras"]["reference"], runs["keras"]["ratio"]) == ("torch", 0.5)
    assert (runs["keras:noaug"]["reference"], runs["keras:noaug"]["ratio"]) == (
        "torch:noaug:passive", 0.5)


# ------------------------------------------------------------------------------------------------
# The fair reference: batches made ahead of the timed loop; any device.


def test_torch_batches_made_ahead_are_the_normalized_images():
    torch = optional.importorskip("torch")
    from benchmarks import torch_resnet

    x = torch.randint(0, 256, (300, 32, 32, 3), dtype=torch.uint8)
    y = torch.arange(300)  # labels name their image
    mean, std = torch.full((32, 32, 3), 0.5), torch.full((1, 1, 3), 0.25)
    pool = torch_resnet.prepare_batches(x, y, 64, mean, std, 6, augment=False)
    assert len(pool) == 6  # 4 per pass: past a pass, the next permutation
    for images, labels in pool:
        assert images.shape == (64, 3, 32, 32)
        assert images.is_contiguous(memory_format=torch.channels_last)
        expected = ((x[labels].float() / 255 - 0.5) / 0.25).permute(0, 3, 1, 2)
        assert torch.equal(images, expected)
    augmented = torch_resnet.prepare_batches(x, y, 64, mean, std, 1)[0]
    plain = ((x[augmented[1]].float() / 255 - 0.5) / 0.25).permute(0, 3, 1, 2)
    assert not torch.equal(augmented[0], plain)  # cropped and flipped


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_torch_step_learns_on_the_default_device(precision):
    torch = optional.importorskip("torch")
    from benchmarks import torch_resnet

    torch.manual_seed(0)
    net = torch_resnet.CifarResNet(8, 1)
    step = torch_resnet.make_train_step(net, precision=precision)
    device = torch_resnet.default_device()
    assert next(net.parameters()).device.type == device.split(":")[0]
    images, labels = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
    losses = [float(step(images, labels)) for _ in range(5)]
    assert losses[-1] < losses[0]  # the same batch five times: the loss falls
    with pytest.raises(ValueError, match="precision 'fp8'"):
        torch_resnet.make_train_step(net, precision="fp8")


def test_torch_reference_cli_times_epochs(capsys):
    optional.importorskip("torch")
    from benchmarks import torch_resnet

    assert torch_resnet.main(["--depth", "8", "--steps", "1", "--epochs", "1",
                              "--batch-size", "16", "--noaug"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["warm-up", "epoch 1"]
    assert all("img/s (resnet8_v1, float32," in line for line in lines)


def test_torch_weight_growth_records_every_kernel_at_the_marks(tmp_path, capsys):
    optional.importorskip("torch")
    from benchmarks import torch_weight_growth
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(256, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, size=256)
    out = torch_weight_growth.growth(x, y, x.mean(0) / 255, depth=8, plain=True, seed=0,
                                     iterations=3)
    assert list(out) == [1, 2, 3]  # the marks up to 3, and the last
    assert all(len(ratios) == 8 for ratios in out.values())  # 7 convolutions and the classifier
    assert out[3] != out[1] and all(r > 0 for r in out[3])
    assert torch_weight_growth.main(["--data", str(tmp_path / "missing.tar.gz")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
