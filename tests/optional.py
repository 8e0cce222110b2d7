"""The optional packages some tests need, and the one command that installs each.

`make setup` installs what the package needs (requirements.txt); `make setup-dev` (run by `make
test` and `make test-fast`) adds what the rest of the suite imports (requirements-dev.txt: JAX
and scipy); PyTorch, a 192 MB CPU wheel, is left to `make setup-torch` (requirements-torch.txt)
for the tests of the PyTorch reference trainer and the torch backend. A test that needs one of
them skips without it, its reason naming the command (docs/testing.md lists them).
"""

from __future__ import annotations

import importlib.util

import pytest

# Top-level module -> the command that installs it into .venv.
INSTALL = {"jax": "make setup-dev", "scipy": "make setup-dev", "torch": "make setup-torch"}


def reason(module: str) -> str:
    """The skip reason of a test that needs `module` (e.g. "scipy.ndimage"), naming the command."""
    top = module.split(".")[0]
    return f"needs {top}, not installed: {INSTALL[top]} (docs/testing.md)"


def missing(module: str) -> bool:
    """Whether `module`'s top-level package is absent (without importing it)."""
    return importlib.util.find_spec(module.split(".")[0]) is None


def needs(module: str) -> pytest.MarkDecorator:
    """A skipif mark for tests that need `module`."""
    return pytest.mark.skipif(missing(module), reason=reason(module))


def skip_without(module: str) -> None:
    """Skips the calling test when `module` is absent."""
    if missing(module):
        pytest.skip(reason(module))


def importorskip(module: str):
    """`pytest.importorskip(module)` whose skip reason names the command that installs it."""
    return pytest.importorskip(module, reason=reason(module))
