"""EIE's column scatter over a blocked CSC: sparse float32 and fixed16 vectors.

Per row block (``Rows.bounds``: at most 4096 rows, the same number of blocks
per thread) column pointers, and one uint16 per entry packing the
block-local row and the 4-bit codebook index: 2 bytes per entry plus a
pointer per (block, column).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..kernels import column_scatter as _kernels
from ..kernels import kernel_section
from ..kernels import layout_build
from .fixed16 import Fixed16Plan
from .row_gather import RowGather
from .strategy import Strategy

# Blocks of at most this many rows keep their 16 accumulators per row (64 B) in
# a 48 KiB L1, where the per-(row, code) scatter is 1.3x faster than the table one.
BY_CODE_MAX_ROWS = 768


class BlockedCSC(NamedTuple):
    colptr: np.ndarray  # (blocks, K + 1) absolute offsets: block b's columns follow all of block b-1's entries
    packed: np.ndarray  # block-local row << 4 | code, rows ascending within each (block, column)


class ColumnScatter(Strategy):
    """``scatter_by_code_f32`` (blocks of at most ``BY_CODE_MAX_ROWS`` rows) or ``scatter_f32``, and
    ``scatter_fixed16`` (vector or scalar clamps, ``fixed16_vector``), over the input's non-zeros only."""

    def kernel(self, fixed16: bool = False) -> str:
        """The name of the kernel a call in this mode runs here."""
        if fixed16:
            return "scatter_fixed16" + ("" if self.fixed16_vector else " (scalar clamps)")
        return "scatter_by_code_f32" if self.by_code else "scatter_f32"

    name = "column_scatter"

    def __init__(self, matrix, rows, costs, csr: RowGather):
        super().__init__(matrix, rows, costs)
        self._csr = csr
        self.by_code = int(np.diff(rows.bounds).max(initial=0)) <= BY_CODE_MAX_ROWS
        # fixed16's clamped adds: 16 at a time (gather, add, clamp, scatter) or one by one, whichever the costs
        # say is cheaper on this CPU (a vector scatter is fast on some cores, microcoded on others)
        self.fixed16_vector = costs.scatter_fixed16_ns_per_entry <= costs.scatter_fixed16_scalar_ns_per_entry

    def _build(self) -> BlockedCSC:
        k = self.rows.shape[1]
        csr = self._csr.source()
        rowptr, bounds = self.rows.rowptr, self.rows.bounds
        counts = layout_build.block_column_counts(rowptr, csr.cols, bounds, k)
        colptr = np.zeros((counts.shape[0], k + 1), dtype=rowptr.dtype)
        colptr[:, 1:] = np.cumsum(counts.ravel()).reshape(counts.shape)
        colptr[:, 0] = np.concatenate(([0], np.cumsum(counts.sum(axis=1))[:-1]))
        packed = np.empty(self.rows.nnz, dtype=np.uint16)
        layout_build.fill_blocked_csc(rowptr, csr.cols, csr.codes, bounds, colptr, packed)
        return BlockedCSC(colptr, packed)

    def ns_per_entry(self, fixed16: bool = False) -> float:
        """The measured cost per entry in a non-zero column, per thread, of the kernel this layer runs."""
        if fixed16:
            return min(self.costs.scatter_fixed16_ns_per_entry, self.costs.scatter_fixed16_scalar_ns_per_entry)
        return self.costs.scatter_by_code_ns_per_entry if self.by_code else self.costs.scatter_ns_per_entry

    def cost(self, n_nonzero: float, fixed16: bool = False) -> float:
        """ns per thread for an input with ``n_nonzero`` non-zeros (its columns hold their share of the entries)."""
        k = self.rows.shape[1]
        return self.ns_per_entry(fixed16) * self.rows.nnz * n_nonzero / k if k else 0.0

    def run_float32(self, x, bias, relu, out) -> None:
        colptr, packed = self._arrays or self.arrays()
        scatter = _kernels.scatter_by_code_f32 if self.by_code else _kernels.scatter_f32
        with kernel_section():
            scatter(colptr, packed, self.codebook, self.bounds, x, bias, relu, out)

    def run_fixed16(self, x_q, plan: Fixed16Plan, shift: int, amax: int, relu, out) -> None:
        """One int16 vector whose largest |value| is ``amax``: clamps skipped where ``plan.safe_amax`` proves them idle."""
        colptr, packed = self._arrays or self.arrays()
        with kernel_section():
            _kernels.scatter_fixed16(colptr, packed, plan.codebook_q, self.bounds, x_q, plan.bias32, shift, relu,
                                     amax > plan.safe_amax, out, self.fixed16_vector)
