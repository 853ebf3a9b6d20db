"""The sweep's on-disk result cache: one JSON row per (workload, configuration, simulator version).

Rows are keyed by a hash of the workload's content key, the configuration's
every field and the simulator's own source (so a changed timing model never
serves stale rows). The folder is ``$EIE_SWEEP_CACHE``, else
``<user cache folder>/eie-runtime/sweep``; a sweep may name its own.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

from ..atomic import atomic_write_text
from .config import HardwareConfig

# the sources a result depends on (the row's fields are built in sweeps.py)
_MODEL_SOURCES = ("config.py", "cycle_model.py", "simulate.py", "energy.py", "report.py", "trace.py", "sweeps.py")


@functools.lru_cache(maxsize=None)
def simulator_version() -> str:
    """A hash of the simulator's source files: part of every cache key."""
    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for name in _MODEL_SOURCES:
        h.update(name.encode())
        h.update((here / name).read_bytes())
    return h.hexdigest()[:16]


def default_cache_dir() -> Path:
    env = os.environ.get("EIE_SWEEP_CACHE")
    if env:
        return Path(env)
    from numba.misc.appdirs import AppDirs  # the same platform rules as the compiled-kernel cache

    return Path(AppDirs(appname="eie-runtime", appauthor=False).user_cache_dir) / "sweep"


class ResultCache:
    """Rows on disk under ``folder/<2 hex>/<key>.json``, written atomically (several sweeps may share it)."""

    def __init__(self, folder=None):
        self.folder = Path(folder) if folder is not None else default_cache_dir()

    @staticmethod
    def key(workload_key: str, config: HardwareConfig) -> str:
        text = json.dumps({"workload": workload_key, "config": config.to_dict(), "simulator": simulator_version()},
                          sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        try:
            return json.loads(self._path(key).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def put(self, key: str, row: dict) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(row))

    def clear(self) -> int:
        """Remove every cached row; return how many."""
        n = 0
        for f in self.folder.glob("*/*.json"):
            f.unlink(missing_ok=True)
            n += 1
        return n
