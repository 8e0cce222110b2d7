"""experiments/run_pinned.sh: a long sweep keeps one precision across sessions and machines.

`precision: auto` resolves per machine (bfloat16 only where the CPU has it natively), so the
script passes the precision of the experiment's first run to every later start.
"""

import json
import pathlib
import subprocess
import time

from cifar_resnet.spec import experiments

SCRIPT = pathlib.Path(__file__).parent.parent / "experiments" / "run_pinned.sh"


def _run(home, *args, **env):
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PINNED_HOME": str(home), **env})


def _runs(home, experiment="demo", **precisions):
    for net, precision in precisions.items():
        run = home / "runs" / experiment / net / "seed0"
        run.mkdir(parents=True)
        (run / "config.json").write_text(json.dumps({"depth": 20, "precision": precision}))


def _pinned_home(tmp_path):
    """A pinned home as `start` leaves it, with a stand-in Python that records its arguments."""
    code = tmp_path / "code"
    subprocess.run(["git", "init", "-q", str(code)], check=True)
    subprocess.run(["git", "-C", str(code), "-c", "user.name=t", "-c", "user.email=t@t",
                    "commit", "-q", "--allow-empty", "-m", "pin"], check=True)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    argv = tmp_path / "argv"
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\necho "$@" > {argv}.tmp && mv {argv}.tmp {argv}\n')
    python.chmod(0o755)
    (venv / ".installed").touch()
    data = tmp_path / "data.tar.gz"
    data.touch()
    return argv, data


def _recorded_args(argv):
    deadline = time.monotonic() + 10
    while not argv.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return argv.read_text().split()


def test_before_any_run_the_precision_is_left_to_auto(tmp_path):
    r = _run(tmp_path, "precision", "demo")
    assert r.returncode == 0 and r.stdout.strip() == "auto (no run has started)"


def test_the_experiment_keeps_the_precision_its_runs_started_in(tmp_path):
    _runs(tmp_path, resnet20="mixed_bfloat16", resnet56="mixed_bfloat16")
    r = _run(tmp_path, "precision", "demo")
    assert r.returncode == 0 and r.stdout.strip() == "mixed_bfloat16"


def test_runs_in_two_precisions_are_an_error(tmp_path):
    _runs(tmp_path, resnet20="mixed_bfloat16", plain20="float32")
    r = _run(tmp_path, "precision", "demo")
    assert r.returncode == 2
    assert "different precisions: float32 mixed_bfloat16" in r.stderr


def test_start_passes_the_runs_precision_to_the_pinned_sweep(tmp_path):
    argv, data = _pinned_home(tmp_path)
    _runs(tmp_path, resnet20="mixed_bfloat16")
    r = _run(tmp_path, "start", "demo", DATA_DIR=str(data))
    assert r.returncode == 0, r.stderr
    args = _recorded_args(argv)
    assert args[:4] == ["-m", "cifar_resnet", "sweep", "demo"]
    assert args[-2:] == ["--set", "precision=mixed_bfloat16"]
    assert "precision mixed_bfloat16" in (tmp_path / "sweep.log").read_text()


def test_start_refuses_runs_in_two_precisions_before_it_clones_or_installs(tmp_path):
    _runs(tmp_path, resnet20="mixed_bfloat16", plain20="float32")
    r = _run(tmp_path, "start", "demo")
    assert r.returncode == 2 and "different precisions" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]


def test_status_prints_the_commands_start_would_run_in_the_runs_precision(tmp_path):
    # Runs in the policy `precision: auto` resolved to on the first machine: the status's commands
    # must carry it, not `auto`, which resolves anew on whatever machine reads them.
    _runs(tmp_path, "full_repro", resnet20="mixed_bfloat16")
    data = tmp_path / "data.tar.gz"
    data.touch()
    r = _run(tmp_path, "status", "full_repro", DATA_DIR=str(data))
    assert r.returncode == 0, r.stderr
    commands = [line for line in r.stdout.splitlines() if "cifar_resnet train" in line]
    assert len(commands) == len(experiments.load_experiment("full_repro").nets)  # 7
    assert all("--set precision=mixed_bfloat16" in c for c in commands), commands


def test_a_lost_experiment_restarts_in_the_precision_asked_not_this_machines(tmp_path):
    # No run left (the directories were lost): PRECISION is the campaign's precision.
    argv, data = _pinned_home(tmp_path)
    r = _run(tmp_path, "start", "demo", DATA_DIR=str(data), PRECISION="mixed_bfloat16")
    assert r.returncode == 0, r.stderr
    assert _recorded_args(argv)[-2:] == ["--set", "precision=mixed_bfloat16"]
    assert "precision mixed_bfloat16" in (tmp_path / "sweep.log").read_text()


def test_a_precision_asked_against_the_runs_own_is_refused(tmp_path):
    argv, data = _pinned_home(tmp_path)
    _runs(tmp_path, resnet20="float32")
    r = _run(tmp_path, "start", "demo", DATA_DIR=str(data), PRECISION="mixed_bfloat16")
    assert r.returncode == 2
    assert "PRECISION=mixed_bfloat16, but the runs" in r.stderr and "float32" in r.stderr
    assert not argv.exists() and not (tmp_path / "sweep.log").exists()
