"""EIE's column scatter (sparse activations): float32 and bit-exact fixed16, side by side.

The layout is the blocked CSC of ``layout_build.fill_blocked_csc``: rows cut
into contiguous blocks (balanced by non-zeros, aligned to 16 rows, at most
4096 rows), per block column pointers and one uint16 per entry packing the
block-local row and the 4-bit codebook index. Shaped this way (measured on
the project's 2-core benchmark machine):

- loop indices over entries are unsigned (``np.uint64``): Numba wraps
  negative indices, and with signed indices every array access carries a
  select that also stops LLVM from vectorising;
- one parallel task per row block, so threads never share an output cache
  line; each walks only the columns of the input's non-zeros
  (``input_scan.nonzero_columns``, in every thread);
- ``scatter_f32`` gives each row its terms in ascending column order, like
  the per-PE walk of the stored format, so its results are bit-identical to
  it; ``scatter_by_code_f32`` (small row blocks) sums per codebook entry first.

``scatter_fixed16`` adds a row's terms in ascending column order, saturating
after every add (the hardware's order, bit for bit). It skips the clamps
(``saturate=False``) only after the caller proved with ``safe_amax`` that no
partial sum of any row can leave int16 for this input; then the plain sum is
the same number. It rounds its 16-entry product table in int64 (any
``shift < 63``), in int32 where ``shift <= 30`` keeps ``|p| + 2**(shift-1)``
below 2**31.
"""

import numpy as np
from numba import prange

from .input_scan import nonzero_columns
from .jit import njit
from .vector_scatter import saturating_column_add



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


@njit(cache=True, parallel=True)
def scatter_fixed16(colptr, packed, codebook_q, bounds, x_q, bias_q, shift, relu, saturate, out, vector=True):
    """int16 out = act(W x + b) from the non-zeros of the int16 ``x_q``, column scatter.

    With ``saturate``, the result is that of a clamp after every add, in
    each row's column order. ``vector``: 16 entries at a time by a vector
    gather, add, clamp and scatter. Else one at a time: first without clamps,
    on sums offset by 2**15, each thread OR-ing them into a flag whose bits
    above 15 are set once any partial sum of its block left int16 (one OR
    per entry, cheaper than two compares and selects), and only a block
    whose flag is set is walked again with a clamp on every add; until a sum leaves int16 the clamps do
    nothing, so both give the same bits. Which of the two is faster depends
    on the CPU's scatter instruction (``kernel_costs``:
    ``scatter_fixed16_ns_per_entry`` and ``scatter_fixed16_scalar_ns_per_entry``,
    measured on the host).
    """
    nblk = colptr.shape[0]
    ncb = codebook_q.shape[0]
    half = (np.int64(1) << (shift - 1)) if shift > 0 else np.int64(0)
    narrow = shift <= 30
    half32 = np.int32(half) if narrow else np.int32(0)
    sh32 = np.int32(shift) if narrow else np.int32(0)
    four = np.uint16(4)
    mask = np.uint16(15)
    checked = saturate and not vector
    for b in prange(nblk):
        r0 = bounds[b]
        r1 = bounds[b + 1]
        acc = np.empty(r1 - r0, dtype=np.int32)
        tab = np.zeros(16, dtype=np.int32)  # 16 entries whatever the codebook size: the vector path reads any code
        idx, n = nonzero_columns(x_q)  # in each thread: see input_scan
        for attempt in range(2 if checked else 1):
            # the unclamped checked pass keeps every sum offset by 2**15: it fits int16 while the offset sum
            # lies in 0..65535, so OR-ing the offset sums shows any that did not in the bits above 15
            offset = np.int32(32768) if checked and attempt == 0 else np.int32(0)
            for r in range(r1 - r0):
                acc[r] = bias_q[r0 + r] + offset
            over = np.int32(0)
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
                if saturate and vector:
                    saturating_column_add(acc, packed, tab, e0, e1)
                elif checked and attempt == 0:
                    # |term| < 2**30 and the flag rises at the first sum outside int16: no int32 wrap goes unseen
                    for e in range(e0, e1):
                        p = packed[e]
                        row = p >> four
                        y = np.int32(acc[row] + tab[p & mask])
                        acc[row] = y
                        over |= y
                elif checked:
                    for e in range(e0, e1):
                        p = packed[e]
                        row = p >> four
                        y = acc[row] + tab[p & mask]
                        acc[row] = min(max(y, np.int32(-32768)), np.int32(32767))
                else:
                    for e in range(e0, e1):
                        p = packed[e]
                        acc[p >> four] += tab[p & mask]
            if over >> np.int32(16) == 0:  # (always, unless checked: no offset, over stays 0)
                break
        for r in range(r1 - r0):
            y = acc[r] - offset
            if relu and y < 0:
                y = 0
            out[r0 + r] = y


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
