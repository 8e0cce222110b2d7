"""Config: the paper's defaults, presets, precedence, validation, and the training plan."""

import json
import os
import pathlib
import resource
import subprocess
import sys

import pytest

from cifar_resnet.spec import config as config_lib
from cifar_resnet.spec.config import Config, ConfigError

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_defaults_are_the_papers_recipe():
    c = config_lib.resolve()
    assert (c.optimizer, c.lr, c.momentum, c.weight_decay, c.batch_size) == ("sgd", 0.1, 0.9, 1e-4, 128)
    assert (c.iterations, c.lr_milestones, c.lr_factors) == (64000, (0.5, 0.75), (0.1, 0.01))
    assert (c.shortcut, c.normalization, c.augment) == (None, "pixel_mean", True)
    # All 50k training images (the paper's Table 6 nets): no split unless asked for.
    assert c.val_fraction == 0.0 and c.whole_passes is False


def test_plan_of_the_paper_on_50k_and_on_the_45k_split():
    # 50k / 128 = 391 iterations per epoch (the last batch 80 images); 64k -> 164 epochs, the
    # last one partial (whole, 64,124 iterations, with whole_passes); the schedule's milestones
    # stay fractions of the planned 64,000.
    steps, epochs, planned = Config().plan(50000)
    assert (steps, epochs, planned, steps * epochs) == (391, 164, 64000, 64124)
    # 45k images / 128 = 352 iterations per epoch; 64k iterations -> 182 epochs.
    assert Config().plan(45000) == (352, 182, 64000)
    assert Config(epochs=3).plan(45000) == (352, 3, 1056)


@pytest.mark.parametrize("settings, log_every, warmup", [
    ({}, 782, 196),                                  # 391 iterations a pass on 50k at batch 128
    ({"val_fraction": 0.1}, 704, 176),               # 352 a pass on the 45k split
    ({"batch_size": 256}, 392, 98),                 # 196 a pass
    ({"drop_remainder": True}, 780, 195),            # 390 whole batches a pass
    ({"dataset": "synthetic", "synthetic_train": 1000, "batch_size": 100}, 20, 5),
])
def test_iteration_counts_given_in_passes_are_converted_with_the_batch_and_split(
        settings, log_every, warmup, tmp_path):
    config = config_lib.resolve(overrides={**settings, "log_every": "2 passes",
                                           "warmup_iterations": "0.5 passes"})
    assert config.log_every == log_every and config.warmup_iterations == warmup
    config_lib.save(config, tmp_path / "config.json")  # config.json holds iterations
    assert json.loads((tmp_path / "config.json").read_text())["log_every"] == log_every
    assert config_lib.load(tmp_path / "config.json") == config


@pytest.mark.parametrize("value", ["2 epochs", "0 passes", "-1 pass", "passes", "2"])
def test_a_bad_number_of_passes_is_refused_in_one_line(value):
    with pytest.raises(ConfigError, match=r"^log_every must be an int \(iterations\) or a "
                                          r"positive number of passes such as '2 passes'; got"):
        config_lib.resolve(overrides={"log_every": value})


@pytest.mark.parametrize("legacy, precision", [
    ({"mixed_precision": True}, "mixed_bfloat16"),  # before the precision field: bf16 on a CPU
    ({"mixed_precision": False}, "float32"),
    ({"mixed_precision": True, "precision": None}, "mixed_bfloat16"),  # config.json before #13
    ({"mixed_precision": False, "precision": "auto"}, "float32"),  # auto followed the flag
    ({"mixed_precision": True, "precision": "mixed_bfloat16"}, "mixed_bfloat16"),
    ({"mixed_precision": False, "precision": "mixed_float16"}, "mixed_float16"),
    ({}, "float32"),  # before either field
])
def test_a_config_json_of_an_earlier_version_is_refused_until_migrated_once(legacy, precision,
                                                                             tmp_path, capsys):
    """The package reads today's config.json only; benchmarks/migrate_config_json.py turns an
    earlier one into it once, with the policy and the passes its run trained in."""
    from benchmarks import migrate_config_json
    path = tmp_path / "run" / "config.json"
    path.parent.mkdir()
    fields = {k: v for k, v in Config().to_dict().items() if k not in ("precision",
                                                                        "whole_passes")}
    path.write_text(json.dumps({**fields, **legacy}))
    with pytest.raises(ConfigError, match=r"is not of this version \(lacks "
                       r"(precision, )?whole_passes.*\); if an earlier version wrote it, migrate "
                       r"it once: python -m benchmarks.migrate_config_json .*config.json$"):
        config_lib.load(path)
    assert migrate_config_json.main(["--check", str(tmp_path)]) == 1
    before = path.read_text()
    assert migrate_config_json.main(["--check", str(tmp_path)]) == 1 and path.read_text() == before
    assert migrate_config_json.main([str(tmp_path)]) == 0
    migrated = config_lib.load(path)
    assert (migrated.precision, migrated.whole_passes) == (precision, True)
    assert list(json.loads(path.read_text())) == list(config_lib.FIELDS)
    assert migrate_config_json.main(["--check", str(tmp_path)]) == 0  # once: nothing left
    if "mixed_precision" in legacy:  # a GPU run's flag meant float16
        path.write_text(json.dumps({**fields, **legacy}))
        assert migrate_config_json.main(["--gpu", str(path)]) == 0
        on_gpu = (precision.replace("bfloat16", "float16")
                  if legacy.get("precision") in (None, "auto") else precision)
        assert config_lib.load(path).precision == on_gpu
    # The flag itself is gone from config files and --set: one line naming today's field.
    with pytest.raises(ConfigError, match="unknown key mixed_precision \\(did you mean "
                                          "'precision'\\?\\)"):
        config_lib.parse_override("mixed_precision=true")


def test_the_experiments_passes_resolve_to_the_iterations_their_runs_were_made_with():
    """Their committed run directories (docs/) were made with these counts; a change would make
    each of them "another config" on resume."""
    from cifar_resnet.spec import experiments
    fast = experiments.run_config("fast", "resnet20", 0)
    assert (fast.warmup_iterations, fast.log_every) == (391, 782)
    assert experiments.run_config("cpu_repro", "resnet20", 0).log_every == 391
    assert experiments.run_config("mini", "resnet20", 0).log_every == 176


def test_iterations_are_trained_exactly_and_whole_passes_are_asked_for():
    # 400 iterations are 400 (the last of 2 passes has 9), the drops at 200 and 300; before,
    # 400 trained 782 with the drops at 200 and 300.
    assert Config(iterations=400).plan(50000) == (391, 2, 400)
    assert Config(iterations=400).train_iterations(50000) == 400
    assert Config(iterations=400, whole_passes=True).train_iterations(50000) == 782
    # The paper's 64k: exactly, or in whole passes as the experiment files train it.
    assert Config().train_iterations(50000) == 64000
    assert Config(whole_passes=True).train_iterations(50000) == 64124
    assert Config(epochs=164).train_iterations(50000) == 64124


@pytest.mark.parametrize("experiment, net", [
    ("full_repro", "resnet20"), ("full_repro", "plain56"), ("table6", "resnet110"),
    ("figure6", "plain20"), ("v2", "resnet164_v2")])
def test_the_experiments_64k_iterations_stay_164_passes(experiment, net):
    from cifar_resnet.spec import experiments
    config = experiments.run_config(experiment, net, 0)
    assert config.whole_passes is True
    assert config.plan(50000) == (391, 164, 64000)  # the drops at 32k and 48k
    assert config.train_iterations(50000) == 64124


@pytest.mark.parametrize("run", sorted(
    str(p.parent.relative_to(ROOT)) for p in (ROOT / "docs").rglob("config.json")
    if (p.parent / "metrics.json").exists()))
def test_committed_runs_resolve_to_the_iterations_they_were_trained(run):
    """They trained whole passes (before whole_passes existed): migrated once to say so, they
    resume and report as they were trained."""
    from benchmarks import migrate_config_json
    from cifar_resnet.spec import rundir
    assert migrate_config_json.main(["--check", str(ROOT / run)]) == 0
    config = config_lib.load(ROOT / run / "config.json")
    assert config.whole_passes is True
    trained = int(rundir.read_history(ROOT / run / "history.csv")[-1]["iterations"])
    assert config.train_iterations(config.registry_num_train()) == trained


def test_a_run_dir_of_another_split_is_refused_naming_it(tmp_path):
    """No field takes a run directory's value silently: a run made with the 45k/5k split is
    resumed by asking for it (val_fraction was 0.1 by default once)."""
    from cifar_resnet.spec import preflight
    config_lib.save(config_lib.resolve(overrides={"val_fraction": 0.1}), tmp_path / "config.json")
    with pytest.raises(ConfigError, match=r"holds a run with another config \(val_fraction: "
                                          r"0.1 -> 0.0\)"):
        preflight.check(config_lib.resolve(), tmp_path, precision=None)
    asked = config_lib.resolve(overrides={"val_fraction": 0.1})
    assert preflight.check(asked, tmp_path, precision=None).saved == asked


def test_warmup_is_automatic_from_depth_110():
    assert Config(depth=56).resolved_warmup == 0
    assert Config(depth=110).resolved_warmup == 400
    assert Config(depth=110, warmup_iterations=0).resolved_warmup == 0


def test_keras_example_preset():
    c = config_lib.resolve(overrides={"preset": "keras-example"})
    assert (c.optimizer, c.lr, c.batch_size, c.epochs, c.plateau_patience) == (
        "adam", 1e-3, 32, 200, 5)
    assert c.val_fraction == 0.1  # selects on a 45k/5k split, where the example used the test set
    assert c.weight_decay == 2e-4  # the example's L2(1e-4) in the paper's terms


def test_a_preset_has_a_model_side_and_a_recipe_side_under_one_name():
    from cifar_resnet.spec import architecture, presets
    # A preset added to one table only would be refused by half the checks.
    assert list(architecture.MODEL_PRESETS) == list(presets.PRESETS)
    assert presets.DEFAULT in presets.PRESETS


def test_precedence_defaults_preset_file_flags(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("preset: keras-example\nbatch_size: 64\ndepth: 32\n")
    c = config_lib.resolve(str(f), {"depth": 44, "lr": None})
    assert (c.preset, c.optimizer, c.batch_size, c.depth, c.lr) == ("keras-example", "adam", 64, 44, 1e-3)


def test_saved_config_round_trips(tmp_path):
    c = config_lib.resolve(overrides={"depth": 56, "version": 2, "plain": False})
    config_lib.save(c, tmp_path / "config.json")
    assert json.loads((tmp_path / "config.json").read_text())["depth"] == 56
    assert config_lib.load(tmp_path / "config.json") == c


@pytest.mark.parametrize("overrides,match", [
    ({"depth": 21}, r"depth 21.*6n\+2"),
    ({"depth": 20, "version": 2, "block": "bottleneck", "shortcut": "A"}, None),
    ({"version": 3}, r"version 3 is not one of 1, 2"),
    ({"shortcut": "D"}, r"shortcut 'D'"),
    ({"preset": "nope"}, r"preset 'nope' is not one of 'paper', 'keras-example'"),
    ({"epochs": 0}, r"epochs must be >= 1; got 0"),
    ({"batch_size": 0}, r"batch_size must be >= 1"),
    ({"lr": -1.0}, r"lr must be > 0"),
    ({"depth": "20"}, r"depth must be a int; got '20'"),
    ({"val_fraction": 1.0}, r"val_fraction must be in \[0, 1\)"),
])
def test_bad_values_name_the_value_and_the_allowed_ones(overrides, match):
    if match is None:
        config_lib.resolve(overrides=overrides)  # a valid one among them, to be sure
        return
    with pytest.raises(ConfigError, match=match):
        config_lib.resolve(overrides=overrides)


def test_bad_config_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        config_lib.resolve(str(tmp_path / "missing.yaml"))
    (tmp_path / "u.yaml").write_text("depht: 20\n")
    with pytest.raises(ConfigError, match="unknown setting.*depht \\(did you mean 'depth'\\?\\)"):
        config_lib.resolve(str(tmp_path / "u.yaml"))
    (tmp_path / "l.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        config_lib.resolve(str(tmp_path / "l.yaml"))


def _alias_bomb(levels: int = 12) -> str:
    """A YAML value of nested anchors ("billion laughs"): a few hundred bytes for 10^levels items."""
    value = "[&a0 [1,1,1,1,1,1,1,1,1,1]"
    for i in range(1, levels):
        value += f", &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]"
    return value + "]"


@pytest.mark.parametrize("text, match", [
    ("lr_milestones: " + _alias_bomb() + "\n", "more than 100,000 items with its YAML aliases expanded"),
    ("a: &a [*a]\n", "a YAML alias refers to a node that holds it"),
    ("depth: [1, 2\n", "cannot read config file .*: expected ',' or ']', but got '<stream end>' "
                       "at line 2, column 1$"),
    ("x" * (config_lib.MAX_CONFIG_BYTES + 1), "larger than 1,048,576 bytes"),
    ("\n".join(f"k{i}: 1" for i in range(20_000)), r"unknown setting\(s\) k0, k1, k10, k100, "
                                                   r"k1000 and 19,995 more$"),
])
def test_config_files_that_would_exhaust_memory_are_refused_in_one_line(tmp_path, text, match):
    """Issue #38: nested anchors grew memory 35 MB/s (the error message formatted a value of
    10^12 items); a huge file was read whole."""
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as error:
        config_lib.resolve(str(path))
    assert "\n" not in str(error.value) and len(str(error.value)) < 400


def test_a_few_aliases_still_load(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr_milestones: &m [0.5, 0.75]\nlr_factors: [0.1, 0.01]\n")
    assert config_lib.resolve(str(path)).lr_milestones == (0.5, 0.75)


@pytest.mark.parametrize("args, message", [
    (["--config", "/dev/zero"], "cannot read config file /dev/zero: larger than 1,048,576 bytes"),
    (["--config", "LAUGHS"], "more than 100,000 items with its YAML aliases expanded"),
    (["--set", "lr_milestones=" + _alias_bomb()], "more than 100,000 items with its YAML aliases expanded"),
])
def test_cli_config_bombs_refused_at_once_in_little_memory(args, message, tmp_path):
    """Issue #38: `--config /dev/zero` reached 4.7 GB in 10 s; the anchors ran without end."""
    (tmp_path / "laughs.yaml").write_text("lr_milestones: " + _alias_bomb() + "\n")
    args = [str(tmp_path / "laughs.yaml") if a == "LAUGHS" else a for a in args]
    code = ("import resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_AS, (500 << 20, 500 << 20))\n"
            "from cifar_resnet.__main__ import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    result = subprocess.run([sys.executable, "-c", code, "train", "--workdir",
                             str(tmp_path / "run"), *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "run").exists()


def test_set_overrides_parse_yaml_values():
    assert config_lib.parse_override("val_fraction=0") == ("val_fraction", 0)
    assert config_lib.parse_override("lr-milestones=[0.3, 0.6]") == ("lr_milestones", [0.3, 0.6])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        config_lib.parse_override("nonsense=1")
    with pytest.raises(ConfigError, match="unknown key val_fracton \\(did you mean 'val_fraction'"):
        config_lib.parse_override("val_fracton=0")
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        config_lib.parse_override("depth")
    # Issue #38: a 55-line YAML traceback, exit 1.
    with pytest.raises(ConfigError, match=r"^--set 'lr=\[1': cannot read the value as YAML "
                                          r"\(expected ',' or '\]', but got '<stream end>' at "
                                          r"line 1, column 3\)$"):
        config_lib.parse_override("lr=[1")


def test_bad_choices_suggest_the_nearest_value():
    with pytest.raises(ConfigError, match="preset 'keras_example' is not one of 'paper', "
                                          "'keras-example'; did you mean 'keras-example'\\?"):
        config_lib.resolve(overrides={"preset": "keras_example"})
    with pytest.raises(ConfigError, match="shortcut 'a'.*did you mean 'A'"):
        config_lib.resolve(overrides={"shortcut": "a"})


ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_config_and_datasets_import_no_tensorflow():
    """Loading and validating a config, or reading data sets, imports no TensorFlow or Keras."""
    code = ("import sys\n"
            "from cifar_resnet.spec import config, datasets, experiments\n"
            "from cifar_resnet.run import sweep\n"
            "config.resolve(overrides={'depth': 56, 'version': 2, 'shortcut_variant': 'identity'})\n"
            "datasets.make_synthetic(8, 8)\n"
            "loaded = [m for m in ('tensorflow', 'keras', 'jax', 'torch') if m in sys.modules]\n"
            "assert not loaded, loaded\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("args, message", [
    (["--depth", "21"], "depth 21 is not 6n+2"),
    (["--preset", "torch"], "preset 'torch' is not one of 'paper', 'keras-example'"),
    (["--set", "depht=20"], "unknown key depht (did you mean 'depth'?)"),
])
def test_cli_refuses_bad_input_before_importing_tensorflow(args, message, tmp_path):
    """Bad flags are refused without importing TensorFlow, so in well under the seconds its
    import takes. CPU time, not wall time, is bounded: the machine may be loaded (idle: ~0.5 s)."""
    code = ("import sys\n"
            "from cifar_resnet.__main__ import main\n"
            "status = main(sys.argv[1:])\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
            "sys.exit(status)\n")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run([sys.executable, "-c", code, "train", "--workdir",
                             str(tmp_path / "run"), *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr
    assert cpu < 2, f"refusal took {cpu:.1f} s of CPU"
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------
# Issue #25: every field's range, before anything is written or TensorFlow imported.


@pytest.mark.parametrize("overrides,match", [
    ({"momentum": -3}, r"momentum must be in \[0, 1\); got -3"),
    ({"momentum": 1.0}, r"momentum must be in \[0, 1\); got 1.0"),
    ({"momentum": float("nan")}, r"momentum must be a finite number; got nan"),
    ({"weight_decay": float("nan")}, r"weight_decay must be a finite number; got nan"),
    ({"weight_decay": -1e-4}, r"weight_decay must be >= 0"),
    ({"lr": float("inf")}, r"lr must be a finite number; got inf"),
    ({"lr": float("nan")}, r"lr must be a finite number; got nan"),
    ({"warmup_lr": float("-inf")}, r"warmup_lr must be a finite number"),
    ({"warmup_iterations": -5}, r"warmup_iterations must be >= 0 \(or null\); got -5"),
    ({"plateau_patience": -1}, r"plateau_patience must be >= 0 \(or null\); got -1"),
    ({"plateau_factor": 2.0}, r"plateau_factor must be in \(0, 1\); got 2.0"),
    ({"lr_factors": [-1, -2]}, r"lr_factors must be > 0; got \[-1, -2\]"),
    ({"lr_factors": [0.1, float("inf")]}, r"lr_factors must be a list of finite numbers"),
    ({"lr_milestones": ["a", "b"]}, r"lr_milestones must be a list of finite numbers; "
                                    r"got \['a', 'b'\]"),
    ({"lr_milestones": [0.75, 0.5]}, r"lr_milestones must be strictly increasing fractions "
                                     r"in \(0, 1\); got \[0.75, 0.5\]"),
    ({"lr_milestones": [0.5, 1.5]}, r"strictly increasing fractions in \(0, 1\)"),
    ({"seed": -1}, r"seed must be in \[0, 4294967295\]; got -1"),
    ({"seed": 2**32}, r"seed must be in \[0, 4294967295\]; got 4294967296"),
    ({"batch_size": 50001}, r"batch_size 50001 is larger than the 50000 training images of "
                            r"cifar10"),
    ({"batch_size": 45001, "val_fraction": 0.1}, r"larger than the 45000 training images"),
    ({"dataset": "cifar100", "batch_size": 60000}, r"50000 training images of cifar100"),
    ({"dataset": "synthetic", "synthetic_train": 100, "batch_size": 128},
     r"batch_size 128 is larger than the 100 training images of synthetic"),
    ({"depth": 100004}, r"depth 100004 is above 1202, the deepest basic-block net.*19.4M "
                        r"parameters.*--set allow_any_depth=true"),
    ({"depth": 1010, "version": 2}, r"depth 1010 is above 1001, the deepest bottleneck"),
    # Issue #38: upper bounds, named in the message.
    ({"dataset": "synthetic", "synthetic_train": 10**9},
     r"synthetic_train must be <= 50,000 \(CIFAR-10's 50,000 training images.*got 1000000000"),
    ({"dataset": "synthetic", "synthetic_test": 10**7}, r"synthetic_test must be <= 10,000"),
    ({"iterations": 10**20}, r"iterations must be <= 10,000,000 \(156 times the paper's 64k\); "
                             r"got 100000000000000000000"),
    ({"epochs": 10**8}, r"epochs 100000000 are 39,100,000,000 iterations here; at most "
                        r"10,000,000"),
    ({"log_every": 10**30}, r"log_every must be <= 10,000,000"),
    ({"steps_per_execution": 10**19}, r"steps_per_execution must be <= 10,000,000"),
    ({"eval_batch_size": 10**9, "input_pipeline": "device"}, r"eval_batch_size must be <= 60,000"),
    ({"log_every": "1" + "0" * 400 + " passes"}, r"log_every must be an int \(iterations\) or a "
                                                 r"positive number of passes.*\(at most 10,000,000 passes\)"),
    # A value of a million items is quoted by its first few.
    ({"lr_milestones": list(range(10**6))}, r"^lr_milestones \(0, 1, 2, 3, 4, 5, 6, 7, \.\.\.\) "
                                            r"and lr_factors \(0.1, 0.01\) must have the same "
                                            r"length$"),
    ({"lr_milestones": [0.5] * 10**6, "lr_factors": [0.1] * 10**6},
     r"got \[0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, \.\.\.\]$"),
])
def test_every_range_is_checked_in_one_line(overrides, match):
    with pytest.raises(ConfigError, match=match) as error:
        config_lib.resolve(overrides=overrides)
    assert "\n" not in str(error.value)


def test_the_deepest_nets_of_the_papers_pass_and_the_override_allows_deeper():
    config_lib.resolve(overrides={"depth": 1202})
    config_lib.resolve(overrides={"depth": 1001, "version": 2})
    deep = config_lib.resolve(overrides={"depth": 100004, "allow_any_depth": True})
    assert deep.depth == 100004
    # The override is no part of the run's identity: a run made without it resumes with it.
    assert "allow_any_depth" in config_lib.NOT_IDENTITY


@pytest.mark.parametrize("args, message", [
    (["--lr", "inf"], "lr must be a finite number; got inf"),
    (["--lr", "nan"], "lr must be a finite number; got nan"),
    (["--seed", "-1"], "seed must be in [0, 4294967295]"),
    (["--set", "momentum=-3"], "momentum must be in [0, 1); got -3"),
    (["--set", "weight_decay=.nan"], "weight_decay must be a finite number; got nan"),
    (["--set", "lr_milestones=[a,b]"], "lr_milestones must be a list of finite numbers"),
    (["--depth", "100004"], "depth 100004 is above 1202"),
    (["--dataset", "synthetic", "--batch-size", "4096"],
     "batch_size 4096 is larger than the 2048 training images of synthetic"),
    # Issue #38: a YAML traceback (exit 1); a MemoryError; a TensorFlow traceback after
    # config.json, data.json and .lock were written; a refusal after TensorFlow loaded (5.5 s).
    (["--set", "lr=[1"], "--set 'lr=[1': cannot read the value as YAML"),
    (["--dataset", "synthetic", "--set", "synthetic_train=1000000000"],
     "synthetic_train must be <= 50,000"),
    (["--iterations", "100000000000000000000"], "iterations must be <= 10,000,000"),
    (["--set", "eval_batch_size=1000", "--set", "input_pipeline=tfdata"],
     "eval_batch_size=1000 applies to input_pipeline 'device' only"),
])
def test_cli_refuses_out_of_range_values_before_tensorflow_writing_nothing(args, message,
                                                                            tmp_path):
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}  # "auto" is tf.data there
    code = ("import sys\n"
            "from cifar_resnet.__main__ import main\n"
            "status = main(sys.argv[1:])\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
            "sys.exit(status)\n")
    result = subprocess.run([sys.executable, "-c", code, "train", "--workdir",
                             str(tmp_path / "run"), *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, env=env)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "run").exists()  # no config.json, data.json or lock


@pytest.mark.parametrize("backend, pipeline, refused", [
    ("tensorflow", "auto", True), ("jax", "auto", False), ("jax", "tfdata", True),
    ("tensorflow", "device", False)])
def test_device_only_settings_are_checked_against_the_backend_without_importing_it(
        monkeypatch, backend, pipeline, refused):
    """Issue #38: `--set eval_batch_size=1000` was refused only after TensorFlow loaded."""
    monkeypatch.setenv("KERAS_BACKEND", backend)
    if "keras" not in sys.modules:
        assert config_lib.keras_backend() == backend
    else:
        monkeypatch.setattr(config_lib, "keras_backend", lambda: backend)
    config = config_lib.resolve(overrides={"eval_batch_size": 1000, "input_pipeline": pipeline})
    if refused:
        with pytest.raises(ConfigError, match="eval_batch_size=1000 applies to input_pipeline "
                                              "'device' only"):
            config_lib.check_input_pipeline(config)
    else:
        config_lib.check_input_pipeline(config)


def test_every_committed_config_json_is_of_this_version():
    """docs/ and tests/fixtures' current runs were migrated once (the fixture of an earlier
    version, keras3.15-v1-depth8, is kept as that version wrote it, on purpose)."""
    from benchmarks import migrate_config_json
    assert migrate_config_json.main(["--check", str(ROOT / "docs")]) == 0
    assert migrate_config_json.main(["--check", str(ROOT / "tests" / "fixtures" /
                                                    "keras3.15-v1-depth8")]) == 1
