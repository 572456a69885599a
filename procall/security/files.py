"""Files that hold secrets: private from the moment they exist, refused when they are not.

Secrets (the settings file with the token secret and the service credential, private
keys), databases (password hashes, chat history) and outbox files are ``0600``; the
folders that hold them are ``0700``. Every file is created with its final mode
(``os.open`` with a mode, ``O_EXCL``), never created first and ``chmod``-ed after, so
there is no moment in which another user could open it.

Files a server is *given* (a settings file, a private key) are checked with
``require_private``: a server refuses to start when one of them is accessible by its
group or by others, as OpenSSH refuses such a private key. A warning would be easy to
miss in a log while the secret stays exposed; refusing makes the fix (``chmod 600``)
part of getting the server to start. Only the mode bits are checked, not the owner:
files mounted by an orchestrator are often owned by root and read-only (``0400``).
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

__all__ = [
    "PRIVATE_DIR_MODE",
    "PRIVATE_FILE_MODE",
    "InsecureFileError",
    "private_dir",
    "private_file",
    "require_private",
    "write_private",
]

#: Mode of a file holding secrets or private data: read and write for its owner only.
PRIVATE_FILE_MODE = 0o600
#: Mode of a folder holding such files: its owner only.
PRIVATE_DIR_MODE = 0o700
# any permission for the group or for others
_OPEN_TO_OTHERS = stat.S_IRWXG | stat.S_IRWXO


class InsecureFileError(Exception):
    """A secret file or a private folder is open to other users; the message says the fix."""


def require_private(path: str | os.PathLike[str], what: str = "it holds secrets") -> None:
    """Refuse ``path`` when its group or others have any permission on it.

    Raises ``InsecureFileError`` with a one-line message naming the file, its mode and
    the fix (``what`` says why the file matters). ``OSError`` (a missing file) passes
    through: that is the caller's error to report.
    """
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & _OPEN_TO_OTHERS:
        raise InsecureFileError(
            f"{os.fspath(path)} is accessible by group or others (mode {mode:04o}) and {what}; "
            f"run `chmod 600 {os.fspath(path)}`"
        )


def private_dir(path: str | os.PathLike[str]) -> Path:
    """Make sure the folder ``path`` exists and only its owner can enter it (``0700``).

    A missing folder is created with that mode (missing parents with the default one);
    an existing one with more permissions is tightened to it, except a folder others
    may write to (such as ``/tmp``): nothing private belongs there, so that raises
    ``InsecureFileError``.
    """
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    mode = stat.S_IMODE(folder.stat().st_mode)
    if mode & stat.S_IWOTH:
        raise InsecureFileError(
            f"{folder} may be written by others (mode {mode:04o}); choose a folder of your own"
        )
    if mode & _OPEN_TO_OTHERS:
        folder.chmod(mode & ~_OPEN_TO_OTHERS)
    return folder


def private_file(path: str | os.PathLike[str]) -> bool:
    """Make sure the file ``path`` exists with mode ``0600``; True when it was created.

    A missing file is created empty with that mode (for example a SQLite database,
    before SQLite opens it: SQLite then gives its journal and WAL files the same mode);
    an existing one is tightened to it.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE_MODE)
    except FileExistsError:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if mode & _OPEN_TO_OTHERS:
            os.chmod(path, mode & ~_OPEN_TO_OTHERS)
        return False
    os.close(fd)
    return True


def write_private(path: str | os.PathLike[str], data: str | bytes) -> None:
    """Replace the contents of ``path`` with ``data`` atomically, as a ``0600`` file.

    The data goes to a new file created with that mode beside ``path`` and is synced
    before it replaces ``path``: readers see the old or the new contents, never a mix,
    and never a moment in which the secret is readable by others. ``str`` is written
    as UTF-8.
    """
    target = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()  # left by a crashed writer of the same pid
    fd = os.open(
        tmp,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        PRIVATE_FILE_MODE,
    )
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
