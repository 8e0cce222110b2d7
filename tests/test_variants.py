"""Tests for the He 2016 unit variants (cifar_resnet/nets/variants.py via models.resnet_v1)."""

import keras
import numpy as np
import pytest
from keras import layers

from cifar_resnet.spec import architecture, config as config_lib
from cifar_resnet.nets import blocks
from cifar_resnet.nets import models, variants
from cifar_resnet.run import build as build_lib
from cifar_resnet.run import metrics as metrics_lib

UNITS = [u for u in architecture.UNITS]
SHORTCUTS = [v for v in architecture.SHORTCUT_VARIANTS if v != "identity"]
UNIT_NAMES = [f"stage{s}_block1" for s in (1, 2, 3)]  # depth 8: one unit per stage


def build(**kw):
    return models.resnet_v1(depth=8, **kw)


def consumers(model, layer_name):
    layer = model.get_layer(layer_name)
    return sorted(l.name for l in model.layers[1:]
                  if any(t._keras_history.operation is layer
                         for t in keras.tree.flatten(l.input)))


@pytest.mark.parametrize("kw", [dict(unit=u) for u in UNITS]
                         + [dict(shortcut_variant=v) for v in SHORTCUTS])
def test_each_variant_builds_and_trains_a_step(kw):
    model = build(**kw)
    # Eager: one step of a tiny net is cheaper than tracing a tf.function.
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "sparse_categorical_crossentropy",
                  run_eagerly=True)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, 8)
    before = [w.copy() for w in model.get_weights()]
    loss = model.train_on_batch(x, y)
    assert np.isfinite(loss)
    changed = [not np.array_equal(a, b) for a, b in zip(before, model.get_weights())]
    assert sum(changed) > len(changed) // 2


def test_defaults_are_unchanged():
    explicit = models.resnet_v1(depth=20, **{k: v for k, v in architecture.VARIANT_DEFAULTS.items()})
    default = models.resnet_v1(depth=20)
    assert metrics_lib.count_params(explicit) == 269_722  # He 2015 ResNet-20, as test_models pins
    assert [l.name for l in explicit.layers] == [l.name for l in default.layers]
    assert explicit.name == "resnet20_v1"
    assert config_lib.resolve(overrides=dict(depth=20)).net == architecture.NetSpec(depth=20)


@pytest.mark.parametrize("unit", ["bn_after_add", "relu_before_add", "relu_only_preact"])
def test_activation_placements_reuse_the_same_components(unit):
    # [2] Fig. 4: "All these units consist of the same components - only the orders differ".
    model, original = build(unit=unit), build()
    assert metrics_lib.count_params(model) == metrics_lib.count_params(original)
    assert model.name == f"resnet8_v1_{unit}"


def test_bn_after_addition_normalises_the_sum():
    model = build(unit="bn_after_add")
    for u in UNIT_NAMES:
        assert consumers(model, f"{u}_conv2") == [f"{u}_add"]  # no BN before the addition
        assert consumers(model, f"{u}_add") == [f"{u}_bn_add"]
        assert consumers(model, f"{u}_bn_add") == [f"{u}_out"]


def test_relu_before_addition_leaves_the_sum_unactivated():
    model = build(unit="relu_before_add")
    for u in UNIT_NAMES:
        assert consumers(model, f"{u}_bn2") == [f"{u}_relu2"]
        assert f"{u}_add" in consumers(model, f"{u}_relu2")
    assert not any(l.name.endswith("_out") for l in model.layers)
    assert consumers(model, "stage3_block1_add") == ["avg_pool"]


def test_relu_only_preactivation_activates_only_the_residual_path():
    model = build(unit="relu_only_preact")
    for u in UNIT_NAMES:
        assert consumers(model, f"{u}_preact_relu")[0].startswith(f"{u}_")
        assert consumers(model, f"{u}_bn2") == [f"{u}_add"]
    # The sum goes on unactivated; the appendix adds one ReLU after the last addition.
    assert sorted(consumers(model, "stage1_block1_add")) == [
        "stage2_block1_preact_relu", "stage2_block1_shortcut"]
    assert consumers(model, "stage3_block1_add") == ["final_relu"]


def test_full_preactivation_is_the_v2_net():
    model = build(unit="full_preact")
    v2 = models.resnet_v2(depth=8, block="basic")
    assert model.name == v2.name == "resnet8_v2_basic"
    assert [l.name for l in model.layers] == [l.name for l in v2.layers]
    assert metrics_lib.count_params(model) == metrics_lib.count_params(v2)


@pytest.mark.parametrize("variant, exclusive", [("exclusive_gating", True),
                                                ("shortcut_only_gating", False)])
def test_gated_variants_carry_gates_with_the_given_bias(variant, exclusive):
    model = build(shortcut_variant=variant, gate_bias_init=-3.0)
    plain_params = metrics_lib.count_params(build())
    gate_params = 0
    for u, (c_in, c_out) in zip(UNIT_NAMES, [(16, 16), (16, 32), (32, 64)]):
        gate = model.get_layer(f"{u}_gate")
        kernel, bias = gate.get_weights()
        assert kernel.shape == (1, 1, c_in, c_out)
        np.testing.assert_array_equal(bias, np.full(c_out, -3.0, "float32"))
        assert gate.get_config()["activation"] == "sigmoid"
        gate_params += kernel.size + bias.size
        assert f"{u}_carry" in consumers(model, f"{u}_gate")
        has_residual_gate = f"{u}_residual_gated" in [l.name for l in model.layers]
        assert has_residual_gate == exclusive
    assert metrics_lib.count_params(model) == plain_params + gate_params


def _combine_on_constants(variant, **kw):
    """Runs variants.combine on x = 0, h(x) = 2, F(x) = 3 (so the gate is sigmoid(b_g))."""
    x, s, r = (keras.Input((4, 4, c)) for c in (2, 3, 3))
    out = variants.combine(x, s, r, variant=variant, filters=3, strides=1, name="u", **kw)
    model = keras.Model([x, s, r], out)
    ones = np.ones((1, 4, 4, 3), "float32")
    return np.asarray(model([np.zeros((1, 4, 4, 2), "float32"), 2 * ones, 3 * ones]))


@pytest.mark.parametrize("variant, kw, expected", [
    ("identity", {}, 2 + 3),
    # [2] Table 1: 0.5 on both paths ("frozen gating"), or 0.5 on the shortcut only.
    ("scaling", dict(scale=0.5), 0.5 * 2 + 0.5 * 3),
    ("scaling", dict(scale=0.5, residual_scale=1.0), 0.5 * 2 + 3),
    # g = sigmoid(-1): exclusive (1 - g) h + g F; shortcut-only (1 - g) h + F.
    ("exclusive_gating", dict(gate_bias_init=-1.0),
     (1 - 1 / (1 + np.e)) * 2 + 1 / (1 + np.e) * 3),
    ("shortcut_only_gating", dict(gate_bias_init=-1.0), (1 - 1 / (1 + np.e)) * 2 + 3),
])
def test_combine_computes_the_papers_formula(variant, kw, expected):
    np.testing.assert_allclose(_combine_on_constants(variant, **kw), expected, rtol=1e-6)


def test_dropout_shortcut_differs_between_training_and_inference():
    model, reference = build(shortcut_variant="dropout"), build()
    model.set_weights(reference.get_weights())  # dropout has no weights: same structure
    x = np.random.default_rng(1).normal(size=(4, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(model(x, training=False), reference(x, training=False),
                               atol=1e-6)
    assert not np.allclose(model(x, training=True), reference(x, training=True), atol=1e-4)
    assert [l.rate for l in model.layers if isinstance(l, layers.Dropout)] == [0.5] * 3


def test_conv1x1_projects_every_unit_like_option_c():
    model = build(shortcut_variant="conv1x1")
    assert [l.name for l in model.layers if l.name.endswith("_shortcut_conv")] == [
        f"{u}_shortcut_conv" for u in UNIT_NAMES]
    assert not any(isinstance(l, blocks.ZeroPadShortcut) for l in model.layers)
    assert metrics_lib.count_params(model) == metrics_lib.count_params(build(shortcut="C"))


def test_scaling_multiplies_both_paths_by_half():
    model = build(shortcut_variant="scaling")
    for u in UNIT_NAMES:
        assert model.get_layer(f"{u}_shortcut_scale").scale == 0.5
        assert model.get_layer(f"{u}_residual_scale").scale == 0.5
        assert consumers(model, f"{u}_bn2") == [f"{u}_residual_scale"]


def test_gated_model_saves_and_loads(tmp_path):
    model = build(shortcut_variant="exclusive_gating", unit="relu_only_preact")
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    x = np.random.default_rng(2).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-6)


@pytest.mark.parametrize("kw, bad, valid", [
    (dict(unit="preact"), "'preact'", "'relu_only_preact'"),
    (dict(shortcut_variant="highway"), "'highway'", "'exclusive_gating'"),
    (dict(shortcut_variant="dropout", dropout_rate=1.0), "1.0", "[0, 1)"),
    (dict(shortcut_variant="scaling", scale="half"), "'half'", "number"),
    (dict(unit="bn_after_add", plain=True), "plain", "plain=False"),
    (dict(unit="full_preact", shortcut_variant="scaling"), "'scaling'", "full_preact"),
    (dict(shortcut_variant="conv1x1", shortcut="A"), "'A'", "'C'"),
])
def test_invalid_variants_raise_before_building(monkeypatch, kw, bad, valid):
    def no_layers(*args, **kwargs):
        raise AssertionError("a layer was built before validation")

    monkeypatch.setattr(keras, "Input", no_layers)
    with pytest.raises(ValueError) as info:
        build(**kw)
    assert bad in str(info.value) and valid in str(info.value)


@pytest.mark.parametrize("overrides, message", [
    (dict(version=2, depth=11, unit="bn_after_add"), "needs version 1"),
    (dict(unit="gated"), "'relu_only_preact'"),
    (dict(shortcut_variant="gate"), "'shortcut_only_gating'"),
    (dict(shortcut_dropout=1.5, shortcut_variant="dropout"), "dropout_rate"),
])
def test_config_rejects_bad_variants(overrides, message):
    with pytest.raises(config_lib.ConfigError, match=message):
        config_lib.resolve(overrides=overrides)


def test_config_variant_reaches_the_model():
    config = config_lib.resolve(overrides=dict(
        depth=8, shortcut_variant="shortcut_only_gating", gate_bias_init=-4.0))
    assert config.net_name == "resnet8_v1_shortcut_only_gating"
    model = build_lib.build_model(config)
    np.testing.assert_array_equal(model.get_layer("stage1_block1_gate").get_weights()[1],
                                  np.full(16, -4.0, "float32"))
