"""Bit-exact fixed16 kernels (DESIGN.md arithmetic) on the execution layouts.

Every row receives at most one term per column, and all kernels add a row's
terms in ascending column order, so saturating after every add reproduces
the hardware's order exactly. Clamps are skipped only where they provably
cannot fire (then the plain sum is the same number):

- the scatter takes ``saturate=False`` only after the caller proved with
  ``safe_amax`` that no partial sum of any row can leave int16 for this input;
- the gather checks each row itself: ``|b| + sum|term|`` within int16 bounds
  every partial sum, in any order; rows that fail it are redone with clamps.

The scatter rounds its 16-entry product table in int64 (any ``shift < 63``);
the gather and batch kernels work per entry in int32, where |w|, |a| <= 2**15
keep ``|p| + 2**(shift-1)`` below 2**31 for ``shift <= 30``, the only shifts
the caller sends them.
"""

import numpy as np
from numba import prange

from .fast_f32 import nonzero_columns
from .jit import njit
from .vector_scatter import saturating_column_add


@njit(cache=True)
def count_and_amax(x_q):
    """Non-zero count and largest |value| of ``x_q``, without compacting (the gather needs neither list)."""
    n = 0
    amax = 0
    for j in range(x_q.shape[0]):
        a = np.int32(x_q[j])
        n += a != 0
        amax = max(amax, abs(a))
    return n, amax


@njit(cache=True)
def safe_amax(row_abs_w, rowptr, bias_q, shift):
    """Largest max|a| for which no partial sum of any row can leave int16.

    A row's partial sums are bounded by ``|b| + sum_e |round_shift(w_e a_e)|``
    and ``|round_shift(p)| <= |p| / 2**shift + 1``; so the row is safe while
    ``row_abs_w * amax <= (32767 - |b| - n_entries) * 2**shift``. Returns -1
    when even ``amax = 0`` is not provably safe.
    """
    m = row_abs_w.shape[0]
    best = np.int64(1) << 40  # above any |int16| activation
    for i in range(m):
        room = np.int64(32767) - abs(np.int64(bias_q[i])) - (rowptr[i + 1] - rowptr[i])
        if room < 0:
            return np.int64(-1)
        s = row_abs_w[i]
        if s > 0:
            best = min(best, (room << min(shift, 40)) // s)  # a smaller shift only tightens the test
    return best


@njit(cache=True, parallel=True)
def scatter_fixed16(colptr, packed, codebook_q, bounds, x_q, bias_q, shift, relu, saturate, out):
    """int16 out = act(W x + b) from the non-zeros of the int16 ``x_q``, column scatter."""
    nblk = colptr.shape[0]
    ncb = codebook_q.shape[0]
    half = (np.int64(1) << (shift - 1)) if shift > 0 else np.int64(0)
    narrow = shift <= 30
    half32 = np.int32(half) if narrow else np.int32(0)
    sh32 = np.int32(shift) if narrow else np.int32(0)
    four = np.uint16(4)
    mask = np.uint16(15)
    for b in prange(nblk):
        r0 = bounds[b]
        r1 = bounds[b + 1]
        acc = np.empty(r1 - r0, dtype=np.int32)
        for r in range(r1 - r0):
            acc[r] = bias_q[r0 + r]
        tab = np.zeros(16, dtype=np.int32)  # 16 entries whatever the codebook size: the vector path reads any code
        idx, n = nonzero_columns(x_q)  # in each thread: see kernels.fast_f32
        for t in range(n):
            j = np.uint64(idx[t])
            a = np.int32(x_q[j])
            if narrow:  # int32 products: the 16-entry table vectorises
                for v in range(ncb):
                    tab[v] = (np.int32(codebook_q[v]) * a + half32) >> sh32
            else:
                for v in range(ncb):
                    tab[v] = (np.int64(codebook_q[v]) * a + half) >> shift
            e0 = np.uint64(colptr[b, j])
            e1 = np.uint64(colptr[b, j + np.uint64(1)])
            if saturate:
                saturating_column_add(acc, packed, tab, e0, e1)
            else:
                for e in range(e0, e1):
                    p = packed[e]
                    acc[p >> four] += tab[p & mask]
        for r in range(r1 - r0):
            y = acc[r]
            if relu and y < 0:
                y = 0
            out[r0 + r] = y


@njit(cache=True)
def _widen(x_q):
    """An int32 copy of ``x_q``, made by each thread for itself: gathers need 32-bit lanes (int16
    gathers run scalar), and a copy made by the calling thread costs a cross-core transfer (~2 us)."""
    x32 = np.empty(x_q.shape[0], dtype=np.int32)
    for j in range(x_q.shape[0]):
        x32[j] = x_q[j]
    return x32


@njit(cache=True, parallel=True)
def gather_fixed16(rowptr, cols, codes, codebook_q, bounds, x_q, bias_q, shift, relu, out):
    """int16 out = act(W x + b) by row gathers over the int16 input ``x_q``.

    Per row, one vectorised pass sums the rounded products and their absolute
    values. When ``|b| + sum|term|`` fits int16, no partial sum in any order
    can leave int16, so no clamp would fire and the plain sum is the exact
    result; otherwise the row is redone term by term with saturation, in
    ascending column order (rare: only rows driven to the int16 edge).
    """
    nblk = bounds.shape[0] - 1
    half = np.int32(1 << (shift - 1)) if shift > 0 else np.int32(0)
    sh = np.int32(shift)
    for b in prange(nblk):
        x32 = _widen(x_q)
        for i in range(np.uint64(bounds[b]), np.uint64(bounds[b + 1])):
            bi = np.int64(bias_q[i])
            e0 = np.uint64(rowptr[i])
            e1 = np.uint64(rowptr[i + np.uint64(1)])
            total = np.int64(0)
            mag = np.int64(0)
            for e in range(e0, e1):
                t = np.int64((np.int32(codebook_q[codes[e]]) * x32[cols[e]] + half) >> sh)
                total += t
                mag += abs(t)
            if abs(bi) + mag <= 32767:
                acc = bi + total
            else:
                acc = bi
                for e in range(e0, e1):
                    acc += (np.int32(codebook_q[codes[e]]) * x32[cols[e]] + half) >> sh
                    acc = min(max(acc, np.int64(-32768)), np.int64(32767))
            if relu and acc < 0:
                acc = 0
            out[i] = acc


@njit(cache=True, parallel=True)
def gather_fixed16_narrow(rowptr, cols, codes, codebook_q, bounds, x_q, bias_q, shift, relu, out):
    """``gather_fixed16`` with int32 sums (twice the vector lanes; Numba widens int32
    arithmetic to int64 unless every step is cast back). Only for calls where the
    caller bounded every row's ``sum|term|`` below 2**31 - 2**15."""
    nblk = bounds.shape[0] - 1
    half = np.int32(1 << (shift - 1)) if shift > 0 else np.int32(0)
    sh = np.int32(shift)
    for b in prange(nblk):
        x32 = _widen(x_q)
        for i in range(np.uint64(bounds[b]), np.uint64(bounds[b + 1])):
            bi = np.int32(bias_q[i])
            e0 = np.uint64(rowptr[i])
            e1 = np.uint64(rowptr[i + np.uint64(1)])
            total = np.int32(0)
            mag = np.int32(0)
            for e in range(e0, e1):
                xv = np.int32(np.int16(x32[cols[e]]))  # int16 -> int32 known: one 16-bit multiply
                t = np.int32(np.int32(np.int32(np.int32(codebook_q[codes[e]]) * xv) + half) >> sh)
                total = np.int32(total + t)
                mag = np.int32(mag + np.int32(abs(t)))
            if abs(np.int64(bi)) + mag <= 32767:
                acc = np.int64(bi) + total
            else:
                acc = np.int64(bi)
                for e in range(e0, e1):
                    acc += (np.int32(codebook_q[codes[e]]) * x32[cols[e]] + half) >> sh
                    acc = min(max(acc, np.int64(-32768)), np.int64(32767))
            if relu and acc < 0:
                acc = 0
            out[i] = acc


@njit(cache=True, parallel=True)
def csr_block_fixed16(rowptr, cols, codes, codebook_q, bounds, xt, bias_q, shift, relu, out):
    """int16 out (B, M) for a batch given as ``xt`` = X^T (K, B) int32, saturating.

    Vectorised over the batch: each row's entries come in ascending column
    order, and every sample keeps its own saturating accumulator, so each
    sample sees exactly the hardware's order. ``shift <= 30``.
    """
    nblk = bounds.shape[0] - 1
    nb = xt.shape[1]
    half = np.int32(1 << (shift - 1)) if shift > 0 else np.int32(0)
    sh = np.int32(shift)
    lo = np.int32(-32768)
    hi = np.int32(32767)
    for b in prange(nblk):
        acc = np.empty(nb, dtype=np.int32)
        for i in range(np.uint64(bounds[b]), np.uint64(bounds[b + 1])):
            acc[:] = np.int32(bias_q[i])
            for e in range(np.uint64(rowptr[i]), np.uint64(rowptr[i + np.uint64(1)])):
                w = np.int32(codebook_q[codes[e]])
                xr = xt[np.uint64(cols[e])]
                for s in range(nb):
                    acc[s] = min(max(acc[s] + ((w * xr[s] + half) >> sh), lo), hi)
            for s in range(nb):
                y = acc[s]
                if relu and y < 0:
                    y = 0
                out[s, i] = y
