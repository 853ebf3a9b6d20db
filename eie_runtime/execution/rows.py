"""What every call of a layer needs before it picks a kernel: row counts and row blocks.

Read from the stored entries at construction (one walk, 4-8 bytes per row),
without building any per-entry layout.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..format import InterleavedCSC
from ..kernels import layout_build

ROW_ALIGN = 16  # rows per 64-byte cache line of float32 outputs
MAX_BLOCK_ROWS = 1 << 12  # block-local row << 4 | code fits a uint16


def default_blocks() -> int:
    """Row blocks per layer: one per Numba thread."""
    import numba

    return max(1, int(numba.config.NUMBA_NUM_THREADS))


def balanced_bounds(row_nnz: np.ndarray, n_blocks: int, max_rows: int | None = MAX_BLOCK_ROWS) -> np.ndarray:
    """Row block boundaries at multiples of ROW_ALIGN, each block near total/n_blocks non-zeros.

    With ``max_rows``, tall layers get more blocks, the same number per thread
    (3 blocks on 2 threads ran 1.5x slower than 4).

    Cost: one cumulative sum and one vectorized search over the M rows (numpy), then Python work per
    block only, O(M + blocks log M) in all: a file declaring M = 2**24 rows and no entries costs a
    fraction of a second, not the minutes a search per block over all rows would cost.
    """
    m = row_nnz.shape[0]
    n_blocks = max(1, n_blocks)
    if max_rows is not None:
        n_blocks *= -(-m // (max_rows * n_blocks)) or 1
    n_blocks = max(1, min(n_blocks, -(-m // ROW_ALIGN)))
    cum = np.zeros(m + 1, dtype=np.float64)  # float: the targets below are fractions of the total
    cum[1:] = np.cumsum(row_nnz, dtype=np.int64)  # (a float `out=` here is 100x slower)
    total = int(row_nnz.sum(dtype=np.int64))
    targets = total * np.arange(1, n_blocks, dtype=np.int64) / n_blocks
    # each boundary at the row where its share of the non-zeros is reached, rounded to ROW_ALIGN, never
    # before the previous boundary nor past M
    r = np.searchsorted(cum, targets).astype(np.int64)
    r = np.minimum(m, np.rint(r / ROW_ALIGN).astype(np.int64) * ROW_ALIGN)
    bounds = np.concatenate(([0], np.maximum.accumulate(r), [m])).astype(np.int64) if n_blocks > 1 \
        else np.array([0, m], dtype=np.int64)
    if max_rows is None or np.diff(bounds).max(initial=0) <= max_rows:
        return bounds
    # keep every block within the row limit (very uneven rows): halve an oversized block at a multiple of
    # ROW_ALIGN until each piece fits; Python work only per piece made
    out = [0]
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        _halve(a, b, max_rows, out)
    return np.array(out, dtype=np.int64)


def _halve(a: int, b: int, max_rows: int, out: list) -> None:
    """Append the ends of the pieces of rows [a, b) halved until each holds at most ``max_rows`` rows."""
    stack = [(a, b)]
    while stack:
        lo, hi = stack.pop()
        mid = (lo + hi) // 2 // ROW_ALIGN * ROW_ALIGN
        if hi - lo <= max_rows or not lo < mid < hi:  # fits (or max_rows < 2 * ROW_ALIGN: cannot halve)
            out.append(hi)
            continue
        stack.append((mid, hi))
        stack.append((lo, mid))


class Rows(NamedTuple):
    """A layer's rows as every strategy sees them."""

    shape: tuple  # (M, K)
    nnz: int  # stored non-zeros (padding excluded)
    max_row: int  # the most non-zeros of any row
    rowptr: np.ndarray  # (M + 1) row starts of the CSR (int32, int64 from 2**31 entries)
    bounds: np.ndarray  # scatter row blocks: at most MAX_BLOCK_ROWS rows, the same count per thread
    row_bounds: np.ndarray  # gather, sliced ELL and batch row blocks: one per thread whatever the height

    @classmethod
    def of(cls, matrix: InterleavedCSC, n_blocks: int) -> Rows:
        m, k = matrix.shape
        row_nnz = layout_build.row_counts(matrix.entries, matrix.ptr, matrix.n_pe, m)
        nnz = int(row_nnz.sum())
        rowptr = np.zeros(m + 1, dtype=np.int32 if nnz < 2**31 else np.int64)
        np.cumsum(row_nnz, out=rowptr[1:])
        # gathers and batches: one block per thread whatever the height (5% faster on NT-Wd than 2 each)
        return cls(shape=(m, k), nnz=nnz, max_row=int(row_nnz.max(initial=0)), rowptr=rowptr,
                   bounds=balanced_bounds(row_nnz, n_blocks), row_bounds=balanced_bounds(row_nnz, n_blocks, None))

    def nbytes(self) -> int:
        return self.rowptr.nbytes + self.bounds.nbytes + self.row_bounds.nbytes
