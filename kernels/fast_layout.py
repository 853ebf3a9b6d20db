"""Build the load-time execution layouts from the stored interleaved CSC.

Two layouts of the same non-zeros (padding dropped), derived once per layer:

- a row-major CSR (``rowptr``, ``cols``, ``vals``): columns ascending within
  each row, for the gather kernels (dense activations, batches);
- a blocked CSC for the column scatter: rows cut into a few contiguous blocks
  balanced by non-zero count and aligned to 16 rows (so two threads never
  share a cache line of the output), each block with its own column pointers
  ``colptr[b, j]`` and one uint16 per entry packing the block-local row and
  the 4-bit codebook index (2 bytes per entry; the value comes from a
  16-entry per-column table, which serves float32 and fixed16 alike).

Pure functions over validated arrays (see ``kernels/__init__``).
"""

import numpy as np
from numba import njit


@njit(cache=True)
def row_counts(entries, ptr, n_pe, m):
    """Non-zeros (padding excluded) of every global row."""
    counts = np.zeros(m, dtype=np.int64)
    k = ptr.shape[1] - 1
    for pe in range(n_pe):
        for j in range(k):
            local = -1
            for e in range(ptr[pe, j], ptr[pe, j + 1]):
                b = entries[e]
                local += (b >> 4) + 1
                if b & 0xF:
                    counts[local * n_pe + pe] += 1
    return counts


@njit(cache=True)
def fill_csr(entries, ptr, n_pe, rowptr, cols, codes):
    """CSR with columns ascending in every row: walk columns outermost."""
    m = rowptr.shape[0] - 1
    k = ptr.shape[1] - 1
    pos = rowptr[:m].copy()
    for j in range(k):
        for pe in range(n_pe):
            local = -1
            for e in range(ptr[pe, j], ptr[pe, j + 1]):
                b = entries[e]
                local += (b >> 4) + 1
                v = b & 0xF
                if v:
                    row = local * n_pe + pe
                    p = pos[row]
                    cols[p] = j
                    codes[p] = v
                    pos[row] = p + 1


@njit(cache=True)
def block_column_counts(rowptr, cols, bounds, k):
    """Entries of every (block, column) pair."""
    nblk = bounds.shape[0] - 1
    counts = np.zeros((nblk, k), dtype=np.int64)
    for b in range(nblk):
        for i in range(bounds[b], bounds[b + 1]):
            for e in range(rowptr[i], rowptr[i + 1]):
                counts[b, cols[e]] += 1
    return counts


@njit(cache=True)
def fill_blocked_csc(rowptr, cols, codes, bounds, colptr, packed_out):
    """Blocked CSC from the CSR: rows ascending within every column of a block.

    Each entry is one uint16, ``block-local row << 4 | code`` (blocks hold at
    most 4096 rows): one load per entry in the scatter, and for small blocks
    directly the index of the (row, code) accumulator.
    """
    nblk = bounds.shape[0] - 1
    k = colptr.shape[1] - 1
    for b in range(nblk):
        pos = colptr[b, :k].copy()
        r0 = bounds[b]
        for i in range(bounds[b], bounds[b + 1]):
            for e in range(rowptr[i], rowptr[i + 1]):
                j = cols[e]
                p = pos[j]
                packed_out[p] = ((i - r0) << 4) | codes[e]
                pos[j] = p + 1


@njit(cache=True)
def row_abs_sums(rowptr, w_q):
    """Per row, the sum of ``|w_q|`` over its entries (int64)."""
    m = rowptr.shape[0] - 1
    out = np.zeros(m, dtype=np.int64)
    for i in range(m):
        s = 0
        for e in range(rowptr[i], rowptr[i + 1]):
            s += abs(np.int64(w_q[e]))
        out[i] = s
    return out
