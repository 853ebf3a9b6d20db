"""Build the run-time layouts of ``eie_runtime.execution`` from the stored interleaved CSC.

Layouts of the same non-zeros (padding dropped), each built when a call first
needs it:

- a row-major CSR (``rowptr``, ``cols``, ``codes``): columns ascending within
  each row, for the row gathers (``row_gather``) and the source of the others;
- a blocked CSC for the column scatter (``column_scatter``): rows cut into a
  few contiguous blocks balanced by non-zero count and aligned to 16 rows (so
  two threads never share a cache line of the output), each block with its
  own column pointers ``colptr[b, j]`` and one uint16 per entry packing the
  block-local row and the 4-bit codebook index (2 bytes per entry; the value
  comes from a 16-entry per-column table, which serves float32 and fixed16
  alike);
- the sliced ELL of ``sliced_ell`` (single vectors, AVX-512 hosts);
- panel-major entries for the batch kernels (``panel_batch``).

What every call needs to choose among them (``row_counts``, ``sliced_ell_group_steps``,
``row_abs_sums``) is read straight from the stored entries, without building any.
Pure functions over validated arrays (see ``kernels/__init__``).
"""

import numpy as np

from .encode import next_entry
from .jit import njit


@njit(cache=True)
def row_counts(entries, ptr, n_pe, m):
    """Non-zeros (padding excluded) of every global row."""
    counts = np.zeros(m, dtype=np.int64)
    k = ptr.shape[1] - 1
    for pe in range(n_pe):
        for j in range(k):
            local = -1
            for e in range(ptr[pe, j], ptr[pe, j + 1]):
                local, v = next_entry(local, entries[e])
                if v:
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
                local, v = next_entry(local, entries[e])
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
def row_abs_sums(entries, ptr, n_pe, m, abs_w):
    """Per row, the sum of ``abs_w[code]`` over its entries (int64), padding excluded."""
    out = np.zeros(m, dtype=np.int64)
    k = ptr.shape[1] - 1
    for pe in range(n_pe):
        for j in range(k):
            local = -1
            for e in range(ptr[pe, j], ptr[pe, j + 1]):
                local, v = next_entry(local, entries[e])
                if v:
                    out[local * n_pe + pe] += abs_w[v]
    return out


@njit(cache=True)
def _segment_steps(rowptr, cols, r0, r1, seg_steps):
    """For rows r0..r1-1 (one group), ``seg_steps[s]`` = the most entries any row has in column segment s."""
    for i in range(r0, r1):
        e = rowptr[i]
        while e < rowptr[i + 1]:  # columns ascend: a segment's entries are consecutive
            s = cols[e] >> 4
            f = e
            while f < rowptr[i + 1] and cols[f] >> 4 == s:
                f += 1
            seg_steps[s] = max(seg_steps[s], f - e)
            e = f


@njit(cache=True)
def sliced_ell_group_steps(entries, ptr, n_pe, m, k, unroll):
    """Steps of every 16-row group of the sliced ELL (``kernels.sliced_ell``), padded to ``unroll``: per
    16-column segment, the most entries any of the group's rows has there, summed over the segments.

    Walks each PE's entries in stored order over a chunk of segments at a time, counting per
    (segment, row) in bytes (at most 16 entries) small enough to stay in L2, and keeping each
    (segment, group) maximum as it goes (walking all PEs column by column instead hit a new cache
    line per PE and column: 4x slower on VGG-6).
    """
    ngrp = (m + 15) // 16
    nseg = (k + 15) // 16
    out = np.zeros(ngrp, dtype=np.int64)
    chunk = max(1, min(nseg, (1 << 18) // max(1, ngrp * 16)))  # segments per pass
    count = np.empty((chunk, ngrp * 16), dtype=np.uint8)
    most = np.empty((chunk, ngrp), dtype=np.uint8)
    for s0 in range(0, nseg, chunk):
        s1 = min(nseg, s0 + chunk)
        count[:] = 0
        most[:] = 0
        for pe in range(n_pe):
            for j in range(16 * s0, min(k, 16 * s1)):
                s = (j >> 4) - s0
                local = -1
                for e in range(ptr[pe, j], ptr[pe, j + 1]):
                    local, v = next_entry(local, entries[e])
                    if v:
                        row = local * n_pe + pe
                        c = count[s, row] + 1
                        count[s, row] = c
                        most[s, row >> 4] = max(most[s, row >> 4], c)
        for s in range(s1 - s0):
            for g in range(ngrp):
                out[g] += most[s, g]
    for g in range(ngrp):
        out[g] = (out[g] + unroll - 1) // unroll * unroll
    return out


@njit(cache=True)
def fill_sliced_ell(rowptr, cols, codes, m, k, gptr, slots, segs):
    """Steps of each group in segment order; lane l of a step holds ``col & 15 | code << 4`` of row
    ``16 g + l``'s next entry in that segment, or 0; padding steps (segment 0) are all 0.

    ``slots`` (uint32, zeroed) holds 16 words per block of 4 steps: byte ``t % 4`` of word
    ``16 (t // 4) + l`` is step t's lane l, so one 64-byte load serves 4 steps."""
    nseg = (k + 15) // 16
    seg_steps = np.zeros(nseg, dtype=np.int64)
    first = np.zeros(nseg, dtype=np.int64)  # first step of each segment in the group
    for g in range((m + 15) // 16):
        r0, r1 = g * 16, min(m, g * 16 + 16)
        seg_steps[:] = 0
        _segment_steps(rowptr, cols, r0, r1, seg_steps)
        t = gptr[g]
        for s in range(nseg):
            first[s] = t
            for _ in range(seg_steps[s]):
                segs[t] = s
                t += 1
        for i in range(r0, r1):
            lane = i - r0
            rank = 0
            for e in range(rowptr[i], rowptr[i + 1]):
                s = cols[e] >> 4
                if e > rowptr[i] and cols[e - 1] >> 4 == s:
                    rank += 1
                else:
                    rank = 0
                t = first[s] + rank
                slots[(t >> 2) * 16 + lane] |= np.uint32((cols[e] & 15) | (codes[e] << 4)) << np.uint32(8 * (t & 3))


@njit(cache=True)
def fill_panels(rowptr, cols, codes, m, panel, pptr, packed):
    """Panel-major entries for ``kernels.panel_batch``: for every panel of ``panel`` columns, every
    row's entries there, columns ascending, as ``column within the panel << 4 | code``.

    ``pptr`` (n_panels * m + 1) receives where each (panel, row) pair starts.
    """
    n_pairs = pptr.shape[0] - 1
    counts = np.zeros(n_pairs, dtype=np.int64)
    for i in range(m):
        for e in range(rowptr[i], rowptr[i + 1]):
            counts[cols[e] // panel * m + i] += 1
    pptr[0] = 0
    for q in range(n_pairs):
        pptr[q + 1] = pptr[q] + counts[q]
    for i in range(m):
        for e in range(rowptr[i], rowptr[i + 1]):  # columns ascend: a pair's entries in order
            q = cols[e] // panel * m + i
            c = counts[q]  # reused as the pair's fill position, counting down from its end
            packed[pptr[q + 1] - c] = ((cols[e] % panel) << 4) | codes[e]
            counts[q] = c - 1
