"""The per-thread kernel costs from which an execution layout picks its kernels, and where they come from.

An :class:`~eie_runtime.execution.ExecLayout` keeps the sliced ELL only
where it beats the row gather, and a call takes it only above the activation
count where it beats the column scatter; fixed16's clamped scatter runs 16
entries at a time or one by one, whichever costs less. These choices come
from these costs. The defaults were measured on the 2-core benchmark machine
(bench/RESULTS.md); on another CPU the same kernels can rank differently, so
by default the costs are measured on the CPU that runs them, once per CPU
and version, and cached in the user's cache folder
(:mod:`eie_runtime.kernel_calibration`). Which costs a new layout takes
(:func:`current`, :func:`source` says which):

1. those given to :func:`use`;
2. ``$EIE_KERNEL_COSTS``, a JSON file (``python -m bench.calibrate --write
   costs.json`` measures one on the paper layers);
3. the self-calibrated ones, unless ``$EIE_SELF_CALIBRATE`` is ``0`` or
   :func:`self_calibration` (False) turned it off;
4. the defaults.

A cost changes which kernel runs, never a result's correctness: every kernel
computes the same layer.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "EIE_KERNEL_COSTS"
SELF_ENV_VAR = "EIE_SELF_CALIBRATE"  # 0 / off / false / no: never measure


@dataclass(frozen=True)
class KernelCosts:
    """Nanoseconds per unit of work and thread, for each kernel a single-vector call can take."""

    sliced_ell_ns_per_step: float = 0.87  # float32 sliced ELL, per 16-lane step (four steps per load)
    gather_ns_per_entry: float = 0.22  # float32 row gather, per stored entry
    scatter_ns_per_entry: float = 0.6  # float32 column scatter (16-entry table), per entry in a non-zero column
    scatter_by_code_ns_per_entry: float = 0.45  # the same with per-(row, code) accumulators (short blocks)
    sliced_ell_fixed16_ns_per_step: float = 1.8  # fixed16 sliced ELL, clamped int32 adds
    sliced_ell_fixed16_words_ns_per_step: float = 1.4  # fixed16 sliced ELL, every term proven to fit int16
    scatter_fixed16_ns_per_entry: float = 0.65  # fixed16 column scatter, clamped, 16 entries at a time
    scatter_fixed16_scalar_ns_per_entry: float = 0.75  # the same one entry at a time (no vector scatter)

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value <= 0:
                raise ValueError(f"kernel cost {f.name} must be a positive finite number of ns, got {value!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, source: str = "kernel costs") -> KernelCosts:
        """Costs from a mapping of field names to ns; fields left out keep their defaults."""
        if not isinstance(values, dict):
            raise ValueError(f"{source}: expected a JSON object of cost names to ns, got {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{source}: unknown kernel cost(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        try:
            return cls(**values)
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from None

    @classmethod
    def load(cls, path) -> KernelCosts:
        """Costs from a JSON file written by ``python -m bench.calibrate --write``."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ValueError(f"kernel costs file {path} could not be read: {exc.strerror or exc}") from None
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"kernel costs file {path} is not valid JSON: {exc}") from None
        return cls.from_dict(values, source=f"kernel costs file {path}")


_lock = threading.Lock()
_chosen: KernelCosts | None = None  # set by use()
_from_env: tuple[str, KernelCosts] | None = None  # (path, its costs), loaded once per path
_self_enabled: bool | None = None  # set by self_calibration(); None: $EIE_SELF_CALIBRATE decides
_calibrated: dict = {}  # {cache file: (costs, source)}: measured or read once per process


def self_calibration_enabled() -> bool:
    """Whether :func:`current` measures (or reads the cached) costs of this CPU: :func:`self_calibration`'s
    setting, else ``$EIE_SELF_CALIBRATE`` (off for 0, off, false, no)."""
    if _self_enabled is not None:
        return _self_enabled
    return os.environ.get(SELF_ENV_VAR, "1").strip().lower() not in ("0", "off", "false", "no")


def self_calibration(enabled: bool | None) -> None:
    """Turn self-calibration on or off for this process (``None``: back to ``$EIE_SELF_CALIBRATE``).
    Layouts already built keep the choices they made."""
    global _self_enabled
    if enabled is not None and not isinstance(enabled, bool):
        raise TypeError(f"self_calibration() takes True, False or None, got {enabled!r}")
    _self_enabled = enabled


def _self_calibrated() -> tuple[KernelCosts, str]:
    from . import kernel_calibration

    path = str(kernel_calibration.cache_path())
    hit = _calibrated.get(path)
    if hit is None:
        with _lock:
            hit = _calibrated.get(path)
            if hit is None:
                cal = kernel_calibration.calibrate(path)
                hit = (cal.costs, f"self-calibrated: {cal.source}"
                       + (" (within the defaults' dead band: defaults kept)" if cal.snapped else ""))
                _calibrated[path] = hit
    return hit


def current_with_source() -> tuple[KernelCosts, str]:
    """(:func:`current`, where those costs come from: ``use()``, ``EIE_KERNEL_COSTS=<path>``,
    ``self-calibrated: <cache file>`` or ``defaults``)."""
    global _from_env
    chosen = _chosen
    if chosen is not None:
        return chosen, "use()"
    path = os.environ.get(ENV_VAR)
    if path:
        hit = _from_env
        if hit is None or hit[0] != path:
            with _lock:
                hit = (path, KernelCosts.load(path))
                _from_env = hit
        return hit[1], f"{ENV_VAR}={path}"
    if self_calibration_enabled():
        return _self_calibrated()
    return KernelCosts(), "defaults"


def current() -> KernelCosts:
    """The costs new layouts choose by: those given to :func:`use`, else ``$EIE_KERNEL_COSTS``, else this
    CPU's self-calibrated ones (measured on first need, cached), else the defaults. A bad
    ``$EIE_KERNEL_COSTS`` file raises ``ValueError`` naming the file and the problem."""
    return current_with_source()[0]


def source() -> str:
    """Where :func:`current`'s costs come from (see :func:`current_with_source`)."""
    return current_with_source()[1]


def use(costs: KernelCosts | None) -> None:
    """Make ``costs`` the process-wide costs for layouts built from now on (``None``: back to the
    environment or the defaults). Layouts already built keep the choices they made."""
    global _chosen
    if costs is not None and not isinstance(costs, KernelCosts):
        raise TypeError(f"use() takes a KernelCosts or None, got {type(costs).__name__}")
    _chosen = costs
