"""Every notebook executes without a cell error against a tiny sweep (nbclient, python3 kernel)."""

import pathlib

import nbformat
import pytest
from nbclient import NotebookClient
from test_report import make_tiny_sweep

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
# What each notebook must show for the tiny sweep (see test_report.make_tiny_sweep).
EXPECTED = {
    "01_degradation_curves": "resnet8 seed0: complete",
    "02_results_vs_paper": "| resnet8 | 0.08M | 10.00 | made up for the test |",
    "03_layer_responses": "resnet8: 7 layers",
}


@pytest.fixture(scope="module")
def sweep_env(tmp_path_factory):
    """The tiny sweep of test_report (shared, built once) and the environment notebooks read."""
    base = tmp_path_factory.getbasetemp() / "tiny_sweep"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CIFAR_RESNET_EXPERIMENTS", str(base / "experiments"))
        mp.setenv("CIFAR_RESNET_RUNS", str(make_tiny_sweep(base)))
        mp.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
        yield  # the kernel inherits this process's environment


def test_the_three_notebooks_exist():
    assert [p.name for p in NOTEBOOKS] == ["01_degradation_curves.ipynb",
                                           "02_results_vs_paper.ipynb",
                                           "03_layer_responses.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_on_a_sweep_and_shows_its_result(path, sweep_env):
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        "commit notebooks with cleared outputs"
    # jupyter_client starts the "python3" kernel with this interpreter (the venv's).
    NotebookClient(nb, kernel_name="python3", timeout=120,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    outputs = [out for c in nb.cells if c.cell_type == "code" for out in c.outputs]
    text = "".join(out.get("text", "") + out.get("data", {}).get("text/markdown", "")
                   for out in outputs)
    assert EXPECTED[path.stem] in text
    if path.stem != "02_results_vs_paper":  # a figure
        assert any("image/png" in out.get("data", {}) for out in outputs)
