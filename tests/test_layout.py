"""The layout's ownership rules, checked on the source (issue #23)."""

import ast
import pathlib

from cifar_resnet.run import rundir

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "cifar_resnet"
RUN_FILES = (rundir.CONFIG, rundir.DATA, rundir.HISTORY, rundir.BEST, rundir.FINAL,
             rundir.METRICS, rundir.METADATA, rundir.LOCK, rundir.TRAIN_LOG,
             rundir.LAYER_RESPONSES)


def _code_strings(tree: ast.AST):
    """The string constants of a module's code (f-string parts included), docstrings left out:
    a docstring may describe a file, only code may name one."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                and id(node) not in docstrings):
            yield node


def test_no_module_but_rundir_spells_a_run_files_name():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "run" / "rundir.py":
            continue
        for node in _code_strings(ast.parse(path.read_text())):
            found += [f"{path.relative_to(PACKAGE)}:{node.lineno}: {name}"
                      for name in RUN_FILES if name in node.value]
    assert not found, "run-file names outside run/rundir.py:\n" + "\n".join(found)


def test_the_check_sees_a_name_in_code_and_not_in_a_docstring():
    tree = ast.parse('"""history.csv is described here."""\n'
                     'def f(d):\n    """And here: metrics.json."""\n'
                     '    return f"{d}/history.csv"\n')
    assert [n.value for n in _code_strings(tree) if "history.csv" in n.value] == ["/history.csv"]
    assert not [n for n in _code_strings(tree) if "metrics.json" in n.value]
