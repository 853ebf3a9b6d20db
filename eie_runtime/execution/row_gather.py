"""Row gathers over a CSR: dense float32 and fixed16 vectors, and fixed16 batches where the panels cannot run.

The CSR (a uint16 column, int32 where K > 65536, and a uint8 codebook index
per entry: 3 bytes per entry; ``rowptr`` is the layer's ``Rows``) is also the
source every other layout is built from; ``source()`` hands it out without
keeping it when no gather has needed it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..kernels import kernel_section
from ..kernels import layout_build
from ..kernels import row_gather as _kernels
from .fixed16 import Fixed16Plan, term_bound
from .strategy import Strategy


class CSR(NamedTuple):
    """Columns ascending within each row; row ``i``'s entries at ``rowptr[i]:rowptr[i + 1]``."""

    cols: np.ndarray
    codes: np.ndarray


class RowGather(Strategy):
    """``gather_f32``/``gather_fixed16(_narrow)`` for single vectors, ``csr_block_fixed16`` for batches."""

    name = "row_gather"

    def _build(self) -> CSR:
        m, k = self.rows.shape
        cols = np.empty(self.rows.nnz, dtype=np.uint16 if k <= 1 << 16 else np.int32)
        codes = np.empty(self.rows.nnz, dtype=np.uint8)
        layout_build.fill_csr(self.matrix.entries, self.matrix.ptr, self.matrix.n_pe, self.rows.rowptr, cols, codes)
        return CSR(cols, codes)

    def source(self) -> CSR:
        """The CSR for building another layout: this strategy's own if built, else a temporary one."""
        arrays = self._arrays
        return arrays if arrays is not None else self._build()

    def cost(self) -> float:
        """ns per thread of a float32 gather: ``gather_ns_per_entry`` for every stored entry."""
        return self.costs.gather_ns_per_entry * self.rows.nnz

    def run_float32(self, x, bias, relu, out) -> None:
        cols, codes = self._arrays or self.arrays()
        with kernel_section():
            _kernels.gather_f32(self.rowptr, cols, codes, self.codebook, self.row_bounds, x, bias, relu, out)

    def run_fixed16(self, x_q, plan: Fixed16Plan, shift: int, amax: int, relu, out) -> None:
        """One int16 vector whose largest |value| is ``amax``; ``shift <= 30``. The kernel checks its own rows."""
        cols, codes = self._arrays or self.arrays()
        narrow = self.rows.max_row * (term_bound(plan.wmax, amax, shift) + 1) < 2**31 - 2**15  # int32 row sums
        gather = _kernels.gather_fixed16_narrow if narrow else _kernels.gather_fixed16
        with kernel_section():
            gather(self.rowptr, cols, codes, plan.codebook_q, self.row_bounds, x_q, plan.bias32, shift, relu, out)

    def run_fixed16_batch(self, x_q, plan: Fixed16Plan, shift: int, relu, out) -> None:
        """A (B, K) int16 batch, vectorised over the samples; ``shift <= 30``."""
        cols, codes = self._arrays or self.arrays()
        xt = np.ascontiguousarray(x_q.T, dtype=np.int32)
        with kernel_section():
            _kernels.csr_block_fixed16(self.rowptr, cols, codes, plan.codebook_q, self.row_bounds, xt, plan.bias32,
                                       shift, relu, out)
