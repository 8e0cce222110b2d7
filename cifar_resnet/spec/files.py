"""Run-directory file writing: every file is replaced atomically, so a crash never leaves half.

Files are created with the permissions a plain `open(path, "w")` would give (0666 less the
umask), so that collaborators on a shared run directory can read them; `tempfile.mkstemp`
alone would leave them 0600.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import pathlib
import stat
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


class LinkError(OSError):
    """A file or folder of a run is a symbolic link, or not a regular file where one belongs.

    Refused, never followed: in a run folder that others can write (a sweep on shared storage),
    a link would make this user's run overwrite, append to or copy out the file it points to.
    The message is one line naming the path.
    """

    def __str__(self) -> str:
        return self.strerror


def link_error(path, what: str = "a symbolic link") -> LinkError:
    """The LinkError for `path`, one line saying what it is and what to do."""
    return LinkError(errno.ELOOP, f"{path} is {what}; a run reads and writes only its own "
                                  "files, never through a link (it could overwrite the file it "
                                  "points to); remove it and rerun")


def refuse_link(path) -> None:
    """Raises LinkError when `path` is a symbolic link (a missing path is fine)."""
    if os.path.islink(path):
        raise link_error(path)


def open_nofollow(path, flags: int, mode: int = 0o666) -> int:
    """`os.open` that refuses a symbolic link at `path` and anything but a regular file.

    Args:
        path: the file.
        flags: `os.O_*` flags; O_NOFOLLOW and O_NONBLOCK are added (a FIFO planted there must
            not block the run), O_NONBLOCK is cleared again once the file is known to be regular.
        mode: permissions of a file created (less the umask).

    Returns:
        The file descriptor.

    Raises:
        LinkError: `path` is a link, or not a regular file (a FIFO, a device).
        OSError: as `os.open`.
    """
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise link_error(path) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise link_error(path, "not a regular file")
    os.set_blocking(fd, True)
    return fd


def read_bytes(path) -> bytes:
    """The content of the regular file `path`, refusing a link (LinkError)."""
    with os.fdopen(open_nofollow(path, os.O_RDONLY), "rb") as f:
        return f.read()


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
    """Writes `text` to `path` as UTF-8, as `atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path, data: bytes) -> None:
    """Writes `data` to `path` via a temporary file in the same folder, fsync and rename.

    The file gets the mode a plain `open()` would give it (`default_file_mode`). A link at
    `path` is replaced by the file, never followed (the rename replaces the link itself).

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
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise write_error(path, e) from e
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def save_figure(figure, path, **kwargs) -> None:
    """`figure.savefig` to `path` through `atomic_write_bytes` (matplotlib's own savefig opens
    the path, following a link there); the format is the path's suffix."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format=pathlib.Path(path).suffix.lstrip("."), **kwargs)
    atomic_write_bytes(path, buffer.getvalue())


def write_json(path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path):
    return json.loads(pathlib.Path(path).read_text())


def sha256(path) -> str:
    """The SHA-256 of a file's content, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
