"""Batches over column panels (``kernels.panel_batch``): float32, and fixed16 on AVX512BW hosts.

Entries panel-major, one uint16 each (column within the panel << 4 | code),
with a pointer per (panel, row) pair: 2 bytes per entry plus 4 per pair.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..kernels import input_scan, kernel_section
from ..kernels import layout_build
from ..kernels import panel_batch as _kernels
from .fixed16 import Fixed16Plan, term_bound
from .row_gather import RowGather
from .strategy import Strategy


class Panels(NamedTuple):
    pptr: np.ndarray  # (panels * M + 1) where each (panel, row) pair starts
    packed: np.ndarray  # column within the panel << 4 | code


class PanelBatch(Strategy):
    """``panel_batch_f32`` and ``panel_batch_fixed16`` over panels of ``panel`` columns."""

    name = "panel_batch"

    def __init__(self, matrix, rows, costs, csr: RowGather, panel: int | None = None):
        super().__init__(matrix, rows, costs)
        if panel is not None and not 1 <= panel <= _kernels.MAX_PACKED_PANEL:
            raise ValueError(f"panel must be 1..{_kernels.MAX_PACKED_PANEL} columns, got {panel}")
        m, k = rows.shape
        self.panel = panel or _kernels.panel_width(m, k, rows.nnz)
        self._csr = csr

    @staticmethod
    def fixed16_available() -> bool:
        """Whether Numba compiles for a CPU with ``vpmaddwd`` on 512 bits (read at each call: tests patch it)."""
        return _kernels.FIXED16_AVAILABLE

    def _build(self) -> Panels:
        m, k = self.rows.shape
        csr = self._csr.source()
        pptr = np.empty(-(-k // self.panel) * m + 1, dtype=self.rows.rowptr.dtype)
        packed = np.empty(self.rows.nnz, dtype=np.uint16)
        layout_build.fill_panels(self.rows.rowptr, csr.cols, csr.codes, m, self.panel, pptr, packed)
        return Panels(pptr, packed)

    def run_float32(self, x, bias, relu, out) -> None:
        pptr, packed = self._arrays or self.arrays()
        with kernel_section():  # serialized only on Numba's thread-unsafe workqueue layer
            _kernels.panel_batch_f32(pptr, packed, self.codebook, self.row_bounds, self.panel, x, bias, relu, out)

    def run_fixed16(self, x_q, plan: Fixed16Plan, shift: int, relu, out) -> None:
        """A (B, K) int16 batch; ``shift <= 29`` (``plan.halves``)."""
        pptr, packed = self._arrays or self.arrays()
        _, amax = input_scan.count_and_amax(x_q.reshape(-1))
        fit16 = term_bound(plan.wmax, amax, shift) < 32767  # every rounded product fits int16
        with kernel_section():
            _kernels.panel_batch_fixed16(pptr, packed, plan.codebook_words, self.row_bounds, self.panel, x_q,
                                         plan.bias32, shift, plan.halves[0], fit16, relu, out)
