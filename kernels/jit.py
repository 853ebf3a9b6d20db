"""``njit`` for the project's kernels: Numba's, with a compile cache that cannot go stale.

Numba's own cache (``cache=True``) checks only the source of the file that
defines a function. A kernel that calls or inlines a helper from another file
(every kernel here does: ``vector_scatter``'s intrinsic, ``llvm_ir``'s
builders, ``fixed16_arith``'s rounding) keeps running its old machine code
after that helper changes, until someone deletes the cache (numba issue 1833).
Here every cached kernel is stored under a key that hashes:

- the source of every module of this package,
- Numba's, llvmlite's and Python's versions,
- the CPU name and features Numba compiles for (``NUMBA_CPU_NAME``,
  ``NUMBA_CPU_FEATURES`` or the host's),

so any change to any of them compiles afresh. The key names the cache folder
(``__pycache__/eie-<key>`` beside the source, or the same under the user's
cache folder where the package is read-only); with the kernel's own file it
is the source stamp that Numba checks on every load. Only the few most
recently used folders are kept beside each source folder.
A kernel outside this package may use this ``njit`` too, as long as every
compiled helper it calls lives in this package or in its own file.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import sys
from pathlib import Path

import llvmlite
import numba

PACKAGE_DIR = Path(__file__).resolve().parent
KEEP_FOLDERS = 3  # most recently used cache folders kept beside each source folder
_PREFIX = "eie-"


def _file_digest(path: str) -> bytes:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).digest()


@functools.lru_cache(maxsize=None)
def _package_digest() -> bytes:
    h = hashlib.sha256()
    for path in sorted(PACKAGE_DIR.glob("*.py")):
        h.update(path.name.encode() + b"\0" + _file_digest(str(path)))
    return h.digest()


def compile_target() -> tuple[str, str]:
    """(CPU name, feature string) that Numba compiles for, by Numba's own rule."""
    from llvmlite import binding
    from numba.core import codegen, config

    name = config.CPU_NAME or binding.get_host_cpu_name()
    features = config.CPU_FEATURES if config.CPU_FEATURES is not None else codegen.get_host_cpu_features()
    return name, features


@functools.lru_cache(maxsize=None)
def cache_key() -> str:
    """The key of this package's compiled kernels: its sources, the compiler versions and the target CPU."""
    h = hashlib.sha256(_package_digest())
    name, features = compile_target()
    for part in (numba.__version__, llvmlite.__version__, sys.version, name, features):
        h.update(b"\0" + part.encode())
    return h.hexdigest()[:20]


def _prune(parent: str, keep: str) -> None:
    """Remove all but the ``KEEP_FOLDERS`` most recently used key folders under ``parent`` (best effort)."""
    try:
        folders = [e for e in os.scandir(parent) if e.name.startswith(_PREFIX) and e.is_dir()]
        folders.sort(key=lambda e: e.stat().st_mtime, reverse=True)
        for entry in folders[KEEP_FOLDERS:]:
            if entry.name != keep:
                shutil.rmtree(entry.path, ignore_errors=True)
    except OSError:
        pass


def _keyed(base):
    """A subclass of Numba locator ``base`` whose folder and source stamp are the cache key."""

    class Keyed(base):
        def __init__(self, py_func, py_file):
            super().__init__(py_func, py_file)
            self._key = cache_key()
            self._stamp = (self._key, _file_digest(py_file))  # numba's source stamp also covers the file itself
            self._parent = self._cache_path
            self._cache_path = os.path.join(self._cache_path, _PREFIX + self._key)

        def ensure_cache_path(self):
            fresh = not os.path.isdir(self._cache_path)
            super().ensure_cache_path()
            if fresh:
                _prune(self._parent, _PREFIX + self._key)
            else:
                os.utime(self._cache_path)  # marks it recently used

        def get_source_stamp(self):
            return self._stamp

    Keyed.__name__ = Keyed.__qualname__ = f"Keyed{base.__name__}"
    return Keyed


def _cache_class():
    """Numba's FunctionCache with keyed locators, or None where Numba's internals differ (then: no cache)."""
    try:
        from numba.core import caching

        class KeyedImpl(caching.CompileResultCacheImpl):
            _locator_classes = [_keyed(caching.InTreeCacheLocator), _keyed(caching.UserWideCacheLocator)]

        class KeyedFunctionCache(caching.FunctionCache):
            _impl_class = KeyedImpl

        return KeyedFunctionCache
    except (ImportError, AttributeError):
        return None


_CACHE_CLASS = _cache_class()


def njit(*args, cache: bool = False, **options):
    """``numba.njit`` whose ``cache=True`` uses the keyed cache. Use as ``@njit(cache=True, parallel=True)``."""
    if args:  # bare @njit
        return numba.njit(*args, **options)

    def decorate(func):
        dispatcher = numba.njit(**options)(func)
        if cache and _CACHE_CLASS is not None:
            try:
                dispatcher._cache = _CACHE_CLASS(dispatcher.py_func)
            except RuntimeError:  # no writable cache folder anywhere: compile on every run
                pass
        return dispatcher

    return decorate


def cache_folders(roots=(PACKAGE_DIR,), user_cache: bool = True) -> list[Path]:
    """Every folder holding compiled kernels of this package: ``__pycache__/eie-*`` under each of ``roots``
    (source folders) and, with ``user_cache``, under the user's cache folder (read-only installs)."""
    from numba.misc.appdirs import AppDirs

    found = [p for root in roots for p in Path(root).glob(f"**/__pycache__/{_PREFIX}*")]
    user = Path(AppDirs(appname="numba", appauthor=False).user_cache_dir)
    if user_cache and user.is_dir():
        found += list(user.glob(f"*/{_PREFIX}*"))
    return sorted(p for p in set(found) if p.is_dir())


def clear_cache(roots=(PACKAGE_DIR,), user_cache: bool = True) -> int:
    """Delete every compiled-kernel folder that :func:`cache_folders` finds; returns the bytes freed."""
    freed = 0
    for folder in cache_folders(roots, user_cache):
        freed += sum(f.stat().st_size for f in folder.glob("*") if f.is_file())
        shutil.rmtree(folder, ignore_errors=True)
    return freed
