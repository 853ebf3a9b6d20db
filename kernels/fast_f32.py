"""float32 kernels on the execution layouts of ``kernels.fast_layout``.

Why they are shaped this way (measured on the project's 2-core benchmark machine):

- Loop indices over entries are unsigned (``np.uint64``): Numba wraps negative
  indices, and with signed indices every array access carries a select that
  also stops LLVM from vectorising.
- One parallel task per contiguous row block (blocks balanced by non-zeros,
  aligned to 16 rows), so threads never share an output cache line.
- Sparse activations: column scatter over the non-zero activations only (EIE's
  algorithm). ``scatter_f32`` gives each row its terms in ascending column
  order, exactly like ``kernels.spmspv``, so its results are bit-identical to
  it; ``scatter_by_code_f32`` (small row blocks) sums per codebook entry first.
- Dense activations: ``kernels.sliced_ell`` where the host has AVX-512,
  else (and for inputs with NaN or Inf) a row gather over the CSR; its
  reductions may be reassociated (``fastmath`` reassoc/contract only, so NaN
  and Inf keep their IEEE meaning), which lets LLVM vectorise them.
- Batches: ``kernels.panel_batch`` (column panels, vector registers written in LLVM IR).
"""

import numpy as np
from numba import prange

from .jit import njit

_GATHER_MATH = {"reassoc", "contract"}


@njit(cache=True)
def nonzero_columns(x):
    """Indices (uint32) of the non-zero entries of ``x`` and their count; NaN counts as non-zero.

    The scatters call it in each thread: compacting once on the calling thread
    and sharing the list cost more (3-7%) in cross-core transfers than
    scanning ``x`` twice in parallel.
    """
    k = x.shape[0]
    idx = np.empty(k, dtype=np.uint32)
    n = 0
    for j in range(k):
        idx[n] = j
        n += x[j] != 0  # branch-free: always write, advance only on a non-zero
    return idx, n


@njit(cache=True)
def count_nonzero_finite(x):
    """Non-zeros of a float32 vector (NaN counts) and whether all are finite, in one pass over
    the bit patterns (about 1 us at K=4096; numpy's float ``count_nonzero`` alone took 2.6 us)."""
    bits = x.view(np.uint32)
    n = 0
    bad = 0
    for j in range(np.uint64(bits.shape[0])):
        b = bits[j]
        n += (b & np.uint32(0x7FFFFFFF)) != 0  # -0.0 is zero
        bad += (b & np.uint32(0x7F800000)) == np.uint32(0x7F800000)  # exponent all ones: Inf or NaN
    return n, bad == 0


@njit(cache=True, parallel=True)
def scatter_f32(colptr, packed, codebook, bounds, x, bias, relu, out):
    """out = act(W x + bias) from the non-zeros of ``x`` (EIE's column scatter).

    Per column, a 16-entry table holds codebook * a; each entry adds
    ``tab[code]`` to its row.
    """
    nblk = colptr.shape[0]
    ncb = codebook.shape[0]
    four = np.uint16(4)
    mask = np.uint16(15)
    for b in prange(nblk):
        r0 = bounds[b]
        r1 = bounds[b + 1]
        # a private accumulator, not a view of ``out``: LLVM cannot prove a view
        # distinct from the other arrays, and 2-thread runs were 1.3-1.9x slower with it
        acc = np.zeros(r1 - r0, dtype=np.float32)
        tab = np.empty(ncb, dtype=np.float32)
        idx, n = nonzero_columns(x)
        for t in range(n):
            j = np.uint64(idx[t])
            a = x[j]
            for v in range(ncb):
                tab[v] = codebook[v] * a
            for e in range(np.uint64(colptr[b, j]), np.uint64(colptr[b, j + np.uint64(1)])):
                p = packed[e]
                acc[p >> four] += tab[p & mask]
        for r in range(r1 - r0):
            y = acc[r] + bias[r0 + r]
            if relu and y < 0:
                y = np.float32(0.0)
            out[r0 + r] = y


@njit(cache=True, parallel=True)
def scatter_by_code_f32(colptr, packed, codebook, bounds, x, bias, relu, out):
    """``scatter_f32`` accumulating activations per (row, code), then one 16-term dot per row.

    An entry then costs one load-add-store at index ``packed[e]``, with no
    table lookup and no multiply; 1.3x faster when a block's 16 x rows
    accumulators fit L1 (the caller sends only blocks of at most
    ``BY_CODE_MAX_ROWS`` rows). Sums round differently from ``scatter_f32``.
    """
    nblk = colptr.shape[0]
    ncb = codebook.shape[0]
    for b in prange(nblk):
        r0 = bounds[b]
        r1 = bounds[b + 1]
        acc = np.zeros((r1 - r0) * 16, dtype=np.float32)
        idx, n = nonzero_columns(x)
        for t in range(n):
            j = np.uint64(idx[t])
            a = x[j]
            for e in range(np.uint64(colptr[b, j]), np.uint64(colptr[b, j + np.uint64(1)])):
                acc[packed[e]] += a
        for r in range(r1 - r0):
            y = bias[r0 + r]
            for v in range(1, ncb):  # code 0 is padding: never stored here
                y += codebook[v] * acc[r * 16 + v]
            if relu and y < 0:
                y = np.float32(0.0)
            out[r0 + r] = y


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
