"""The layout's ownership rules, checked on the source (issue #23)."""

import ast
import pathlib

from cifar_resnet.spec import rundir

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
        if path == PACKAGE / "spec" / "rundir.py":
            continue
        for node in _code_strings(ast.parse(path.read_text())):
            found += [f"{path.relative_to(PACKAGE)}:{node.lineno}: {name}"
                      for name in RUN_FILES if name in node.value]
    assert not found, "run-file names outside spec/rundir.py:\n" + "\n".join(found)


def test_the_check_sees_a_name_in_code_and_not_in_a_docstring():
    tree = ast.parse('"""history.csv is described here."""\n'
                     'def f(d):\n    """And here: metrics.json."""\n'
                     '    return f"{d}/history.csv"\n')
    assert [n.value for n in _code_strings(tree) if "history.csv" in n.value] == ["/history.csv"]
    assert not [n for n in _code_strings(tree) if "metrics.json" in n.value]


# ----------------------------------------------------------------------------------------------
# The import graph (issue #39): spec/ imports no Keras, TensorFlow or JAX, not even through
# another module; folders import only their own level or below; no two modules import each other.

# Folder -> level; a module may import its own level and below, never above.
LEVELS = {"spec": 0, "nets": 1, "data": 1, "private_apis": 1, "run": 2, "results": 3,
          "__init__": 4, "__main__": 4}
BACKENDS = {"keras", "tensorflow", "jax", "jaxlib", "torch"}


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path, modules: set) -> tuple[set, set]:
    """(package modules, external top-level packages) that `path` imports anywhere in its code,
    function bodies included; `from cifar_resnet.x import y` counts `cifar_resnet.x.y` where
    that is a module, else `cifar_resnet.x`."""
    inside, outside = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules
                     else node.module for a in node.names]
        else:
            continue
        for name in names:
            if name == "cifar_resnet" or name.startswith("cifar_resnet."):
                inside.add(name)
            else:
                outside.add(name.split(".")[0])
    return inside - {"cifar_resnet"}, outside


def _graph():
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")
             if "experiment_files" not in p.parts}
    return {m: _imports(p, set(paths)) for m, p in paths.items()}


def _level(module: str) -> int:
    parts = module.split(".")
    return LEVELS[parts[1] if len(parts) > 1 else "__init__"]


def test_spec_imports_no_backend_directly_or_through_another_module():
    graph = _graph()
    spec = [m for m in graph if m.startswith("cifar_resnet.spec")]
    assert "cifar_resnet.spec.config" in spec and "cifar_resnet.spec.datasets" in spec
    for module in spec:
        seen, todo = set(), [module]
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            inside, outside = graph[current]
            assert not outside & BACKENDS, f"{module} imports {outside & BACKENDS} via {current}"
            todo += [m for m in inside if m in graph]
        assert all(m.startswith("cifar_resnet.spec") for m in seen), (module, seen)


def test_no_folder_imports_a_higher_one():
    found = [f"{m} imports {n}" for m, (inside, _) in _graph().items() for n in inside
             if _level(n) > _level(m)]
    assert not found, "\n".join(found)


def test_no_two_modules_import_each_other():
    graph = _graph()
    pairs = sorted({tuple(sorted((m, n))) for m, (inside, _) in graph.items() for n in inside
                    if n != m and m in graph.get(n, (set(),))[0]})
    assert not pairs, pairs


def test_the_graph_sees_imports_in_functions_and_names_from_modules(tmp_path):
    code = ("from cifar_resnet.spec import config, files\nfrom cifar_resnet.run.train import x\n"
            "def f():\n    import keras\n    from cifar_resnet.nets import models\n")
    path = tmp_path / "m.py"
    path.write_text(code)
    modules = {"cifar_resnet.spec.config", "cifar_resnet.spec.files", "cifar_resnet.run.train",
               "cifar_resnet.nets.models"}
    assert _imports(path, modules) == (modules, {"keras"})
