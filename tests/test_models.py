"""Tests for cifar_resnet.nets.models: architecture, counts, fidelity details."""

import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

from cifar_resnet.nets import imagenet, models
from cifar_resnet.spec import architecture
from cifar_resnet.nets import blocks


def trainable_count(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def parents(layer):
    """Layers whose outputs feed `layer`."""
    return [t._keras_history.operation for t in keras.tree.flatten(layer.input)]


def children(model, layer):
    return [l for l in model.layers[1:] if layer in parents(l)]


def of_type(model, cls):
    return [l for l in model.layers if isinstance(l, cls)]


@pytest.fixture(scope="module")
def v1_8():
    return models.resnet_v1(depth=8)


@pytest.fixture
def bf16_policy():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


# Trainable parameters as reported by the papers / fb.resnet.torch (BN
# moving statistics are buffers, not parameters, there).
@pytest.mark.parametrize("depth, expected", [
    (20, 269_722), (32, 464_154), (44, 658_586), (56, 853_018),
    pytest.param(110, 1_727_962, marks=pytest.mark.slow),
    pytest.param(1202, 19_421_274, marks=pytest.mark.slow)])
def test_v1_paper_trainable_counts(depth, expected):
    assert trainable_count(models.resnet_v1(depth=depth)) == expected


@pytest.mark.parametrize("depth", [20, 56])
def test_plain_and_option_a_have_equal_counts(depth):
    plain = models.resnet_v1(depth=depth, plain=True)
    resnet = models.resnet_v1(depth=depth, shortcut="A")
    assert plain.count_params() == resnet.count_params()


@pytest.mark.parametrize("depth, expected", [
    pytest.param(164, 1_703_258, marks=pytest.mark.slow),
    pytest.param(1001, 10_327_706, marks=pytest.mark.slow)])
def test_v2_paper_trainable_counts(depth, expected):
    assert trainable_count(models.resnet_v2(depth=depth)) == expected


@pytest.mark.parametrize("depth, millions", [
    (18, 11.7), (34, 21.8), pytest.param(50, 25.6, marks=pytest.mark.slow),
    pytest.param(101, 44.5, marks=pytest.mark.slow),
    pytest.param(152, 60.2, marks=pytest.mark.slow)])
def test_imagenet_counts(depth, millions):
    count = trainable_count(imagenet.resnet_imagenet(depth))
    assert abs(count / (millions * 1e6) - 1) < 0.005


# The example's printed "Total params" includes BN moving statistics.
@pytest.mark.parametrize("depth, expected", [(20, 274_442), (56, 861_770)])
def test_keras_example_v1_total_counts(depth, expected):
    model = models.resnet_v1(depth=depth, preset="keras-example")
    assert model.count_params() == expected


@pytest.mark.parametrize("build", [
    lambda: models.resnet_v1(depth=8),
    lambda: models.resnet_v1(depth=11, block="bottleneck", shortcut="B"),
    lambda: models.resnet_v2(depth=11),
    lambda: models.resnet_v2(depth=8, block="basic"),
    lambda: models.resnet_v1(depth=8, preset="keras-example"),
    lambda: models.resnet_v2(depth=11, preset="keras-example"),
    lambda: models.build_model(2, 11, plain=True),
])
def test_outputs_are_probabilities(build):
    model = build()
    x = np.random.default_rng(0).normal(size=(3, 32, 32, 3)).astype("float32")
    probs = np.asarray(model(x, training=False))
    assert probs.shape == (3, 10)
    assert np.all(probs >= 0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("build, bad, valid", [
    (lambda: models.resnet_v1(depth=21), "21", "20"),
    (lambda: models.resnet_v1(depth=26, block="bottleneck"), "26", "29"),
    (lambda: models.resnet_v2(depth=0), "0", "11"),
    (lambda: models.resnet_v1(depth=20.0), "20.0", "20"),
    (lambda: models.resnet_v1(shortcut="D"), "'D'", "'A', 'B', 'C'"),
    (lambda: models.resnet_v2(shortcut="a"), "'a'", "'A', 'B', 'C'"),
    (lambda: models.resnet_v1(block="wide"), "'wide'", "'bottleneck'"),
    (lambda: models.resnet_v2(preset="torch"), "'torch'", "'keras-example'"),
    (lambda: models.resnet_v1(lr=0.1), "lr", "bn_momentum"),
    (lambda: imagenet.resnet_imagenet(20), "20", "152"),
    (lambda: models.build_model(3, 20), "3", "1, 2"),
    (lambda: architecture.check_architecture(1, 21), "21", "20"),
    (lambda: architecture.check_architecture(2, 20, block="basic", shortcut="D"),
     "'D'", "'A'"),
    (lambda: models.resnet_v2(depth=8, block="basic",
                              preset="keras-example"), "'basic'",
     "'bottleneck'"),
])
def test_invalid_arguments_raise_before_building(monkeypatch, build, bad,
                                                 valid):
    def no_layers(*args, **kwargs):
        raise AssertionError("a layer was built before validation")

    monkeypatch.setattr(keras, "Input", no_layers)
    with pytest.raises(ValueError) as info:
        build()
    assert bad in str(info.value) and valid in str(info.value)


def test_building_resnet56_runs_code_of_four_modules_of_the_package():
    # Issue #39: a net is read in the modules that build it and define it, nowhere else; the
    # shipped weights (nets/pretrained) stay out of a net with random weights.
    package = os.path.dirname(models.__file__).rpartition(os.sep)[0] + os.sep
    called = set()

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_filename.startswith(package):
            called.add(frame.f_code.co_filename[len(package):-3].replace(os.sep, "."))

    sys.setprofile(profile)
    try:
        model = models.resnet_v1(input_shape=(32, 32, 3), depth=56)
    finally:
        sys.setprofile(None)
    assert model.name == "resnet56_v1"
    assert called == {"nets.models", "nets.blocks", "spec.architecture", "spec.choices"}
    assert len(called) <= 4


def test_check_architecture_returns_units_per_stage():
    assert architecture.check_architecture(1, 20) == 3
    assert architecture.check_architecture(2, 164) == 18
    assert architecture.check_architecture(2, 110, block="basic") == 18
    assert architecture.check_architecture(1, 1202, shortcut="C") == 200


@pytest.mark.parametrize("build, n", [
    (lambda **kw: models.resnet_v1(depth=8, **kw), 1),
    (lambda **kw: models.resnet_v1(depth=14, **kw), 2),
    (lambda **kw: models.resnet_v2(depth=11, **kw), 1),
    (lambda **kw: models.resnet_v2(depth=20, block="basic", **kw), 3),
    (lambda **kw: models.resnet_v2(depth=11, preset="keras-example", **kw),
     1),
])
def test_plain_has_no_add_and_resnet_has_one_per_unit(build, n):
    assert len(of_type(build(), layers.Add)) == 3 * n
    assert of_type(build(plain=True), layers.Add) == []


def test_shortcut_option_params():
    a, b, c = (models.resnet_v1(depth=14, shortcut=s) for s in "ABC")
    plain = models.resnet_v1(depth=14, plain=True)
    assert a.count_params() == plain.count_params()
    # B: 1x1 conv + BN (4 values per channel) where 16->32 and 32->64.
    assert b.count_params() - a.count_params() == (
        16 * 32 + 4 * 32) + (32 * 64 + 4 * 64)
    names = [l.name for l in c.layers if l.name.endswith("_shortcut_conv")]
    assert len(names) == 6  # 3 stages x 2 units
    assert "stage1_block2_shortcut_conv" in names
    assert not any(isinstance(l, blocks.ZeroPadShortcut) for l in b.layers)
    assert len(of_type(a, blocks.ZeroPadShortcut)) == 2


def test_v2_every_conv_is_preceded_by_bn_relu():
    model = models.resnet_v2(depth=20)
    convs = [l for l in of_type(model, layers.Conv2D) if l.name != "stem_conv"]
    assert len(convs) == 3 * 2 * 3 + 3  # branch convs + projections
    for conv in convs:
        (act,) = parents(conv)
        if isinstance(act, layers.ZeroPadding2D):
            (act,) = parents(act)
        (bn,) = parents(act)
        assert isinstance(act, layers.Activation), conv.name
        assert act.get_config()["activation"] == "relu"
        assert isinstance(bn, layers.BatchNormalization), conv.name
    # Final BN-ReLU before pooling; projection on the pre-activated input.
    assert [l.name for l in model.layers[-5:]] == [
        "final_bn", "final_relu", "avg_pool", "classifier", "predictions"]
    proj = model.get_layer("stage2_block1_shortcut_conv")
    assert parents(proj) == [model.get_layer("stage2_block1_relu1")]


def test_v2_bottleneck_projects_where_shape_changes():
    model = models.resnet_v2(depth=20)
    projections = sorted(l.name for l in model.layers
                         if l.name.endswith("_shortcut_conv"))
    assert projections == [f"stage{s}_block1_shortcut_conv" for s in (1, 2, 3)]
    assert not any(l.name.endswith("_shortcut_bn") for l in model.layers)
    assert model.get_layer("stage1_block1_shortcut_conv").filters == 64
    assert model.get_layer("stage3_block2_conv3").filters == 256


def test_stride2_conv_is_padded_like_torch(v1_8):
    conv = v1_8.get_layer("stage2_block1_conv1")
    assert conv.padding == "valid" and conv.strides == (2, 2)
    (pad,) = parents(conv)
    assert isinstance(pad, layers.ZeroPadding2D)
    assert tuple(map(tuple, pad.padding)) == ((1, 1), (1, 1))


def test_stride2_branch_and_shortcut_sample_same_pixels(v1_8):
    """A centre-tap conv1 must reproduce exactly what the shortcut sees."""
    conv = v1_8.get_layer("stage2_block1_conv1")
    kernel = np.zeros(conv.kernel.shape, "float32")
    kernel[1, 1, np.arange(16), np.arange(16)] = 1.0
    conv.kernel.assign(kernel)
    probe = keras.Model(v1_8.input, [
        v1_8.get_layer("stage1_block1_out").output, conv.output,
        v1_8.get_layer("stage2_block1_shortcut").output])
    x = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype("float32")
    block_in, branch, shortcut = map(np.asarray, probe(x, training=False))
    expected = np.concatenate(
        [block_in[:, ::2, ::2], np.zeros((2, 16, 16, 16), "float32")], -1)
    np.testing.assert_array_equal(shortcut, expected)
    np.testing.assert_allclose(branch, expected, atol=1e-6)


def test_zero_pad_shortcut_layer():
    x = np.random.default_rng(2).normal(size=(2, 7, 6, 3)).astype("float32")
    layer = blocks.ZeroPadShortcut(5, strides=2)
    y = np.asarray(layer(x))
    assert y.shape == layer.compute_output_shape(x.shape) == (2, 4, 3, 5)
    np.testing.assert_array_equal(y[..., :3], x[:, ::2, ::2])
    np.testing.assert_array_equal(y[..., 3:], 0.0)
    clone = blocks.ZeroPadShortcut.from_config(layer.get_config())
    assert (clone.filters, clone.strides) == (5, 2)


def _bn_training_step(layer, x):
    import tensorflow as tf
    # A sum weighted per element: with weights constant over a channel, the gradient of the
    # normalized input would be zero by symmetry and only round-off would be compared.
    weights = np.random.default_rng(4).normal(size=x.shape).astype("float32")
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
        loss = tf.reduce_sum(tf.cast(y, "float32") * weights)
    grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
    return [np.asarray(tf.cast(t, "float32")) for t in
            (y, *grads, layer.moving_mean, layer.moving_variance)]


@pytest.mark.parametrize("policy, rtol", [("float32", 1e-5), ("mixed_bfloat16", 2e-2)])
def test_fused_batch_norm_computes_what_keras_does(policy, rtol):
    """blocks.BatchNormalization (FusedBatchNormV3) = keras.layers.BatchNormalization:
    outputs, gradients of input, gamma and beta, and the moving statistics after one step."""
    import tensorflow as tf
    x = np.random.default_rng(3).normal(2.0, 3.0, (8, 5, 5, 6)).astype("float32")
    if policy == "float32":  # a channel with variance ~ epsilon, so epsilon itself is compared
        x[..., 0] = 1e-3 * (x[..., 0] - 2.0)
    results = []
    for cls in (layers.BatchNormalization, blocks.BatchNormalization):
        layer = cls(momentum=0.9, epsilon=1e-5, dtype=policy)
        layer.build(x.shape)
        layer.gamma.assign(np.linspace(0.5, 2.0, 6))
        layer.beta.assign(np.linspace(-1.0, 1.0, 6))
        results.append(_bn_training_step(layer, tf.cast(x, layer.compute_dtype)))
    for name, keras_value, ours in zip(("y", "dx", "dgamma", "dbeta", "mean", "var"), *results):
        scale = np.abs(keras_value).max()
        np.testing.assert_allclose(ours, keras_value, rtol=0, atol=rtol * scale, err_msg=name)
    # The moving statistics moved (momentum 0.9 from 0 and 1), so their agreement means something.
    assert results[1][4] == pytest.approx(0.1 * x.mean((0, 1, 2)), rel=max(rtol, 1e-4), abs=1e-6)


def test_fused_batch_norm_runs_the_fused_kernel_in_training_only():
    import tensorflow as tf
    layer = blocks.BatchNormalization()
    x = tf.zeros((2, 4, 4, 3))
    layer.build(x.shape)

    def ops_of(training):
        graph = tf.function(lambda t: layer(t, training=training)).get_concrete_function(x).graph
        return {op.type for op in graph.get_operations()}

    assert "FusedBatchNormV3" in ops_of(True)
    assert "FusedBatchNormV3" not in ops_of(False)  # inference: the Keras code


def test_models_use_the_fused_batch_norm(v1_8):
    bns = of_type(v1_8, layers.BatchNormalization)
    assert len(bns) == 7 and all(isinstance(l, blocks.BatchNormalization) for l in bns)


def test_weight_decay_matches_torch(v1_8):
    # Torch decays every parameter: kernels, BN gamma/beta, dense bias.
    assert len(v1_8.losses) == len(v1_8.trainable_weights)
    conv = v1_8.get_layer("stage3_block1_conv2")
    (loss,) = conv.losses
    w = np.asarray(conv.kernel)
    np.testing.assert_allclose(float(loss), 5e-5 * np.sum(w**2), rtol=1e-5)
    with tf.GradientTape() as tape:
        (loss,) = conv.losses
    grad = tape.gradient(loss, conv.kernel)
    np.testing.assert_allclose(np.asarray(grad), 1e-4 * w, rtol=1e-4,
                               atol=1e-12)
    assert len(v1_8.get_layer("stage1_block1_bn1").losses) == 2
    assert len(v1_8.get_layer("classifier").losses) == 2
    assert models.resnet_v1(depth=8, l2=0).losses == []


def test_paper_layer_config(v1_8):
    bn = v1_8.get_layer("stem_bn")
    assert (bn.momentum, bn.epsilon) == (0.9, 1e-5)
    assert not any(l.use_bias for l in of_type(v1_8, layers.Conv2D))
    # Torch conv init: std sqrt(2 / (k * k * out_channels)).
    w = np.asarray(v1_8.get_layer("stage3_block1_conv2").kernel)
    assert abs(w.std() / np.sqrt(2 / (9 * 64)) - 1) < 0.03
    dense = v1_8.get_layer("classifier")
    limit = 1 / np.sqrt(64)
    assert np.abs(np.asarray(dense.kernel)).max() <= limit
    assert np.abs(np.asarray(dense.kernel)).max() > 0.9 * limit
    np.testing.assert_array_equal(np.asarray(dense.bias), 0.0)


def test_keras_example_layer_config():
    model = models.resnet_v1(depth=8, preset="keras-example")
    proj = model.get_layer("stage2_block1_shortcut_conv")
    assert proj.use_bias and proj.kernel_size == (1, 1)
    assert children(model, proj) == [model.get_layer("stage2_block1_add")]
    conv = model.get_layer("stage2_block1_conv1")
    assert conv.padding == "same" and conv.use_bias
    assert not of_type(model, layers.ZeroPadding2D)
    assert model.get_layer("stem_bn").momentum == 0.99
    # L2(1e-4) on conv kernels only.
    assert len(model.losses) == len(of_type(model, layers.Conv2D))
    w = np.asarray(conv.kernel)
    np.testing.assert_allclose(float(conv.losses[0]), 1e-4 * np.sum(w**2),
                               rtol=1e-5)


def test_layer_names_are_deterministic_and_readable(v1_8):
    names = [l.name for l in v1_8.layers]
    assert names == [l.name for l in models.resnet_v1(depth=8).layers]
    assert v1_8.name == "resnet8_v1"
    for name in ("images", "stem_conv", "stem_bn", "stem_relu", "stage1_block1_conv1",
                 "stage1_block1_bn1", "stage1_block1_relu1",
                 "stage1_block1_conv2", "stage1_block1_bn2",
                 "stage1_block1_add", "stage1_block1_out",
                 "stage2_block1_pad1", "stage2_block1_shortcut", "avg_pool",
                 "classifier", "predictions"):
        assert name in names
    assert models.resnet_v1(depth=8, plain=True).name == "plain8_v1"
    assert models.resnet_v2(depth=11).name == "resnet11_v2"


@pytest.mark.parametrize("plain", [False, True])
def test_last_branch_bn_is_the_pre_addition_response(plain):
    # Fig. 7 of [1] reads the output of "..._bn2" (basic) / "..._bn3".
    for block, last, depth in (("basic", "bn2", 8), ("bottleneck", "bn3", 11)):
        model = models.resnet_v1(depth=depth, block=block, plain=plain)
        for s in (1, 2, 3):
            bn = model.get_layer(f"stage{s}_block1_{last}")
            (consumer,) = children(model, bn)
            expected = "add" if not plain else "out"
            assert consumer.name == f"stage{s}_block1_{expected}"


def test_save_load_round_trip(tmp_path, v1_8):
    path = tmp_path / "resnet8.keras"
    v1_8.save(path)
    loaded = keras.saving.load_model(path)
    x = np.random.default_rng(3).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0),
                               v1_8.predict(x, verbose=0), atol=1e-6)
    assert isinstance(loaded.get_layer("stage2_block1_shortcut"),
                      blocks.ZeroPadShortcut)


@pytest.mark.usefixtures("bf16_policy")
def test_mixed_precision_outputs_float32():
    model = models.resnet_v1(depth=8)
    assert model.get_layer("stage1_block1_conv1").compute_dtype == "bfloat16"
    assert model.get_layer("stage2_block1_shortcut").compute_dtype == "bfloat16"
    probs = model(np.zeros((2, 32, 32, 3), "float32"), training=False)
    assert probs.dtype == "float32"
    np.testing.assert_allclose(np.asarray(probs).sum(-1), 1.0, rtol=1e-5)
