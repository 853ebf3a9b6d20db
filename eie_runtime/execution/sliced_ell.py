"""The sliced ELL (AVX-512 hosts): single vectors with many non-zeros, and small float32 batches.

Rows in groups of 16, columns in segments of 16, per (group, segment) as many
16-lane steps as the fullest row has entries there (``kernels.sliced_ell``):
16 bytes per step plus a segment index (2-3 bytes per entry on the paper
layers). How many steps a layer needs, which decides whether it is worth
keeping, is read from the stored entries without building it.

Its kernels count the input while they copy it and run only above the
threshold the caller gives, so a call needs no counting pass of its own.
Before the arrays exist, the count comes first and the arrays are built only
for a call that will run on them.
"""

from __future__ import annotations

import threading
from typing import NamedTuple

import numpy as np

from ..kernels import input_scan, kernel_section
from ..kernels import layout_build
from ..kernels import sliced_ell as _kernels
from ..kernels.aligned import aligned_empty
from .fixed16 import Fixed16Plan
from .row_gather import RowGather
from .strategy import Strategy


class SlicedEllArrays(NamedTuple):
    gptr: np.ndarray  # (groups + 1) first step of each 16-row group
    slots: np.ndarray  # uint32, 16 per block of 4 steps (64-byte aligned): byte t % 4 is step t's lane
    segs: np.ndarray  # the column segment of every step
    codebook16: np.ndarray  # float32 codebook padded to 16 entries


class SlicedEll(Strategy):
    """``sliced_ell_f32``, ``sliced_ell_batch_f32`` and ``sliced_ell_fixed16`` (see the module docstring)."""

    name = "sliced_ell"
    REQUIRES = _kernels.REQUIRES

    def __init__(self, matrix, rows, costs, csr: RowGather):
        super().__init__(matrix, rows, costs)
        self._csr = csr
        self._gptr = None  # from the step counts, on first need
        self._gptr_lock = threading.Lock()

    @staticmethod
    def available() -> bool:
        """Whether Numba compiles for a CPU with the features its intrinsics need (read at each call: tests patch it)."""
        return _kernels.AVAILABLE

    def group_starts(self) -> np.ndarray:
        """``gptr``: the first step of every 16-row group (int64, groups + 1), counted from the stored entries."""
        gptr = self._gptr
        if gptr is None:
            with self._gptr_lock:
                gptr = self._gptr
                if gptr is None:
                    m, k = self.rows.shape
                    steps = layout_build.sliced_ell_group_steps(self.matrix.entries, self.matrix.ptr,
                                                                self.matrix.n_pe, m, k, _kernels.STEP_UNROLL)
                    gptr = np.zeros(steps.shape[0] + 1, dtype=np.int64)
                    np.cumsum(steps, out=gptr[1:])
                    self._gptr = gptr
        return gptr

    @property
    def steps(self) -> int:
        return int(self.group_starts()[-1])

    def cost(self, fixed16: bool = False, terms_fit16: bool = False) -> float:
        """ns per thread of one vector: every step, whatever the input (float32; fixed16 with clamped int32
        adds, or with one int16 add per step where every term fits int16)."""
        c = self.costs
        step_ns = (c.sliced_ell_fixed16_words_ns_per_step if terms_fit16 else c.sliced_ell_fixed16_ns_per_step) \
            if fixed16 else c.sliced_ell_ns_per_step
        return step_ns * self.steps

    def _build(self) -> SlicedEllArrays:
        m, k = self.rows.shape
        gptr = self.group_starts()
        csr = self._csr.source()
        slots = aligned_empty(int(gptr[-1]) * 16 // _kernels.STEP_UNROLL, np.uint32)  # 64-byte blocks of 4 steps
        slots[:] = 0
        segs = np.zeros(int(gptr[-1]), dtype=np.uint16 if k <= 16 << 16 else np.uint32)
        layout_build.fill_sliced_ell(self.rows.rowptr, csr.cols, csr.codes, m, k, gptr, slots, segs)
        codebook16 = np.zeros(16, dtype=np.float32)
        codebook16[: self.matrix.codebook.shape[0]] = self.matrix.codebook
        return SlicedEllArrays(gptr, slots, segs, codebook16)

    def nbytes(self) -> int:
        """Its arrays once built, else the group starts once counted."""
        gptr = self._gptr
        return super().nbytes() if self.built else (0 if gptr is None else int(gptr.nbytes))

    def run_float32(self, x, bias, relu, out, min_nonzero: float) -> int:
        """``out`` = the layer on ``x`` if it is finite with at least ``min_nonzero`` non-zeros, else
        untouched; returns the count, or ``-1 - count`` when ``x`` holds NaN or Inf."""
        ell = self._arrays
        if ell is None:
            n, finite = input_scan.count_nonzero_finite(x)
            if not finite or n < min_nonzero:
                return n if finite else -1 - n
            ell = self.arrays()
        gptr, slots, segs, codebook16 = ell
        with kernel_section():
            return _kernels.sliced_ell_f32(gptr, slots, segs, codebook16, self.row_bounds, x, bias, relu, out,
                                           min_nonzero)

    def run_float32_batch(self, x, bias, relu, out) -> None:
        """A finite (B, K) batch, 8 vectors per pass."""
        gptr, slots, segs, codebook16 = self._arrays or self.arrays()
        with kernel_section():
            _kernels.sliced_ell_batch_f32(gptr, slots, segs, codebook16, self.row_bounds, x, bias, relu, out)

    def run_fixed16(self, x_q, plan: Fixed16Plan, shift: int, relu, out, min_nonzero: tuple) -> int:
        """``out`` = the layer on ``x_q`` if its non-zero count reaches ``min_nonzero[amax <= plan.fit16_amax]``
        (``shift <= 29``), else untouched; returns ``count << 16 | amax``."""
        ell = self._arrays
        if ell is None:
            n, amax = input_scan.count_and_amax(x_q)
            if n < min_nonzero[amax <= plan.fit16_amax]:
                return (n << 16) | amax
            ell = self.arrays()
        gptr, slots, segs, _ = ell
        with kernel_section():  # saturating in the hardware's order: exact for any input
            return _kernels.sliced_ell_fixed16(gptr, slots, segs, plan.codebook_words, self.row_bounds, x_q,
                                               plan.bias32, shift, plan.halves[0], plan.fit16_amax, min_nonzero, relu,
                                               out)
