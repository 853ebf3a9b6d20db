"""Encoding, decoding and validation of EIE's interleaved CSC (Section III-B/C).

Row ``i`` of an ``(M, K)`` matrix lives on PE ``i % n_pe`` at local row
``i // n_pe``. Each entry is one byte: low nibble ``v`` (codebook index),
high nibble ``z`` (zeros since the previous entry of the column, in this PE's
slice). A gap of more than 15 zeros is bridged by padding entries
``(v=0, z=15)``, each of which stands for 16 positions.

All three passes walk the code matrix row by row (it is row-major), one PE per
parallel task, so a 4096 x 25088 layer encodes in well under a second.
"""

import numpy as np
from numba import prange

from .jit import njit

MAX_RUN = 15  # largest zero run one 4-bit z can hold


@njit(cache=True, inline="always")
def next_entry(local, b):
    """The walk of a PE's slice of a column: entry byte ``b`` after local row ``local`` (start at
    -1) lies at local row ``local + z + 1``; returns that row and the codebook index ``v`` (0:
    padding). Every reader of the stored entries walks them with this."""
    return local + (b >> 4) + 1, b & 0xF


@njit(cache=True, parallel=True)
def count_entries(codes, n_pe):
    """Entries (padding included) of every PE's slice of every column: (n_pe, K)."""
    m, k = codes.shape
    counts = np.zeros((n_pe, k), dtype=np.int64)
    for pe in prange(n_pe):
        last = np.full(k, -1, dtype=np.int64)  # local row of the previous entry, per column
        local = 0
        for row in range(pe, m, n_pe):
            for j in range(k):
                if codes[row, j] != 0:
                    gap = local - last[j] - 1
                    counts[pe, j] += gap // (MAX_RUN + 1) + 1
                    last[j] = local
            local += 1
    return counts


@njit(cache=True, parallel=True)
def fill_entries(codes, n_pe, ptr, entries):
    """Write every PE's entries at the offsets ``ptr`` gives (from ``count_entries``)."""
    m, k = codes.shape
    for pe in prange(n_pe):
        last = np.full(k, -1, dtype=np.int64)
        cursor = ptr[pe, :k].copy()
        local = 0
        for row in range(pe, m, n_pe):
            for j in range(k):
                c = codes[row, j]
                if c != 0:
                    gap = local - last[j] - 1
                    pos = cursor[j]
                    while gap > MAX_RUN:
                        entries[pos] = MAX_RUN << 4  # padding: v = 0, z = 15
                        pos += 1
                        gap -= MAX_RUN + 1
                    entries[pos] = (gap << 4) | c
                    cursor[j] = pos + 1
                    last[j] = local
            local += 1


@njit(cache=True, parallel=True)
def decode_codes(entries, ptr, m, n_pe, out):
    """Inverse of the encoding: fill ``out`` (M, K) uint8 with codebook indices."""
    k = ptr.shape[1] - 1
    for pe in prange(n_pe):
        for j in range(k):
            local = -1
            for e in range(ptr[pe, j], ptr[pe, j + 1]):
                local, v = next_entry(local, entries[e])
                if v != 0:
                    out[local * n_pe + pe, j] = v


@njit(cache=True)
def find_entry_error(entries, ptr, m, n_pe, n_codes):
    """First broken invariant of the entry stream, or all -1 when there is none.

    Returns ``(kind, pe, column, entry)``: kind 1 = codebook index beyond the
    codebook, 2 = an entry's row runs past the PE's slice, 3 = a zero-valued
    entry that is not canonical padding (z must be 15).
    """
    k = ptr.shape[1] - 1
    for pe in range(n_pe):
        rows_here = (m - pe + n_pe - 1) // n_pe if pe < m else 0
        for j in range(k):
            local = -1
            for e in range(ptr[pe, j], ptr[pe, j + 1]):
                b = entries[e]
                local, v = next_entry(local, b)
                if v >= n_codes:
                    return 1, pe, j, e
                if v == 0 and b >> 4 != MAX_RUN:
                    return 3, pe, j, e
                if local >= rows_here:
                    return 2, pe, j, e
    return -1, -1, -1, -1
