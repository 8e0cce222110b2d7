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


# What a run directory of ours holds (train.py, evaluate.py, the layer responses); a folder with
# anything else and no config.json is not ours.
RUN_DIR_ENTRIES = frozenset({".lock", "config.json", "data.json", "backup", "history.csv",
                             "metrics.json", "tensorboard", "final.keras", "best.keras", "eval",
                             "layer_responses.json", "train.log"})


def _ours(name: str) -> bool:
    """An entry a run writes, or the temporary file of an atomic write (.NAME.*.tmp*)."""
    return name in RUN_DIR_ENTRIES or (name.startswith(".") and ".tmp" in name)


def refuse_foreign_dir(workdir, error: type) -> None:
    """Raises `error` (one line) when `workdir` holds files but no run of ours (no config.json
    and an entry a run does not write): a run would mix its files into the user's."""
    workdir = pathlib.Path(workdir)
    if not workdir.is_dir() or (workdir / "config.json").exists():
        return
    foreign = sorted(p.name for p in workdir.iterdir() if not _ours(p.name))
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3
                                          else "")
        raise error(f"{workdir} holds files but no run ({shown}); give an empty or new "
                    "--workdir (a run directory holds only the run's own files)")


def another_config_hint(workdir, config, diff) -> str:
    """The end of the "another config" refusal: how to resume, or where to write instead.

    A finished run is not extended in place: its learning-rate milestones are fractions of its
    length, so more iterations make another run, trained from the start in another folder.
    """
    workdir = pathlib.Path(workdir)
    metrics = workdir / "metrics.json"
    finished = metrics.exists() and read_json(metrics).get("status") == "complete"
    suffix = "-".join(f"{k.replace('_', '-')}{getattr(config, k)}" for k in diff[:2])
    suffix = "".join(c if c.isalnum() or c in "-." else "_" for c in suffix)
    elsewhere = workdir.parent / f"{workdir.name}-{suffix}"
    length = {"iterations", "epochs"} & set(diff)
    if finished and length:
        return (f"this run is finished, and a finished run is not extended (its learning-rate "
                f"milestones are fractions of its length): train the new length in another "
                f"folder, e.g. --workdir {elsewhere}")
    return f"use another --workdir (e.g. {elsewhere}), or the same settings to resume"
