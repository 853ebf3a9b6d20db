"""Row gathers over the CSR (dense activations, fixed16 batches): float32 and bit-exact fixed16.

The layout is a CSR of the non-zeros with columns ascending in every row
(``layout_build.fill_csr``); one parallel task per row block (balanced by
non-zeros, aligned to 16 rows), so threads never share an output cache line.
Loop indices over entries are unsigned (see ``column_scatter``).

- ``gather_f32`` may reassociate its sums (``fastmath`` reassoc/contract only,
  so NaN and Inf keep their IEEE meaning), which lets LLVM vectorise them.
- ``gather_fixed16``/``gather_fixed16_narrow`` check each row: ``|b| + sum|term|``
  within int16 bounds every partial sum, in any order, so no clamp could fire
  and the plain sum is exact; rows that fail it are redone with clamps, in
  ascending column order (the hardware's).
- ``csr_block_fixed16`` runs a batch, each sample with its own saturating
  accumulator, in ascending column order: bit-exact.

The fixed16 kernels work per entry in int32, where |w|, |a| <= 2**15 keep
``|p| + 2**(shift-1)`` below 2**31 for ``shift <= 30``, the only shifts the
caller sends them.
"""

import numpy as np
from numba import prange

from .jit import njit

_GATHER_MATH = {"reassoc", "contract"}



@njit(cache=True, parallel=True, fastmath=_GATHER_MATH)
def gather_f32(rowptr, cols, codes, codebook, bounds, x, bias, relu, out):
    """out = act(W x + bias) by row gathers over the CSR (dense activations)."""
    nblk = bounds.shape[0] - 1
    for b in prange(nblk):
        for i in range(np.uint64(bounds[b]), np.uint64(bounds[b + 1])):
            s = np.float32(0.0)
            for e in range(np.uint64(rowptr[i]), np.uint64(rowptr[i + np.uint64(1)])):
                s += codebook[codes[e]] * x[cols[e]]
            y = s + bias[i]
            if relu and y < 0:
                y = np.float32(0.0)
            out[i] = y


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
