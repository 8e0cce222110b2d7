"""Private Keras and TensorFlow APIs: only in cifar_resnet/private_apis.py, and checked on every test run.

The workaround itself is exercised by tests/test_distribute.py::test_two_workers_on_localhost.
"""

import ast
import inspect
import pathlib

import keras
import pytest

from cifar_resnet import private_apis

PACKAGE = pathlib.Path(private_apis.__file__).parent
# Private Keras attributes this package has used (and must not again, outside the one module).
KNOWN_PRIVATE = {"_keras_history", "_initial_epoch", "_maybe_symbolic_build", "_save_model",
                 "_should_save_model", "_get_file_path", "reduce_per_replica"}


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow trainer only")
def test_the_private_names_the_workaround_patches_are_as_expected():
    trainer = private_apis.check()  # KerasChanged names what changed, if anything did
    # The bug itself: if this fails, Keras may have fixed keras-team/keras#20585; run
    # test_two_workers_on_localhost without private_apis.apply to see.
    source = inspect.getsource(trainer.reduce_per_replica)
    assert 'strategy.reduce("MEAN", v, axis=0)' in source, (
        f"Keras {keras.__version__} no longer reduces multi-worker scalars with axis=0: "
        f"check whether {private_apis.ISSUE} is fixed and the workaround can go")


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow trainer only")
def test_a_changed_private_api_is_named_in_one_clear_error(monkeypatch):
    trainer = private_apis.check()
    monkeypatch.setattr(trainer, "reduce_per_replica", lambda values, strategy: values)
    with pytest.raises(private_apis.KerasChanged,
                       match=r"changed keras\.src\.backend\.tensorflow\.trainer\."
                             r"reduce_per_replica: parameters \('values', 'strategy'\), "
                             r"expected \('values', 'strategy', 'reduction'\); the multi-worker "
                             r"workaround for keras-team/keras#20585"):
        private_apis.check()
    monkeypatch.undo()
    monkeypatch.delattr(trainer.TensorFlowTrainer, "_maybe_symbolic_build")
    with pytest.raises(private_apis.KerasChanged,
                       match=r"TensorFlowTrainer\._maybe_symbolic_build: it no longer exists"):
        private_apis.check()


def _private_uses(path) -> list[str]:
    """`keras.src` imports or strings (docstrings and comments aside) and KNOWN_PRIVATE
    attributes in a module, by line."""
    tree = ast.parse(pathlib.Path(path).read_text())
    docstrings = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [getattr(node, "module", None) or "", *(a.name for a in node.names)]
            for prefix in ("keras.src", "tensorflow.python"):
                if any(m.startswith(prefix) for m in modules):
                    found.append((node.lineno, f"imports {prefix}"))
        elif isinstance(node, ast.Attribute) and node.attr in KNOWN_PRIVATE:
            found.append((node.lineno, f".{node.attr}"))
        elif (isinstance(node, ast.Attribute) and node.attr == "v1"
              and isinstance(node.value, ast.Attribute) and node.value.attr == "compat"):
            found.append((node.lineno, ".compat.v1"))
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and "keras.src" in node.value and id(node) not in docstrings):
            found.append((node.lineno, "names keras.src"))
    return [f"{path.name}:{line}: {what}" for line, what in sorted(found)]


def test_no_other_module_uses_private_keras_apis():
    offenders = [use for path in sorted(PACKAGE.rglob("*.py"))
                 if path.name != "private_apis.py" for use in _private_uses(path)]
    assert not offenders, offenders


def test_the_scan_finds_private_uses(tmp_path):
    path = tmp_path / "m.py"
    path.write_text('"""Docstrings may name keras.src."""\n'
                    "from keras.src.backend.tensorflow import trainer\n"
                    "source = layer.input._keras_history.operation\n"
                    "# keras.src in a comment is fine\n"
                    "name = 'keras.src.utils'\n"
                    "from tensorflow.python.util import _pywrap_util_port\n"
                    "y = tf.compat.v1.nn.fused_batch_norm(x)\n")
    assert _private_uses(path) == ["m.py:2: imports keras.src", "m.py:3: ._keras_history",
                                   "m.py:5: names keras.src", "m.py:6: imports tensorflow.python",
                                   "m.py:7: .compat.v1"]
