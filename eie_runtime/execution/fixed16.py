"""What fixed16 calls derive from the layer's parameters (w_frac, shift, bias), once per change.

Every strategy's fixed16 kernel takes the same int32 codebook and bias; the
choices take bounds on the rounded products (``term_bound``, ``fit16_amax``)
and, for the column scatter, the largest activation for which no row can
saturate (``safe_amax``, from every row's sum of |weight|).
"""

from __future__ import annotations

import threading
from typing import NamedTuple

import numpy as np

from ..fixed_point import to_fixed
from ..format import InterleavedCSC
from ..kernels import column_scatter as _scatter
from ..kernels import layout_build
from ..kernels import sliced_ell as _ell
from .rows import Rows


class Fixed16Plan(NamedTuple):
    """What fixed16 calls derive from (w_frac, shift, bias): built once, reused while they stay the same."""

    key: tuple  # (w_frac, shift)
    bias_q: np.ndarray  # the caller's bias object, kept alive so that its identity is not reused
    bias32: np.ndarray  # it as int32
    codebook_q: np.ndarray  # int32 weights
    wmax: int  # max |codebook_q|
    fit16_amax: int  # every rounded product fits int16 while max |activation| <= this (fit16_amax)
    halves: tuple | None  # rounding_halves(shift) for the vpmaddwd kernels (shift <= 29), else None
    codebook_words: np.ndarray | None  # codebook_words(codebook_q, w_hi) for the vpmaddwd kernels
    safe_amax: int  # the scatter needs no saturation check up to this |activation| (column_scatter.safe_amax)


def term_bound(wmax: int, amax: int, shift: int) -> int:
    """A bound on every rounded product ``|(w a + half) >> shift|`` for ``|w| <= wmax``, ``|a| <= amax``."""
    return (wmax * int(amax) + (1 << 29)) >> shift


def fit16_amax(wmax: int, shift: int) -> int:
    """The largest ``amax`` (-1 for none, capped at 32768) with ``term_bound(wmax, amax, shift) < 32767``."""
    room = (32767 << shift) - (1 << 29) - 1  # wmax * amax may reach this
    if room < 0:
        return -1
    return 32768 if wmax == 0 else min(32768, room // wmax)


class Fixed16Plans:
    """The plan of the last fixed16 call, and the per-``w_frac`` tables it comes from (an int64 per row)."""

    name = "fixed16"

    def __init__(self, matrix: InterleavedCSC, rows: Rows):
        self.matrix = matrix
        self.rows = rows
        self._tables = None  # (w_frac, codebook_q, row sums of |weight_q|, max |codebook_q|), on first use
        self._plan = None  # the Fixed16Plan of the last fixed16 call
        self._lock = threading.Lock()

    def tables(self, w_frac: int):
        """(w_frac, int32 codebook, every row's sum of |weight| (int64), max |weight|) for ``w_frac``."""
        q = self._tables
        if q is None or q[0] != w_frac:
            with self._lock:
                q = self._tables
                if q is None or q[0] != w_frac:
                    codebook_q = to_fixed(self.matrix.codebook, w_frac).astype(np.int32)
                    abs_w = np.abs(codebook_q).astype(np.int64)
                    m = self.rows.shape[0]
                    row_abs = layout_build.row_abs_sums(self.matrix.entries, self.matrix.ptr, self.matrix.n_pe, m,
                                                        abs_w)
                    q = (w_frac, codebook_q, row_abs, int(abs_w.max(initial=0)))
                    self._tables = q
        return q

    def plan(self, w_frac: int, bias_q: np.ndarray, shift: int) -> Fixed16Plan:
        """The plan for these parameters and this bias object (layers pass the same cached one), remembered:
        a single-vector call then costs a count, a few comparisons and the kernel (deriving these on
        every call cost about 4 us on NT-We)."""
        plan = self._plan
        if plan is not None and plan.bias_q is bias_q and plan.key == (w_frac, shift):
            return plan
        _, codebook_q, row_abs, wmax = self.tables(w_frac)
        bias32 = np.ascontiguousarray(bias_q, dtype=np.int32)
        halves = _ell.rounding_halves(shift) if shift <= 29 else None
        safe = int(_scatter.safe_amax(row_abs, self.rows.rowptr, bias32, shift)) if shift < 63 else 0
        plan = Fixed16Plan(key=(w_frac, shift), bias_q=bias_q, bias32=bias32, codebook_q=codebook_q, wmax=wmax,
                           fit16_amax=fit16_amax(wmax, shift), halves=halves,
                           codebook_words=_ell.codebook_words(codebook_q, halves[1]) if halves else None,
                           safe_amax=safe)
        self._plan = plan  # one tuple, replaced atomically: safe under concurrent calls
        return plan

    def nbytes(self) -> int:
        """The row sums of |weight| once a fixed16 call has needed them."""
        q = self._tables
        return 0 if q is None else int(q[2].nbytes)
