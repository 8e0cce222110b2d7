"""The notebooks are committed executed (they render on GitHub), run from a fresh clone on the
committed report in docs/, and draw a report's folder of runs (nbclient, python3 kernel)."""

import importlib.util
import os
import pathlib

import nbformat
import pytest

from cifar_resnet.results import plots

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
_spec = importlib.util.spec_from_file_location("notebooks_execute", ROOT / "notebooks" / "execute.py")
execute = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(execute)
# What each notebook must show for the report of the tiny sweep (conftest.py's `sweep` fixture).
EXPECTED = {
    "01_degradation_curves": "resnet8 seed0: complete",
    "02_results_vs_paper": "| resnet8 | 0.08M | 10.00 | made up for the test |",
    "03_layer_responses": "resnet8: 7 layers",
}


def _outputs(nb):
    return [out for c in nb.cells if c.cell_type == "code" for out in c.outputs]


def _text(outputs):
    return "".join(out.get("text", "") + out.get("data", {}).get("text/markdown", "")
                   for out in outputs)


def _shows_its_result(stem, outputs):
    """A figure for the figure notebooks, the results table for 02; no error, no stderr."""
    assert not [out for out in outputs if out.output_type == "error"]
    assert not [out for out in outputs if out.get("name") == "stderr"], "noise in the outputs"
    if stem == "02_results_vs_paper":
        assert "| net | params | paper error (%)" in _text(outputs)
    else:
        assert any("image/png" in out.get("data", {}) for out in outputs)


def test_the_three_notebooks_exist_and_read_one_documented_parameter():
    assert [p.name for p in NOTEBOOKS] == ["01_degradation_curves.ipynb",
                                           "02_results_vs_paper.ipynb",
                                           "03_layer_responses.ipynb"]
    readme = (ROOT / "README.md").read_text()
    assert "CIFAR_RESNET_RUNS" in readme and "make notebooks" in readme
    for path in NOTEBOOKS:
        setup = nbformat.read(path, as_version=4).cells[1].source
        [line] = [line for line in setup.splitlines() if line.startswith("RUNS =")]
        default = line.split('"')[-2]
        assert line == f'RUNS = os.environ.get("CIFAR_RESNET_RUNS", "{default}")'
        assert (path.parent / default).resolve().is_relative_to(ROOT / "docs")
        assert (path.parent / default / "results.md").is_file()  # committed


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebooks_carry_their_outputs(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), "run make notebooks"
    _shows_its_result(path.stem, _outputs(nb))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_from_a_fresh_clone_on_the_committed_report(path, monkeypatch):
    monkeypatch.delenv("CIFAR_RESNET_RUNS", raising=False)
    _shows_its_result(path.stem, _outputs(execute.execute(path)))


@pytest.fixture(scope="module")
def report_env(sweep, tmp_path_factory):
    """The report of the tiny sweep (conftest.py, built once), as the notebooks' RUNS."""
    with pytest.MonkeyPatch.context() as mp:
        report = tmp_path_factory.mktemp("notebook_report")
        plots.write_report(sweep, report)
        mp.setenv("CIFAR_RESNET_RUNS", str(report))
        yield report  # the kernel inherits this process's environment


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_draws_a_reports_runs(path, report_env):
    outputs = _outputs(execute.execute(path))
    _shows_its_result(path.stem, outputs)
    assert EXPECTED[path.stem] in _text(outputs)
    assert os.environ["CIFAR_RESNET_RUNS"] == str(report_env)
