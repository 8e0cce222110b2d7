"""A net as one value (issue #39): `NetSpec` validates itself against its preset, its name parses
back to it, and `build_model(name)` builds the net of that name, weights included."""

import re

import numpy as np
import pytest

from cifar_resnet.spec import config as config_lib, experiments
from cifar_resnet.spec.architecture import NetSpec


def _experiment_nets():
    for name in experiments.list_experiments():
        experiment = experiments.load_experiment(name)
        for net in experiment.nets:
            yield name, net, experiments.run_config(experiment, net, 0)


EXPERIMENT_NETS = list(_experiment_nets())


def test_every_net_the_experiments_train_round_trips_through_its_name():
    assert len(EXPERIMENT_NETS) > 40
    names = set()
    for experiment, net, config in EXPERIMENT_NETS:
        spec = config.net
        assert NetSpec.parse(spec.name) == spec, (experiment, net, spec.name)
        names.add(spec.name)
    # The names tell the variants apart: He 2016's units and shortcuts and their parameters,
    # v2 basic, option B.
    assert {"resnet110_v1_bn_after_add", "resnet110_v2_basic", "resnet164_v2",
            "resnet110_v1_exclusive_gating", "resnet110_v1_exclusive_gating_bg0.0",
            "resnet110_v1_scaling_residual1.0", "plain110_v1"} <= names


@pytest.mark.parametrize("name, fields", [
    ("resnet56", dict(version=1, depth=56, block="basic", shortcut="A")),
    ("resnet56_v2", dict(version=2, depth=56, block="bottleneck", shortcut="B")),
    ("resnet110_v2_basic", dict(version=2, block="basic", shortcut="A")),
    ("plain20", dict(plain=True, shortcut=None)),
    ("resnet20_v1_optionB", dict(shortcut="B")),
    ("resnet110_v1_relu_before_add", dict(unit="relu_before_add")),
    ("resnet20_v1_keras-example", dict(preset="keras-example", shortcut="B")),
    ("resnet110_v1_exclusive_gating_bg-5.0", dict(gate_bias_init=-5.0)),
    ("resnet20_v1_scaling_scale0.25_residual2.0", dict(scale=0.25, residual_scale=2.0)),
    ("resnet20_v1_dropout_rate0.3", dict(dropout_rate=0.3, gate_bias_init=-6.0)),
])
def test_a_name_gives_its_net_and_the_net_its_name(name, fields):
    spec = NetSpec.parse(name)
    assert {k: getattr(spec, k) for k in fields} == fields
    assert NetSpec.parse(spec.name) == spec and spec.name.startswith(name.split("_")[0])


@pytest.mark.parametrize("name, message", [
    ("resnet21", "depth 21 is not 6n+2"),
    ("resnet56_v3", "version"),
    ("resnet56_v1_wide", "unknown part 'wide'; known: "),
    ("vgg16", "is not resnet|plain<depth>"),
    ("resnet56_v2_basic_keras-example", "preset 'keras-example') has only block='bottleneck'"),
    ("resnet20_v1_bg0.0", "shortcut variant 'identity' has no parameter 'bg'"),
    ("resnet20_v1_dropout_rate1.5", "dropout_rate must be a number in [0, 1)"),
    ("resnet20_v1_scaling_scale0.5x", "unknown part 'scale0.5x'"),
])
def test_a_bad_name_is_one_line_naming_it(name, message):
    with pytest.raises(ValueError, match=re.escape(message)) as e:
        NetSpec.parse(name)
    assert "\n" not in str(e.value)


def test_a_spec_is_one_value_per_net():
    # Parameters the variant does not read, and residual_scale = 1 - scale, build the same net.
    assert NetSpec(gate_bias_init=-3, dropout_rate=0.1, residual_scale=4.0) == NetSpec()
    assert NetSpec(shortcut_variant="scaling", residual_scale=0.5) == NetSpec(
        shortcut_variant="scaling")
    assert NetSpec(shortcut_variant="dropout", dropout_rate=0).dropout_rate == 0.0
    with pytest.raises(ValueError, match="gate_bias_init must be a finite number"):
        NetSpec(shortcut_variant="exclusive_gating", gate_bias_init=float("nan"))


def test_a_config_gives_the_whole_net_and_the_constructor_its_arguments():
    config = config_lib.resolve(overrides=dict(
        depth=8, shortcut_variant="scaling", shortcut_scale=0.25, residual_scale=2.0))
    spec = config.net
    assert (spec.scale, spec.residual_scale) == (0.25, 2.0)
    assert spec.name == "resnet8_v1_scaling_scale0.25_residual2.0"
    assert spec.constructor_kwargs() == dict(
        depth=8, block="basic", plain=False, preset="paper", unit="original",
        shortcut_variant="scaling", gate_bias_init=-6.0, scale=0.25, residual_scale=2.0,
        dropout_rate=0.5)
    assert NetSpec.parse("resnet164_v2").constructor_kwargs() == dict(
        depth=164, block="bottleneck", plain=False, preset="paper")
    # Config.validate checks the net by making it.
    with pytest.raises(config_lib.ConfigError, match="^scale must be a number; got 'half'"):
        config_lib.Config(shortcut_variant="scaling", shortcut_scale="half").validate()


def test_build_model_builds_a_spec_with_its_variant_parameters():
    from cifar_resnet.nets import models
    config = config_lib.resolve(overrides=dict(
        depth=8, shortcut_variant="scaling", shortcut_scale=0.25, residual_scale=2.0))
    model = models.build_model(config.net)
    assert model.get_layer("stage1_block1_shortcut_scale").scale == 0.25
    assert model.get_layer("stage1_block1_residual_scale").scale == 2.0
    direct = models.resnet_v1(**config.net.constructor_kwargs())
    assert [l.get_config() for l in direct.layers] == [l.get_config() for l in model.layers]


@pytest.mark.slow
def test_build_model_by_name_is_the_net_the_runner_builds():
    from cifar_resnet.nets import models
    from cifar_resnet.run import build
    seen = set()
    for _, _, config in EXPERIMENT_NETS:
        spec = config.net
        if spec in seen or spec.depth > 56 or config.dataset != "cifar10":
            continue  # one of each; the deep ones' names are checked above
        seen.add(spec)
        by_name = models.build_model(spec.name)
        runner = build.build_net(config)
        assert [(w.path, w.shape) for w in by_name.weights] == [
            (w.path, w.shape) for w in runner.weights], spec.name
    assert len(seen) >= 8


@pytest.mark.slow
def test_build_model_by_name_loads_the_shipped_weights():
    from cifar_resnet.nets import models
    by_name = models.build_model("resnet56", weights="cifar10")
    direct = models.resnet_v1(input_shape=(32, 32, 3), depth=56, weights="cifar10")
    for a, b in zip(by_name.get_weights(), direct.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="the name gives the depth"):
        models.build_model("resnet56", 20)


def test_a_configs_net_is_built_once_while_its_net_fields_are_unchanged():
    from cifar_resnet.spec import config as config_lib
    config = config_lib.resolve(overrides={"depth": 56})
    assert config.net is config.net and config.net.name == "resnet56_v1"
    config.depth = 110  # a changed field is a new net, never the cached one
    assert config.net.name == "resnet110_v1"
