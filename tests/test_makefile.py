"""The Makefile (issue #26): `make` alone prints the targets and their cost; `make -n`, `-q` and
`-p` run no recipe (no `+` prefix); `make train` passes its variables on as flags.

VENV points at a fake environment whose python only records that it ran, so a test that fails
trains nothing; every make is run with a timeout.
"""

import os
import pathlib
import re
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")

TRAINING_TARGETS = ("train", "table6", "figure6", "v2", "keras-example", "mini-repro", "notebooks",
                    "cpu-repro", "full-repro", "full-repro-bg", "fast-recipe", "fast-recipe-torch", "smoke")


@pytest.fixture
def fake_venv(tmp_path):
    """A VENV whose python appends its arguments to ran.txt, and is already set up."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path / 'ran.txt'}\n")
    python.chmod(0o755)
    stamp = subprocess.run(["sh", "-c", "cat requirements.txt pyproject.toml | cksum"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()[0]
    (venv / f".installed-{stamp}").touch()
    return venv


def make(*args, venv, timeout=60):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    return subprocess.run(["make", "--no-print-directory", *args, f"VENV={venv}"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)


def ran(venv):
    log = venv.parent / "ran.txt"
    return log.read_text() if log.exists() else ""


def test_bare_make_prints_the_targets_with_their_cost_and_runs_nothing(fake_venv):
    result = make(venv=fake_venv)
    assert result.returncode == 0, result.stderr
    assert ran(fake_venv) == ""
    for target in ("setup", "train", "smoke", "test", "notebooks", *TRAINING_TARGETS):
        assert re.search(rf"^  {re.escape(target)} ", result.stdout, re.M), target
    # Every target line says what it costs.
    assert re.search(r"^  table6 .*GPU-hours$", result.stdout, re.M)
    assert re.search(r"^  cpu-repro .*h CPU$", result.stdout, re.M)
    assert "ITERATIONS=N" in result.stdout


def test_every_target_of_the_makefile_is_in_help(fake_venv):
    text = (ROOT / "Makefile").read_text()
    phony = set()
    for block in re.findall(r"^\.PHONY:((?:.*\\\n)*.*)$", text, re.M):
        phony.update(block.replace("\\\n", " ").split())
    listed = make(venv=fake_venv).stdout
    missing = sorted(t for t in phony - {"help", "no-print-db"}
                     if not re.search(rf"^  {re.escape(t)} ", listed, re.M))
    assert not missing


@pytest.mark.parametrize("flag", ["-n", "-q", "-p"])
@pytest.mark.parametrize("target", TRAINING_TARGETS)
def test_make_n_q_p_never_train(flag, target, fake_venv):
    make(flag, target, venv=fake_venv)
    assert ran(fake_venv) == "", f"make {flag} {target} ran the package"


def test_make_p_alone_only_prints(fake_venv):
    result = make("-p", venv=fake_venv)
    assert result.returncode == 0
    assert ran(fake_venv) == ""


def test_no_recipe_line_has_the_plus_prefix():
    recipe_plus = [line for line in (ROOT / "Makefile").read_text().splitlines()
                   if re.match(r"^\t[@-]*\+", line)]
    assert not recipe_plus


def test_make_train_passes_its_variables_as_flags(fake_venv):
    result = make("train", "DEPTH=56", "VERSION=2", "ITERATIONS=20", "PRECISION=float32",
                  "DATA_DIR=/data/cifar", "WORKDIR=/tmp/w", "SEED=3", "PLAIN=1",
                  venv=fake_venv)
    assert result.returncode == 0, result.stderr
    args = ran(fake_venv).split()
    assert args[:3] == ["-m", "cifar_resnet", "train"]
    flags = " ".join(args[3:])
    for expected in ("--depth 56", "--version 2", "--plain", "--iterations 20",
                     "--precision float32", "--data-dir /data/cifar", "--workdir /tmp/w",
                     "--seed 3"):
        assert expected in flags, expected


def test_make_train_epochs(fake_venv):
    make("train", "EPOCHS=3", venv=fake_venv)
    assert "--epochs 3" in ran(fake_venv)


def test_a_sweep_dry_run_lists_and_writes_no_report(fake_venv):
    result = make("cpu-repro", "ARGS=--dry-run", venv=fake_venv)
    assert result.returncode == 0, result.stderr
    lines = ran(fake_venv).splitlines()
    assert len(lines) == 1 and lines[0].startswith("-m cifar_resnet sweep cpu_repro")
    assert "--dry-run" in lines[0]


def test_setup_installs_the_package_editable(fake_venv):
    result = make("-n", "setup", venv=fake_venv.parent / "fresh")
    assert "pip install --quiet -r requirements.txt" in result.stdout
    lines = result.stdout.splitlines()
    requirements = next(i for i, l in enumerate(lines) if "-r requirements.txt" in l)
    editable = next(i for i, l in enumerate(lines) if "--no-deps -e ." in l)  # after them
    assert editable > requirements


def test_full_repro_report_stages_the_pinned_runs_beside_the_committed_ones(fake_venv, tmp_path):
    pinned = tmp_path / "pinned"
    run = pinned / "runs" / "full_repro_110" / "resnet110" / "seed0"
    run.mkdir(parents=True)
    for name, text in (("config.json", "{}"), ("history.csv", "epoch\n0\n1\n")):
        (run / name).write_text(text)
    (pinned / "sweep.log").write_text("pinned log\n")
    out, stage = tmp_path / "out", tmp_path / "stage"
    committed = out / "runs" / "full_repro" / "resnet20" / "seed0"
    committed.mkdir(parents=True)
    (committed / "history.csv").write_text("epoch\n0\n")
    result = make("full-repro-report", f"PINNED_110={pinned}", f"FULL_REPRO_OUT={out}",
                  f"FULL_REPRO_STAGE={stage}", venv=fake_venv)
    assert result.returncode == 0, result.stderr
    staged = stage / "full_repro"
    assert (staged / "resnet110" / "seed0" / "history.csv").read_text() == "epoch\n0\n1\n"
    assert (staged / "resnet110" / "seed0" / "sweep.log").read_text() == "pinned log\n"
    assert (staged / "resnet20" / "seed0" / "history.csv").read_text() == "epoch\n0\n"
    # The pinned code's config.json copies are brought to today's format, then reported.
    assert ran(fake_venv).splitlines()[-2:] == [
        f"-m benchmarks.migrate_config_json {staged}",
        f"-m cifar_resnet report {staged} --out {out} --evaluate"]
