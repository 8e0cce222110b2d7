"""Run-directory file writing: every file is replaced atomically, so a crash never leaves half.

Files are created with the permissions a plain `open(path, "w")` would give (0666 less the
umask), so that collaborators on a shared run directory can read them; `tempfile.mkstemp`
alone would leave them 0600.
"""

from __future__ import annotations

import fcntl
import json
import os
import pathlib
import tempfile


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (`/proc/self/status`)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere the only way to read it is to set it, then restore it
    os.umask(mask)
    return mask


def default_file_mode() -> int:
    """The mode `open(path, "w")` gives a new file: 0666 less the umask."""
    return 0o666 & ~current_umask()


def atomic_write_text(path, text: str) -> None:
    """Writes `text` to `path` via a temporary file in the same folder, fsync and rename.

    The file gets the mode a plain `open()` would give it (`default_file_mode`).
    """
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, default_file_mode())
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


def lock_holder(workdir) -> "int | None":
    """The PID of the live process holding `workdir`'s run lock, or None when nobody holds it.

    The lock is the `flock` that `run_lock` takes, which the kernel releases when its process
    dies however it ends; so a `.lock` file left by a killed run whose PID now belongs to an
    unrelated process does not count as held (a PID check alone would).
    """
    path = pathlib.Path(workdir) / ".lock"
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").split()
            return int(text[0]) if text and text[0].isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
