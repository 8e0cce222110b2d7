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


class WriteError(OSError):
    """A file of a run could not be written (disk full, read-only, no permission); the message
    is one line naming the file, and the previous version of the file is intact."""

    def __str__(self) -> str:
        return self.strerror  # OSError's own str would prefix "[Errno 28]"


def write_error(path, error: OSError) -> WriteError:
    """A WriteError naming `path` and why `error` happened, in one line."""
    reason = os.strerror(error.errno) if error.errno else (str(error) or type(error).__name__)
    return WriteError(error.errno, f"cannot write {path} ({reason.lower()}); files written "
                                   "before are intact; fix that and rerun the same command to "
                                   "resume")


def check_writable(folder) -> None:
    """Raises WriteError unless `folder` exists as a writable folder or can be created.

    Checked before TensorFlow is imported, so a read-only mount or a file in the way is refused
    at once, not after the data is read. Writes nothing.
    """
    folder = pathlib.Path(os.path.abspath(folder))
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise WriteError(20, f"cannot create {folder}: {existing} is a file, not a folder; "
                             "use another --workdir")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise WriteError(13, f"cannot write {folder}: {existing} is read-only or not writable "
                             "by this user; use another --workdir")


def atomic_write_text(path, text: str) -> None:
    """Writes `text` to `path` via a temporary file in the same folder, fsync and rename.

    The file gets the mode a plain `open()` would give it (`default_file_mode`).

    Raises:
        WriteError: the file could not be written; the old file (if any) is intact.
    """
    path = pathlib.Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise write_error(path, e) from e
    try:
        os.fchmod(fd, default_file_mode())
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise write_error(path, e) from e
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
