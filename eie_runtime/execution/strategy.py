"""The base of every execution strategy: a kernel family and the layout arrays it runs on, built on first use."""

from __future__ import annotations

import threading
from typing import NamedTuple

import numpy as np

from ..format import InterleavedCSC
from ..kernel_costs import KernelCosts
from .rows import Rows


class Strategy:
    """One way to run a layer: its layout arrays (``arrays()``, built by the first call that needs
    them), what it costs (``cost``, where ``kernel_costs`` measures it), its ``run_*`` methods and
    the bytes it holds (``nbytes``).

    Layers are called from many threads: the first ``arrays()`` builds under this strategy's
    lock and publishes the finished tuple with one assignment, so every other caller sees either
    nothing (and waits for the lock) or all of it.
    """

    name = "strategy"

    def __init__(self, matrix: InterleavedCSC, rows: Rows, costs: KernelCosts):
        self.matrix = matrix
        self.rows = rows
        self.costs = costs
        # plain attributes for the per-call paths (a NamedTuple field costs a descriptor call)
        self.rowptr, self.bounds, self.row_bounds = rows.rowptr, rows.bounds, rows.row_bounds
        self.codebook = matrix.codebook
        self._arrays = None
        self._lock = threading.Lock()

    def _build(self) -> NamedTuple:
        raise NotImplementedError

    def arrays(self) -> NamedTuple:
        """The layout arrays, built now if no call has needed them yet."""
        arrays = self._arrays
        if arrays is None:
            with self._lock:
                arrays = self._arrays
                if arrays is None:
                    arrays = self._build()
                    self._arrays = arrays
        return arrays

    @property
    def built(self) -> bool:
        return self._arrays is not None

    def nbytes(self) -> int:
        """Bytes of the arrays built so far (0 before the first call that needed them)."""
        arrays = self._arrays
        return 0 if arrays is None else int(sum(a.nbytes for a in arrays if isinstance(a, np.ndarray)))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {'built, %d B' % self.nbytes() if self.built else 'not built'}>"
