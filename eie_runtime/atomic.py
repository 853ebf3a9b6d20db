"""Atomic file writes: a reader sees the old file or the new one, never a torn one.

Every file the project writes (``save``, ``convert``, ``export``, benchmark
results, plots) goes through :func:`atomic_open`: the bytes go to a temporary
file in the same directory, are flushed and fsynced, and only then renamed over
the target (``os.replace`` is atomic on POSIX and Windows). A process killed at
any moment leaves the old file or the new one; at worst a stray
``.NAME.*.tmp`` beside it.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# read once: os.umask can only be read by setting it, which is not thread-safe
_UMASK = _umask()


@contextlib.contextmanager
def atomic_open(path, mode: str = "wb"):
    """Open a temporary file beside ``path``; on clean exit fsync it and rename it over ``path``.

    On an exception (or a kill before the rename) ``path`` is untouched and the
    temporary file is removed (or, after a kill, left as ``.NAME.*.tmp``). The
    new file keeps the permissions of the file it replaces (a new file gets the
    usual ``0o666 & ~umask``, not ``mkstemp``'s private 0o600); a symlink is
    followed, so the link stays and its target is replaced.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes a whole new file: mode must be 'w' or 'wb', got {mode!r}")
    path = Path(os.path.realpath(path)) if os.path.islink(path) else Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    try:
        perms = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        perms = 0o666 & ~_UMASK
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with contextlib.suppress(OSError):
            os.fchmod(fd, perms)
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    # make the rename itself durable
    with contextlib.suppress(OSError):
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_open`)."""
    atomic_write_bytes(path, text.encode("utf-8"))
