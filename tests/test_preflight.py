"""One pre-flight for the command line and the library (issue #39): spec/preflight.check reads a
run directory once and answers new, resume, finished or a one-line refusal; a config is
validated once per command, and config.json read once."""

import os
import pathlib
import signal

import pytest

from cifar_resnet.__main__ import main
from cifar_resnet.run import reliability, train
from cifar_resnet.spec import config as config_lib, files, preflight, rundir

from cli_runs import _At

TINY = ["--dataset", "synthetic", "--depth", "8", "--batch-size", "64",
        "--set", "synthetic_train=256", "--set", "synthetic_test=128"]


@pytest.fixture
def counted(monkeypatch):
    """Counts the config checks (Config._check) and the reads of config.json files."""
    seen = {"checks": 0, "config_json_reads": 0}
    check, read = config_lib.Config._check, config_lib._read_mapping  # every file read

    def counting_check(self):
        seen["checks"] += 1
        return check(self)

    def counting_read(path):
        if pathlib.Path(path).name == rundir.CONFIG:
            seen["config_json_reads"] += 1
        return read(path)

    monkeypatch.setattr(config_lib.Config, "_check", counting_check)
    monkeypatch.setattr(config_lib, "_read_mapping", counting_read)
    return seen


def _reset(seen):
    seen.update(checks=0, config_json_reads=0)


@pytest.mark.slow
def test_a_command_checks_its_config_once_and_reads_config_json_once(counted, tmp_path):
    workdir = tmp_path / "run"
    args = ["train", *TINY, "--epochs", "2", "--workdir", str(workdir)]
    # Interrupted inside its second epoch, in-process (the state at iteration 6 is saved).
    config = config_lib.resolve(overrides=dict(
        dataset="synthetic", depth=8, batch_size=64, synthetic_train=256, synthetic_test=128,
        epochs=2))
    sigint = _At(1, lambda model: os.kill(os.getpid(), signal.SIGINT), batch=1)
    with pytest.raises(reliability.Interrupted):
        train.run_experiment(config, workdir, callbacks=[sigint], verbose=0)
    _reset(counted)
    assert main(args) == 0  # the resume: the request, then config.json, each once
    assert counted == {"checks": 2, "config_json_reads": 1}
    _reset(counted)
    assert main(args) == 0  # finished: answered by the pre-flight alone
    assert counted == {"checks": 2, "config_json_reads": 1}
    _reset(counted)
    assert main(["train", *TINY, "--epochs", "1", "--workdir", str(tmp_path / "new")]) == 0
    assert counted == {"checks": 1, "config_json_reads": 0}


def test_a_config_is_not_checked_again_unchanged_and_is_when_changed(counted):
    config = config_lib.resolve(overrides={"depth": 20})
    assert counted["checks"] == 1
    assert config.validate() is config and counted["checks"] == 1
    config.depth = 21  # a field set by hand after resolve: checked anew, and refused
    with pytest.raises(config_lib.ConfigError, match="depth 21"):
        config.validate()


def test_the_preflight_answers_new_then_refuses_another_config_and_precision(tmp_path):
    request = config_lib.resolve(overrides={"dataset": "synthetic", "depth": 8})
    new = preflight.check(request, tmp_path / "run", precision="float32")
    assert new.saved is None and new.finished is None and new.precision_known
    (tmp_path / "run").mkdir()
    config_lib.save(new.config, tmp_path / "run" / rundir.CONFIG)
    again = preflight.check(request, tmp_path / "run", precision="float32")
    assert again.saved == new.config and again.config == new.config and again.finished is None
    files.write_json(tmp_path / "run" / rundir.METRICS, {"status": "complete"})
    assert preflight.check(request, tmp_path / "run", precision="float32").finished == {"status": "complete"}
    other = config_lib.resolve(overrides={"dataset": "synthetic", "depth": 14})
    with pytest.raises(config_lib.ConfigError, match=r"another config \(depth: 8 -> 14\)"):
        preflight.check(other, tmp_path / "run", precision="float32")
    with pytest.raises(config_lib.ConfigError, match="trained in float32, but this run would "
                                                     "train in mixed_bfloat16"):
        preflight.check(request, tmp_path / "run", precision="mixed_bfloat16")
    # Where only the backend can tell the precision (a GPU), the rest is still compared.
    unknown = preflight.check(request, tmp_path / "run", precision=None)
    assert not unknown.precision_known
    with pytest.raises(config_lib.ConfigError, match="another config"):
        preflight.check(other, tmp_path / "run", precision=None)


def test_the_preflight_refuses_a_foreign_folder_and_a_link(tmp_path):
    request = config_lib.resolve(overrides={"dataset": "synthetic", "depth": 8})
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("x")
    with pytest.raises(config_lib.ConfigError, match="holds files but no run"):
        preflight.check(request, tmp_path / "mine", precision="float32")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / rundir.HISTORY).symlink_to(tmp_path / "mine" / "thesis.tex")
    with pytest.raises(files.LinkError):
        preflight.check(request, tmp_path / "run", precision="float32")
