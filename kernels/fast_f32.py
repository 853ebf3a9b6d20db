"""float32 kernels on the execution layouts of ``kernels.fast_layout``.

Why they are shaped this way (measured on the project's 2-core benchmark machine):

- Loop indices over entries are unsigned (``np.uint64``): Numba wraps negative
  indices, and with signed indices every array access carries a select that
  also stops LLVM from vectorising.
- One parallel task per contiguous row block (blocks balanced by non-zeros,
  aligned to 16 rows), so threads never share an output cache line.
- Sparse activations: column scatter over the non-zero activations only (EIE's
  algorithm); each row receives its terms in ascending column order, exactly
  like ``kernels.spmspv``, so results are bit-identical to it.
- Dense activations and batches: a row gather over the CSR; its reductions
  may be reassociated (``fastmath`` reassoc/contract only, so NaN and Inf keep
  their IEEE meaning), which lets LLVM vectorise them.
"""

import numpy as np
from numba import njit, prange

_GATHER_MATH = {"reassoc", "contract"}


@njit(cache=True)
def compact_nonzeros(x):
    """Indices (uint32) and values of the non-zero entries of ``x``; NaN counts as non-zero."""
    k = x.shape[0]
    idx = np.empty(k, dtype=np.uint32)
    n = 0
    for j in range(k):
        idx[n] = j
        n += x[j] != 0  # branch-free: always write, advance only on a non-zero
    idx = idx[:n]
    val = np.empty(n, dtype=x.dtype)
    for t in range(n):
        val[t] = x[idx[t]]
    return idx, val


@njit(cache=True, parallel=True)
def scatter_f32(colptr, rows, codes, codebook, bounds, nz_idx, nz_val, bias, relu, out):
    """out = act(W a + bias) from the non-zeros of ``a`` (EIE's column scatter)."""
    nblk = colptr.shape[0]
    ncb = codebook.shape[0]
    for b in prange(nblk):
        r0 = bounds[b]
        r1 = bounds[b + 1]
        acc = out[r0:r1]
        acc[:] = 0.0
        tab = np.empty(ncb, dtype=np.float32)
        for t in range(nz_idx.shape[0]):
            j = np.uint64(nz_idx[t])
            a = nz_val[t]
            for v in range(ncb):
                tab[v] = codebook[v] * a
            for e in range(np.uint64(colptr[b, j]), np.uint64(colptr[b, j + np.uint64(1)])):
                acc[rows[e]] += tab[codes[e]]
        for r in range(r1 - r0):
            y = acc[r] + bias[r0 + r]
            if relu and y < 0:
                y = np.float32(0.0)
            acc[r] = y


@njit(cache=True, parallel=True, fastmath=_GATHER_MATH)
def gather_f32(rowptr, cols, vals, bounds, x, bias, relu, out):
    """out = act(W x + bias) by row gathers over the CSR (dense activations)."""
    nblk = bounds.shape[0] - 1
    for b in prange(nblk):
        for i in range(np.uint64(bounds[b]), np.uint64(bounds[b + 1])):
            s = np.float32(0.0)
            for e in range(np.uint64(rowptr[i]), np.uint64(rowptr[i + np.uint64(1)])):
                s += vals[e] * x[cols[e]]
            y = s + bias[i]
            if relu and y < 0:
                y = np.float32(0.0)
            out[i] = y


@njit(cache=True, parallel=True, fastmath=_GATHER_MATH)
def csr_block_f32(rowptr, cols, vals, bounds, xt, bias, relu, out):
    """out (B, M) = act(X W^T + bias) with ``xt`` = X^T (K, B) contiguous.

    Each entry multiplies one contiguous row of ``xt`` (all B samples of its
    column), so the inner loop is a vectorised multiply-add over the batch.
    """
    nblk = bounds.shape[0] - 1
    nb = xt.shape[1]
    nbu = np.uint64(nb)
    for b in prange(nblk):
        acc = np.empty(nb, dtype=np.float32)
        for i in range(np.uint64(bounds[b]), np.uint64(bounds[b + 1])):
            acc[:] = 0.0
            for e in range(np.uint64(rowptr[i]), np.uint64(rowptr[i + np.uint64(1)])):
                v = vals[e]
                c = np.uint64(cols[e])
                for s in range(nbu):
                    acc[s] += v * xt[c, s]  # 2-D index, no row view: views cost a refcount each
            bi = bias[i]
            for s in range(nb):
                y = acc[s] + bi
                if relu and y < 0:
                    y = np.float32(0.0)
                out[s, i] = y


@njit(cache=True, inline="always")
def _put(out, s, i, y, relu):
    if s < out.shape[0]:
        if relu and y < 0:
            y = np.float32(0.0)
        out[s, i] = y


@njit(cache=True, parallel=True)
def csr_block16_f32(rowptr, cols, vals, bounds, x16, bias, relu, out):
    """out (B, M) = act(X W^T + bias), the batch given as ``x16`` (ceil(B/16), K, 16), zero-padded.

    Sixteen samples at a time in sixteen scalar accumulators, which LLVM keeps
    in registers and packs into vector multiply-adds: each entry costs one
    broadcast and one 64-byte load per 16 samples. Rows outermost, so a row's
    entries are read from memory once and from L1 for the other chunks.
    """
    nblk = bounds.shape[0] - 1
    nchunk = x16.shape[0]
    for b in prange(nblk):
        for i in range(np.uint64(bounds[b]), np.uint64(bounds[b + 1])):
            e0 = np.uint64(rowptr[i])
            e1 = np.uint64(rowptr[i + np.uint64(1)])
            bi = bias[i]
            for ch in range(np.uint64(nchunk)):
                a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = a8 = a9 = a10 = a11 = a12 = a13 = a14 = a15 = np.float32(0.0)
                for e in range(e0, e1):
                    v = vals[e]
                    c = np.uint64(cols[e])
                    a0 += v * x16[ch, c, 0]
                    a1 += v * x16[ch, c, 1]
                    a2 += v * x16[ch, c, 2]
                    a3 += v * x16[ch, c, 3]
                    a4 += v * x16[ch, c, 4]
                    a5 += v * x16[ch, c, 5]
                    a6 += v * x16[ch, c, 6]
                    a7 += v * x16[ch, c, 7]
                    a8 += v * x16[ch, c, 8]
                    a9 += v * x16[ch, c, 9]
                    a10 += v * x16[ch, c, 10]
                    a11 += v * x16[ch, c, 11]
                    a12 += v * x16[ch, c, 12]
                    a13 += v * x16[ch, c, 13]
                    a14 += v * x16[ch, c, 14]
                    a15 += v * x16[ch, c, 15]
                s0 = np.int64(ch) * 16
                _put(out, s0 + 0, i, a0 + bi, relu)
                _put(out, s0 + 1, i, a1 + bi, relu)
                _put(out, s0 + 2, i, a2 + bi, relu)
                _put(out, s0 + 3, i, a3 + bi, relu)
                _put(out, s0 + 4, i, a4 + bi, relu)
                _put(out, s0 + 5, i, a5 + bi, relu)
                _put(out, s0 + 6, i, a6 + bi, relu)
                _put(out, s0 + 7, i, a7 + bi, relu)
                _put(out, s0 + 8, i, a8 + bi, relu)
                _put(out, s0 + 9, i, a9 + bi, relu)
                _put(out, s0 + 10, i, a10 + bi, relu)
                _put(out, s0 + 11, i, a11 + bi, relu)
                _put(out, s0 + 12, i, a12 + bi, relu)
                _put(out, s0 + 13, i, a13 + bi, relu)
                _put(out, s0 + 14, i, a14 + bi, relu)
                _put(out, s0 + 15, i, a15 + bi, relu)
