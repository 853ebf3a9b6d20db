"""EIE's sparse-matrix x sparse-vector product on the stored format, PE by PE (Section III-C): a test reference.

For each non-zero activation ``a_j`` (in ascending ``j``, the order the
leading-non-zero detector broadcasts them), each PE walks its entries of
column ``j``, keeps the running row sum of the ``z`` fields, looks the weight
up in the codebook and accumulates into its own local accumulators. PEs own
disjoint rows, so they run in parallel with no synchronisation.

These walks read the stored entries directly, exactly as the hardware does,
written here independently of the package's layouts; tests check the fast
kernels (``eie_runtime.execution``) against them: the float32 table scatter
and every fixed16 kernel bit for bit.
"""

import numpy as np
from numba import prange

from eie_runtime.kernels.fixed16_arith import round_shift, saturate
from eie_runtime.kernels.jit import njit


@njit(cache=True)
def nonzero_activations(x):
    """Indices and values of the non-zero entries of ``x`` (NaN counts as non-zero)."""
    n = 0
    for j in range(x.shape[0]):
        if x[j] != 0:
            n += 1
    idx = np.empty(n, dtype=np.int64)
    val = np.empty(n, dtype=x.dtype)
    n = 0
    for j in range(x.shape[0]):
        if x[j] != 0:
            idx[n] = j
            val[n] = x[j]
            n += 1
    return idx, val


@njit(cache=True, parallel=True)
def spmspv_f32(entries, ptr, codebook, n_pe, m, nz_idx, nz_val, bias, relu, out):
    """out = act(W a + bias) for one vector given as its non-zeros, float32."""
    for pe in prange(n_pe):
        rows_here = (m - pe + n_pe - 1) // n_pe if pe < m else 0
        acc = np.zeros(rows_here, dtype=np.float32)
        for t in range(nz_idx.shape[0]):
            j = nz_idx[t]
            a = nz_val[t]
            local = -1
            for e in range(ptr[pe, j], ptr[pe, j + 1]):
                b = entries[e]
                local += (b >> 4) + 1
                v = b & 0xF
                if v != 0:  # padding multiplies by 0.0; skip it so NaN/Inf stay in their rows
                    acc[local] += codebook[v] * a
        for r in range(rows_here):
            row = r * n_pe + pe
            y = acc[r] + bias[row]
            if relu and y < 0:
                y = 0.0
            out[row] = y


@njit(cache=True, parallel=True)
def spmspv_fixed16(entries, ptr, codebook_q, n_pe, m, x_q, bias_q, shift, relu, out):
    """Bit-exact fixed16 layer (docs/design.md) for a batch ``x_q`` (B, K) of int16.

    Each row's additions happen in ascending column order, entries in stored
    order, each saturating: the order the hardware's broadcast imposes.
    """
    n_samples = x_q.shape[0]
    k = x_q.shape[1]
    for task in prange(n_samples * n_pe):
        s = task // n_pe
        pe = task % n_pe
        rows_here = (m - pe + n_pe - 1) // n_pe if pe < m else 0
        acc = np.empty(rows_here, dtype=np.int64)
        for r in range(rows_here):
            acc[r] = bias_q[r * n_pe + pe]
        for j in range(k):
            a = np.int64(x_q[s, j])
            if a == 0:
                continue
            local = -1
            for e in range(ptr[pe, j], ptr[pe, j + 1]):
                b = entries[e]
                local += (b >> 4) + 1
                p = np.int64(codebook_q[b & 0xF]) * a  # int16 x int16 fits int32
                acc[local] = saturate(acc[local] + round_shift(p, shift))
        for r in range(rows_here):
            y = acc[r]
            if relu and y < 0:
                y = 0
            out[s, r * n_pe + pe] = y
