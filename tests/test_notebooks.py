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


# Issue #26: a relative $CIFAR_RESNET_RUNS is the caller's; other runs' notebooks go elsewhere.

def test_a_relative_runs_variable_is_taken_from_the_callers_folder(tmp_path, monkeypatch):
    (tmp_path / "runs" / "mine").mkdir(parents=True)
    monkeypatch.setenv("CIFAR_RESNET_RUNS", "runs/mine")
    assert execute.resolve_runs_variable(cwd=tmp_path) == str(tmp_path / "runs" / "mine")
    assert os.environ["CIFAR_RESNET_RUNS"] == str(tmp_path / "runs" / "mine")  # for the kernel
    monkeypatch.setenv("CIFAR_RESNET_RUNS", "runs/typo")
    with pytest.raises(SystemExit, match=r"CIFAR_RESNET_RUNS '.*runs/typo' is not a folder"):
        execute.resolve_runs_variable(cwd=tmp_path)


def test_every_notebook_resolves_a_relative_runs_variable_from_pwd():
    for path in NOTEBOOKS:
        setup = nbformat.read(path, as_version=4).cells[1].source
        assert 'RUNS = os.path.join(os.environ.get("PWD", os.getcwd()), RUNS)' in setup


@pytest.fixture
def fake_kernel(monkeypatch):
    """execute() without a kernel: the notebook as read, marked, so writes can be told apart."""
    def run(path, timeout=900):
        nb = nbformat.read(path, as_version=4)
        nb.metadata["executed_on"] = os.environ.get("CIFAR_RESNET_RUNS", "default")
        return nb
    monkeypatch.setattr(execute, "execute", run)


def test_on_other_runs_the_committed_notebooks_are_left_alone(tmp_path, monkeypatch,
                                                              fake_kernel):
    committed = {p: p.read_bytes() for p in NOTEBOOKS}
    runs = tmp_path / "runs"
    runs.mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CIFAR_RESNET_RUNS", "runs")
    assert execute.main([]) == 0
    assert {p: p.read_bytes() for p in NOTEBOOKS} == committed
    written = sorted(p.name for p in (runs / "notebooks").iterdir())
    assert written == [p.name for p in NOTEBOOKS]
    nb = nbformat.read(runs / "notebooks" / NOTEBOOKS[0].name, as_version=4)
    assert nb.metadata["executed_on"] == str(runs)
    assert execute.main(["--out", str(tmp_path / "elsewhere")]) == 0
    assert len(list((tmp_path / "elsewhere").glob("*.ipynb"))) == 3


def test_in_place_updates_the_notebooks_named(tmp_path, monkeypatch, fake_kernel):
    copy = tmp_path / NOTEBOOKS[0].name
    copy.write_bytes(NOTEBOOKS[0].read_bytes())
    (tmp_path / "runs").mkdir()
    monkeypatch.setenv("CIFAR_RESNET_RUNS", str(tmp_path / "runs"))
    assert execute.main(["--in-place", str(copy)]) == 0
    assert nbformat.read(copy, as_version=4).metadata["executed_on"] == str(tmp_path / "runs")
    assert not (tmp_path / "runs" / "notebooks").exists()


@pytest.mark.slow
def test_a_relative_runs_folder_executes_from_the_callers_folder(sweep, tmp_path):
    """The whole path, through a kernel: CIFAR_RESNET_RUNS=report from tmp_path."""
    import subprocess
    import sys
    plots.write_report(sweep, tmp_path / "report")
    env = {**os.environ, "CIFAR_RESNET_RUNS": "report", "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, str(ROOT / "notebooks" / "execute.py"),
                    str(ROOT / "notebooks" / "02_results_vs_paper.ipynb")], cwd=tmp_path,
                   env=env, check=True, timeout=600, capture_output=True)
    nb = nbformat.read(tmp_path / "report" / "notebooks" / "02_results_vs_paper.ipynb",
                       as_version=4)
    assert EXPECTED["02_results_vs_paper"] in _text(_outputs(nb))


# Issue #40 item 3: the notebooks' `--data-dir`, for Figure 7's test data.

def test_the_data_dir_is_taken_from_the_callers_folder_and_given_to_the_kernel(tmp_path,
                                                                              monkeypatch):
    monkeypatch.delenv("CIFAR_RESNET_DATA", raising=False)
    assert execute.resolve_data_variable(cwd=tmp_path) is None  # each run's data.json
    (tmp_path / "data").mkdir()
    assert execute.resolve_data_variable("data", cwd=tmp_path) == str(tmp_path / "data")
    assert os.environ["CIFAR_RESNET_DATA"] == str(tmp_path / "data")  # the kernel inherits it
    monkeypatch.setenv("CIFAR_RESNET_DATA", "typo")
    with pytest.raises(SystemExit) as info:
        execute.resolve_data_variable(cwd=tmp_path)
    assert str(info.value) == (f"execute.py: error: data '{tmp_path / 'typo'}' (--data-dir or "
                               "CIFAR_RESNET_DATA) does not exist; expected a CIFAR folder or "
                               "archive, or a folder holding one")


def test_execute_main_passes_its_data_dir_on(tmp_path, monkeypatch, fake_kernel):
    seen = []
    monkeypatch.setattr(execute, "execute", lambda path, timeout=900: seen.append(
        os.environ.get("CIFAR_RESNET_DATA")) or nbformat.read(path, as_version=4))
    monkeypatch.delenv("CIFAR_RESNET_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "cifar").mkdir()
    monkeypatch.setenv("CIFAR_RESNET_RUNS", "runs")
    assert execute.main(["--data-dir", "cifar", str(NOTEBOOKS[2])]) == 0
    assert seen == [str(tmp_path / "cifar")]


def test_make_notebooks_passes_data_dir(tmp_path):
    import subprocess
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    out = subprocess.run(["make", "--no-print-directory", "-n", "notebooks", "DATA_DIR=~/cifar",
                          f"VENV={tmp_path / 'venv'}"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60, check=True).stdout.replace("\\\n", " ")
    [line] = [line for line in out.splitlines() if "notebooks/execute.py" in line]
    assert line.split()[-2:] == ["--data-dir", "~/cifar"]


def test_figure7s_notebook_loads_the_data_dir_it_is_given(tmp_path, monkeypatch):
    """Notebook 03's cells, run in this process with the loaders replaced: the data folder of
    $CIFAR_RESNET_DATA reaches both places that read test images (no kernel, no training)."""
    import types

    import numpy as np

    from cifar_resnet.results import analysis
    run = types.SimpleNamespace(status="complete", config={"version": 1}, net="resnet8", seed=0)
    calls = []
    monkeypatch.setattr(analysis, "find_runs", lambda runs: [run])
    monkeypatch.setattr(plots, "figure7", lambda runs, **kw: calls.append(("figure7", kw)))
    monkeypatch.setattr(analysis, "run_layer_responses", lambda r, **kw: calls.append(
        ("run_layer_responses", kw)) or (["conv"], np.ones(1)))
    monkeypatch.setenv("CIFAR_RESNET_RUNS", str(tmp_path))
    monkeypatch.setenv("CIFAR_RESNET_DATA", str(tmp_path / "cifar"))
    nb = nbformat.read(ROOT / "notebooks" / "03_layer_responses.ipynb", as_version=4)
    code = "\n".join(line for c in nb.cells if c.cell_type == "code"
                     for line in c.source.splitlines() if not line.startswith("%"))
    exec(compile(code, "03_layer_responses", "exec"), {})
    assert calls == [("figure7", {"data_dir": str(tmp_path / "cifar")}),
                     ("run_layer_responses", {"data_dir": str(tmp_path / "cifar")})]
