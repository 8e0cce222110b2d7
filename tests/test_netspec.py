"""A net as one value (issue #39): `NetSpec` validates itself against its preset, its name parses
back to it, and `build_model(name)` builds the net of that name, weights included."""

import re

import numpy as np
import pytest

from cifar_resnet.spec import experiments
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
    # The names tell the variants apart: He 2016's units and shortcuts, v2 basic, option B.
    assert {"resnet110_v1_bn_after_add", "resnet110_v2_basic", "resnet164_v2",
            "resnet110_v1_exclusive_gating", "plain110_v1"} <= names


@pytest.mark.parametrize("name, fields", [
    ("resnet56", dict(version=1, depth=56, block="basic", shortcut="A")),
    ("resnet56_v2", dict(version=2, depth=56, block="bottleneck", shortcut="B")),
    ("resnet110_v2_basic", dict(version=2, block="basic", shortcut="A")),
    ("plain20", dict(plain=True, shortcut=None)),
    ("resnet20_v1_optionB", dict(shortcut="B")),
    ("resnet110_v1_relu_before_add", dict(unit="relu_before_add")),
    ("resnet20_v1_keras-example", dict(preset="keras-example", shortcut="B")),
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
])
def test_a_bad_name_is_one_line_naming_it(name, message):
    with pytest.raises(ValueError, match=re.escape(message)) as e:
        NetSpec.parse(name)
    assert "\n" not in str(e.value)


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
