"""The per-thread kernel costs from which an execution layout picks its kernels, and how to replace them.

An :class:`~eie_runtime.execution.ExecLayout` keeps the sliced ELL only
where it beats the row gather, and a call takes it only above the activation
count where it beats the column scatter. Both crossovers come from these
costs. The defaults were measured on the 2-core benchmark machine
(bench/RESULTS.md). On another CPU the crossovers move: on the lent H100
machine's Xeon the scatter ran 2-2.6x slower relative to MKL. There,

    python -m bench.calibrate --write costs.json

measures them, and ``EIE_KERNEL_COSTS=costs.json`` in the environment (read on
first use) or ``kernel_costs.use(KernelCosts.load("costs.json"))`` makes layouts
built afterwards choose by them. A cost changes which kernel runs, never a
result's correctness: every kernel computes the same layer.
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


@dataclass(frozen=True)
class KernelCosts:
    """Nanoseconds per unit of work and thread, for each kernel a single-vector call can take."""

    sliced_ell_ns_per_step: float = 0.87  # float32 sliced ELL, per 16-lane step (four steps per load)
    gather_ns_per_entry: float = 0.22  # float32 row gather, per stored entry
    scatter_ns_per_entry: float = 0.6  # float32 column scatter (16-entry table), per entry in a non-zero column
    scatter_by_code_ns_per_entry: float = 0.45  # the same with per-(row, code) accumulators (short blocks)
    sliced_ell_fixed16_ns_per_step: float = 1.8  # fixed16 sliced ELL, clamped int32 adds
    sliced_ell_fixed16_words_ns_per_step: float = 1.4  # fixed16 sliced ELL, every term proven to fit int16
    scatter_fixed16_ns_per_entry: float = 0.65  # fixed16 column scatter, per entry in a non-zero column

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


def current() -> KernelCosts:
    """The costs new layouts choose by: those given to :func:`use`, else ``$EIE_KERNEL_COSTS``, else the
    defaults. A bad ``$EIE_KERNEL_COSTS`` file raises ``ValueError`` naming the file and the problem."""
    global _from_env
    chosen = _chosen
    if chosen is not None:
        return chosen
    path = os.environ.get(ENV_VAR)
    if not path:
        return KernelCosts()
    hit = _from_env
    if hit is not None and hit[0] == path:
        return hit[1]
    with _lock:
        costs = KernelCosts.load(path)
        _from_env = (path, costs)
    return costs


def use(costs: KernelCosts | None) -> None:
    """Make ``costs`` the process-wide costs for layouts built from now on (``None``: back to the
    environment or the defaults). Layouts already built keep the choices they made."""
    global _chosen
    if costs is not None and not isinstance(costs, KernelCosts):
        raise TypeError(f"use() takes a KernelCosts or None, got {type(costs).__name__}")
    _chosen = costs
