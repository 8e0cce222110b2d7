"""Installed like a library: a non-editable install runs `sweep --dry-run` from any folder, its
experiment files shipped inside the package (pyproject.toml maps experiments/ to
cifar_resnet/experiment_files)."""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_wheel_install_runs_sweep_dry_run_from_another_folder(tmp_path):
    source = tmp_path / "source"  # a copy: building writes build/ and *.egg-info beside it
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.egg-info")
    for name in ("cifar_resnet", "experiments"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", source)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path / "wheel"), str(source)], check=True, timeout=300)
    wheel, = (tmp_path / "wheel").glob("*.whl")
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}  # the installed copy, not the source tree
    env.pop("CIFAR_RESNET_EXPERIMENTS", None)
    result = subprocess.run([sys.executable, "-m", "cifar_resnet", "sweep", "table6",
                             "--dry-run"], cwd=elsewhere, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("6 run(s): 0 done, 0 running, 0 partial, 6 pending")
    assert "pending  runs/table6/resnet1202/seed0" in result.stdout
    found = subprocess.run([sys.executable, "-c", "import cifar_resnet.spec.experiments as e; "
                            "print(e.experiments_dir())"], cwd=elsewhere, env=env,
                           capture_output=True, text=True, timeout=300)
    assert found.stdout.strip() == str(target / "cifar_resnet" / "experiment_files")
