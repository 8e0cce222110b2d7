"""Files the project writes are readable by others: atomic writes respect the umask."""

import os
import pathlib
import stat

import pytest

from cifar_resnet.results import evaluate, plots
from cifar_resnet.run import train
from cifar_resnet.spec import files


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_text_follows_the_umask(tmp_path):
    for mask, expected in ((0o022, 0o644), (0o002, 0o664), (0o077, 0o600)):
        old = os.umask(mask)
        try:
            assert files.current_umask() == mask
            path = tmp_path / f"umask{mask:03o}.txt"
            files.atomic_write_text(path, "x")
            plain = tmp_path / f"plain{mask:03o}.txt"
            plain.write_text("x")  # what a normal open() gives, the reference
        finally:
            os.umask(old)
        assert _mode(path) == expected == _mode(plain)


@pytest.mark.slow
def test_run_eval_and_report_files_are_0644_under_umask_022(umask_022, tiny_config, tmp_path):
    run = tmp_path / "runs" / "resnet8" / "seed0"
    train.run_experiment(tiny_config, run, verbose=0)
    evaluate.evaluate(run, checkpoint="final")
    report = plots.write_report(run, tmp_path / "report")
    written = [run / name for name in ("config.json", "history.csv", "metrics.json", "data.json",
                                       "best.keras", "final.keras")]
    written += sorted((run / "eval").iterdir()) + [tmp_path / "report" / "results.md"]
    written += [p for p in map(pathlib.Path, report["files"]) if p.is_file()]
    assert any(p.name.endswith(".json") for p in (run / "eval").iterdir())
    assert {str(p): oct(_mode(p)) for p in written} == {str(p): oct(0o644) for p in written}
