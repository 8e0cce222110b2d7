"""Run-directory file writing: every file is replaced atomically, so a crash never leaves half."""

from __future__ import annotations

import json
import os
import pathlib
import tempfile


def atomic_write_text(path, text: str) -> None:
    """Writes `text` to `path` via a temporary file in the same folder, fsync and rename."""
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path):
    return json.loads(pathlib.Path(path).read_text())
