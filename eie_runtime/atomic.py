"""Atomic file writes: a reader sees the old file or the new one, never a torn one.

Every file the project writes (``save``, ``convert``, ``export``, benchmark
results, plots) goes through :func:`atomic_open`: the bytes go to a temporary
file in the same directory, are flushed and fsynced, and only then renamed over
the target (``os.replace`` is atomic on POSIX and Windows). A process killed at
any moment leaves the old file or the new one; at worst a stray
``.NAME.PID.*.tmp`` beside it, which the next write of the same path removes
once process PID is gone.

Only regular files are replaced: a path that names a FIFO, a device, a socket
or a directory (directly or through a symlink) is refused before anything is
written, so ``save(model, "/dev/null")`` cannot replace ``/dev/null``.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from .errors import EIEInputError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# read once: os.umask can only be read by setting it, which is not thread-safe
_UMASK = _umask()


def check_output_path(path, what: str = "") -> Path:
    """The path :func:`atomic_open` would write (a symlink resolved), or an EIEInputError saying why it cannot.

    Refused: a path that exists and is not a regular file (a directory, a FIFO, a device such as
    ``/dev/null``, a socket; directly or through a symlink) and a path whose directory does not exist.
    Commands call it on their output paths before doing any work (``eie run -o``, ``eie simulate --json``)."""
    label = f"{what} " if what else ""
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise EIEInputError(f"{label}output path must be a file name, got {path!r}")
    path = Path(os.path.realpath(path)) if os.path.islink(path) else Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        directory = path.parent if str(path.parent) else Path(".")
        if not directory.is_dir():
            raise EIEInputError(f"{label}{path}: directory {str(directory)!r} does not exist") from None
    except OSError as exc:
        raise EIEInputError(f"{label}{path}: cannot be written ({exc.strerror})") from None
    else:
        if not stat.S_ISREG(st.st_mode):
            raise EIEInputError(f"{label}{path}: exists and is not a regular file ({_kind(st.st_mode)}); "
                                "refusing to replace it")
    return path


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
    path = check_output_path(path)
    directory = path.parent if str(path.parent) else Path(".")
    try:
        perms = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        perms = 0o666 & ~_UMASK
    _remove_leftovers(directory, path.name)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=directory)
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


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a special file"


def _remove_leftovers(directory: Path, name: str) -> None:
    """Remove ``.NAME.PID.*.tmp`` files of writers that were killed (their process no longer exists)."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(directory):
            parts = entry.name.rsplit(".", 3)  # ["." + name, pid, random, "tmp"]
            if len(parts) != 4 or parts[0] != "." + name or parts[3] != "tmp" or not parts[1].isdigit():
                continue
            if int(parts[1]) == os.getpid() or _alive(int(parts[1])) or not entry.is_file(follow_symlinks=False):
                continue
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # someone else's process (or not a pid we can ask about): leave its file alone
    return True


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_open`)."""
    atomic_write_bytes(path, text.encode("utf-8"))
