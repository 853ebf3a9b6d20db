"""The batch kernels: the weights cut into column panels, each panel's inputs read from L1.

For a batch, each stored entry ``(row i, column c, code v)`` adds
``codebook[v] * X[:, c]`` to row ``i``'s outputs for all samples: with
``X^T`` row-major, one broadcast multiply-add over a 256-byte row of ``X^T``
(64 samples; four zmm registers). Walking the CSR row by row, every entry
reads a random row of the whole ``X^T``, which lives in L2 or beyond: about
4.5 ns per entry and thread here, slower than MKL's CSR x dense.

Instead the columns are cut into panels (``panel_width``: 128 to 1024
columns) and, per lane chunk of up to 64 samples, each thread walks panel by
panel, and in each panel every row of its block: the entries read only the
panel's rows of ``X^T``, which stay in L1 or close; each (row, panel) pair
loads and stores the row's partial sums once. Each thread transposes each
panel of ``X`` into its own 64-byte aligned buffer. The entries are stored
panel-major (panel ``p``, then rows in order, then columns), as one uint16
each (column within the panel << 4 | code), with one pointer per (panel,
row) pair, so the entry stream is read sequentially.

Measured side by side with the row-by-row kernel it replaces (2 threads,
batch 64): 1.5 to 6x faster (VGG-7 to VGG-6). What carried it besides the
panels: aligned ``X^T`` and ``Y^T`` (unaligned, every zmm load spans two
cache lines: 1.3-1.6x slower), panel-major entries (read in row-major CSR
order they cost a cache miss per pair: 1.2-1.5x slower), private panel
buffers (a shared ``X^T`` written half by each thread cost a cross-core
transfer of the other half), and 16 x 16 register-tile transposes in and out
(``_make_transpose16``; numpy's strided ``x.T`` copy took 230 us for NT-We's
64 x 4096 input). docs/speed.md has the figures.

``panel_block_fixed16`` walks the same panels in int16 arithmetic, bit-exact:
each sample's accumulator is clamped after every add, and a row's terms
arrive in ascending column order (panels in order, columns in order within a
pair). ``vpmaddwd`` gives product and rounding constant in one instruction
(as in the sliced ELL), so it needs AVX512BW (``FIXED16_AVAILABLE``); 3.5-4.4x faster than the
CSR x block kernel (``row_gather.csr_block_fixed16``), which stays for
other hosts.

Numba has no vector types, so the loops are LLVM IR intrinsics (see
``llvm_ir``); for float32, on targets without AVX-512 LLVM splits the
vectors.
"""

import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .aligned import aligned_empty
from .cpu import supports
from .jit import njit
from .llvm_ir import F32, I32, I64, LANES, array_args, broadcast, declare, vec

CHUNK = 64  # samples per pass: four zmm accumulators per row
PAIR_ENTRIES = 32  # panels are as wide as gives a (row, panel) pair about this many entries...
MIN_PANEL, MAX_PANEL = 128, 1024  # ...within these bounds
MAX_PACKED_PANEL = 4096  # a packed entry keeps 12 bits of column

_VF = vec(F32)
_I8P = ir.IntType(8).as_pointer()


#: vpmaddwd on 512 bits, which the fixed16 kernel calls by name (the float32 one is generic LLVM IR)
FIXED16_REQUIRES = ("avx512bw",)
FIXED16_AVAILABLE = supports(*FIXED16_REQUIRES)

def _row_pointer(builder, arr, row):
    """``&arr[row, 0]`` of a C-contiguous 2-D float32 array, as a <16 x float>*."""
    start = builder.gep(builder.bitcast(arr.data, _I8P), [builder.mul(row, builder.extract_value(arr.strides, 0))])
    return builder.bitcast(start, _VF.as_pointer())


def _entry_operands(builder, packed, codebook, xp, e, vtype):
    """Entry ``e``'s weight, broadcast to 16 lanes, and a ``vtype*`` to its row of the panel ``xp``
    (array structs); ``packed[e]`` is ``column within the panel << 4 | code``."""
    v = builder.zext(builder.load(builder.gep(packed.data, [e])), I64)
    weight = broadcast(builder, builder.load(builder.gep(codebook.data, [builder.and_(v, ir.Constant(I64, 15))])))
    offset = builder.mul(builder.lshr(v, ir.Constant(I64, 4)), builder.extract_value(xp.strides, 0))
    return weight, builder.bitcast(builder.gep(builder.bitcast(xp.data, _I8P), [offset]), vtype.as_pointer())


def _make_pair_dot(nv: int):
    """An intrinsic ``f(xp, packed, codebook, e0, e1, yt, row, first)``: for the entries
    ``e0 <= e < e1`` of one (row, panel) pair, with ``xp`` the panel's ``X^T``,
    ``yt[row, :16 nv] = (0 if first else yt[row, :16 nv]) + sum_e codebook[packed[e] & 15] * xp[packed[e] >> 4, :16 nv]``.

    Two entries per step into two sets of ``nv`` accumulators (a fused
    multiply-add's 4-cycle latency would otherwise bound the loop); int64
    scalars; nothing is bounds-checked.
    """

    @intrinsic
    def pair_dot(typingctx, xp, packed, codebook, e0, e1, yt, row, first):
        sig = types.void(xp, packed, codebook, e0, e1, yt, row, first)

        def codegen(context, builder, signature, args):
            xp_a, pk_a, cb_a, yt_a = array_args(context, builder, signature, args, 0, 1, 2, 5)
            start, end, row, first = args[3], args[4], args[6], args[7]
            out = _row_pointer(builder, yt_a, row)
            fma = declare(builder, "llvm.fma.v16f32", _VF, [_VF, _VF, _VF])
            zero = ir.Constant(_VF, [0.0] * LANES)
            is_first = builder.icmp_unsigned("!=", first, ir.Constant(first.type, 0))
            # allocas land in the entry block and become registers
            accs = [cgutils.alloca_once_value(builder, builder.select(
                is_first, zero, builder.load(builder.gep(out, [ir.Constant(I64, q)]), align=64))) for q in range(nv)]
            accs += [cgutils.alloca_once_value(builder, zero) for _ in range(nv)]

            def add_entry(e, acc_set):
                weight, xrow = _entry_operands(builder, pk_a, cb_a, xp_a, e, _VF)
                for q in range(nv):
                    slot = accs[acc_set * nv + q]
                    xv = builder.load(builder.gep(xrow, [ir.Constant(I64, q)]), align=64)
                    builder.store(builder.call(fma, [weight, xv, builder.load(slot)]), slot)

            two = ir.Constant(I64, 2)
            pairs_end = builder.add(start, builder.mul(builder.udiv(builder.sub(end, start), two), two))
            with cgutils.for_range_slice(builder, start, pairs_end, two, intp=I64) as (e, _):
                add_entry(e, 0)
                add_entry(builder.add(e, ir.Constant(I64, 1)), 1)
            with cgutils.for_range_slice(builder, pairs_end, end, ir.Constant(I64, 1), intp=I64) as (e, _):
                add_entry(e, 0)
            for q in range(nv):
                total = builder.fadd(builder.load(accs[q]), builder.load(accs[nv + q]))
                builder.store(total, builder.gep(out, [ir.Constant(I64, q)]), align=64)
            return context.get_dummy_value()

        return sig, codegen

    return pair_dot


_pair_dot_1, _pair_dot_2, _pair_dot_3, _pair_dot_4 = (_make_pair_dot(nv) for nv in (1, 2, 3, 4))


def panel_width(m: int, k: int, nnz: int) -> int:
    """Columns per panel for an (m, k) matrix with ``nnz`` non-zeros, a multiple of 16.

    Measured on the paper layers (2 threads, batch 64): a pair's fixed cost
    (load and store of its row's partial sums, loop exit) wants long pairs,
    a small panel (L1) wants narrow ones. 128 columns were best at 23-25%
    density (Alex-8, VGG-8) and 1.5x slower than 512 at 4% (VGG-6, VGG-7);
    256-600 were level at 9-11%. About 32 entries per pair fits all of them.
    """
    density = nnz / max(1, m * k)
    width = min(MAX_PANEL, max(MIN_PANEL, PAIR_ENTRIES / density if density else MAX_PANEL))
    n_panels = max(1, -(-k // int(width)))
    return max(LANES, -(-k // (n_panels * LANES)) * LANES)  # even panels


def _transpose_masks():
    """Shuffle masks of the four stages of a 16 x 16 transpose: stage ``b`` swaps the off-diagonal
    b x b blocks of every 2b x 2b block (rows ``i`` and ``i + b``, ``i & b == 0``)."""
    stages = []
    for b in (8, 4, 2, 1):
        low = [e if e & b == 0 else LANES + e - b for e in range(LANES)]
        high = [e + b if e & b == 0 else LANES + e for e in range(LANES)]
        stages.append((b, ir.Constant(vec(ir.IntType(32)), low), ir.Constant(vec(ir.IntType(32)), high)))
    return stages


_STAGES = _transpose_masks()


def _make_transpose16(with_bias: bool):
    """An intrinsic ``f(src, r0, c0, dst, d0, e0[, bias, relu])``: ``dst[d0 + j, e0 + i] = src[r0 + i,
    c0 + j]`` for ``i, j < 16`` (16 row loads, 64 two-source shuffles, 16 row stores); ``with_bias``
    adds ``bias[e0 + i]`` and applies ReLU when ``relu``. 2-D C-contiguous float32 arrays, int64
    offsets, no bounds checks."""

    def codegen(context, builder, signature, args):
        src_a, dst_a = array_args(context, builder, signature, args, 0, 3)
        r0_v, c0_v, d0_v, e0_v = args[1], args[2], args[4], args[5]
        f32p = F32.as_pointer()

        def row_at(arr, r, c):
            return builder.bitcast(builder.gep(builder.bitcast(_row_pointer(builder, arr, r), f32p), [c]),
                                   _VF.as_pointer())

        rows = [builder.load(row_at(src_a, builder.add(r0_v, ir.Constant(I64, i)), c0_v), align=4)
                for i in range(LANES)]
        for b, low, high in _STAGES:
            for i in range(LANES):
                if i & b == 0:
                    a, c = rows[i], rows[i + b]
                    rows[i], rows[i + b] = builder.shuffle_vector(a, c, low), builder.shuffle_vector(a, c, high)
        if with_bias:
            bias_a, = array_args(context, builder, signature, args, 6)
            bias_v = builder.load(builder.bitcast(builder.gep(bias_a.data, [e0_v]), _VF.as_pointer()), align=4)
            zero = ir.Constant(_VF, [0.0] * LANES)
            relu = builder.icmp_unsigned("!=", args[7], ir.Constant(args[7].type, 0))
            for j in range(LANES):
                y = builder.fadd(rows[j], bias_v)
                rows[j] = builder.select(relu, builder.select(builder.fcmp_ordered("<", y, zero), zero, y), y)
        for j in range(LANES):
            builder.store(rows[j], row_at(dst_a, builder.add(d0_v, ir.Constant(I64, j)), e0_v), align=4)
        return context.get_dummy_value()

    if with_bias:
        @intrinsic
        def transpose16_bias(typingctx, src, r0, c0, dst, d0, e0, bias, relu):
            return types.void(src, r0, c0, dst, d0, e0, bias, relu), codegen

        return transpose16_bias

    @intrinsic
    def transpose16(typingctx, src, r0, c0, dst, d0, e0):
        return types.void(src, r0, c0, dst, d0, e0), codegen

    return transpose16


_transpose16 = _make_transpose16(False)
_transpose16_bias = _make_transpose16(True)


@njit(cache=True)
def _aligned_f32(rows, cols):
    """An uninitialised (rows, cols) float32 array whose rows start on 64-byte boundaries (cols % 16 == 0)."""
    return aligned_empty(rows * cols, np.float32).reshape((rows, cols))


@njit(cache=True)
def _transpose_panel(x, s0, c0, xp):
    """``xp[c, l] = x[s0 + l, c0 + c]`` for the panel's columns and the chunk's samples; lanes past
    the batch's end are zero."""
    nb, k = x.shape
    width = xp.shape[1]
    ncols = min(xp.shape[0], k - c0)
    n = min(width, nb - s0)
    full_lanes = n // LANES * LANES
    full_cols = ncols // LANES * LANES
    for c in range(0, full_cols, LANES):
        for lane in range(0, full_lanes, LANES):
            _transpose16(x, np.int64(s0 + lane), np.int64(c0 + c), xp, np.int64(c), np.int64(lane))
    for c in range(ncols):
        for lane in range(full_lanes if c < full_cols else 0, n):
            xp[c, lane] = x[s0 + lane, c0 + c]
        for lane in range(n, width):
            xp[c, lane] = np.float32(0.0)


@njit(cache=True, parallel=True)
def panel_block_f32(pptr, packed, codebook, bounds, panel, x, bias, relu, s0, width, yt, out):
    """``out[s0 : s0 + n, :] = act(X W^T + bias)`` for one chunk of ``width`` (16, 32, 48 or 64)
    lanes: samples ``s0 <= s < s0 + n``, the rest zero padding; ``yt`` an aligned (M, width) scratch.

    ``pptr[p M + i] : pptr[p M + i + 1]`` are row ``i``'s entries in panel ``p`` (panel-major);
    ``bounds`` row blocks, one per thread, at multiples of 16 rows (the last may end at M). Every
    thread transposes each panel of ``X`` into its own buffer: one shared ``X^T`` written by both
    threads cost each a cross-core transfer of the other's half (NT-We: 90 us of 370).
    """
    m = yt.shape[0]
    k = x.shape[1]
    nv = width // LANES
    n = min(width, out.shape[0] - s0)
    n_panels = (k + panel - 1) // panel
    for b in prange(bounds.shape[0] - 1):
        r0 = bounds[b]
        r1 = bounds[b + 1]
        xt = _aligned_f32(panel, width)
        for p in range(n_panels):
            _transpose_panel(x, s0, p * panel, xt)
            first = p == 0
            for i in range(r0, r1):
                e0 = np.int64(pptr[p * m + i])
                e1 = np.int64(pptr[p * m + i + 1])
                if nv == 4:
                    _pair_dot_4(xt, packed, codebook, e0, e1, yt, np.int64(i), first)
                elif nv == 3:
                    _pair_dot_3(xt, packed, codebook, e0, e1, yt, np.int64(i), first)
                elif nv == 2:
                    _pair_dot_2(xt, packed, codebook, e0, e1, yt, np.int64(i), first)
                else:
                    _pair_dot_1(xt, packed, codebook, e0, e1, yt, np.int64(i), first)
        if n_panels == 0:  # K = 0: only the bias
            yt[r0:r1, :] = 0.0
        # act(Y^T + bias) -> Y by 16 x 16 tiles, 16 output rows at a time (16 write streams: with
        # the two loops the other way round, 64 streams ran up to 2x slower); partial tiles one by one
        full_rows = r0 + (r1 - r0) // LANES * LANES
        full_lanes = n // LANES * LANES
        for l0 in range(0, full_lanes, LANES):
            for i0 in range(r0, full_rows, LANES):
                _transpose16_bias(yt, np.int64(i0), np.int64(l0), out, np.int64(s0 + l0), np.int64(i0), bias, relu)
        for lane in range(n):
            for i in range(full_rows if lane < full_lanes else r0, r1):
                y = yt[i, lane] + bias[i]
                out[s0 + lane, i] = np.float32(0.0) if relu and y < 0 else y


def panel_batch_f32(pptr, packed, codebook, bounds, panel, x, bias, relu, out):
    """``out`` (B, M) = act(X W^T + bias) for ``x`` (B, K) float32 C-contiguous, in chunks of 64 samples."""
    nb = x.shape[0]
    m = out.shape[1]
    for s0 in range(0, nb, CHUNK):
        width = min(CHUNK, -(-(nb - s0) // LANES) * LANES)
        panel_block_f32(pptr, packed, codebook, bounds, panel, x, bias, relu, s0, width, _aligned_f32(m, width), out)



def _make_pair_dot_fixed16(nv: int, word_add: bool):
    """An intrinsic ``f(xp, packed, codebook_w, e0, e1, acc, row, shift)``: for the entries of one
    (row, panel) pair, in order, ``acc[row, l] = clamp16(acc[row, l] + ((a w + half) >> shift))`` for
    the ``16 nv`` lanes ``l``, ``a`` from ``xp[packed[e] >> 4, l]`` and ``w`` from
    ``codebook_w[packed[e] & 15]``: int32 words whose low int16 is the value and whose high int16s
    multiply to ``half``, so that one ``vpmaddwd`` gives ``a w + half`` (as in the sliced ELL).

    With ``word_add`` (every term known to fit int16) the add and clamp are one ``vpaddsw`` on the
    low int16s, and the high halves of ``acc`` hold nothing meaningful. Nothing is bounds-checked.
    """

    @intrinsic
    def pair_dot_fixed16(typingctx, xp, packed, codebook_w, e0, e1, acc, row, shift):
        sig = types.void(xp, packed, codebook_w, e0, e1, acc, row, shift)

        def codegen(context, builder, signature, args):
            xp_a, pk_a, cb_a, acc_a = array_args(context, builder, signature, args, 0, 1, 2, 5)
            start, end, row = args[3], args[4], args[6]
            vi, vw = vec(I32), vec(ir.IntType(16), 2 * LANES)
            madd = declare(builder, "llvm.x86.avx512.pmaddw.d.512", vi, [vw, vw])
            smin = declare(builder, "llvm.smin.v16i32", vi, [vi, vi])
            smax = declare(builder, "llvm.smax.v16i32", vi, [vi, vi])
            add_sat = declare(builder, "llvm.sadd.sat.v32i16", vw, [vw, vw])
            lo, hi = ir.Constant(vi, [-32768] * LANES), ir.Constant(vi, [32767] * LANES)
            shift_v = broadcast(builder, args[7])
            out = builder.bitcast(_row_pointer(builder, acc_a, row), vi.as_pointer())
            accs = [cgutils.alloca_once_value(builder, builder.load(builder.gep(out, [ir.Constant(I64, q)]), align=64))
                    for q in range(nv)]
            with cgutils.for_range_slice(builder, start, end, ir.Constant(I64, 1), intp=I64) as (e, _):
                w, xrow = _entry_operands(builder, pk_a, cb_a, xp_a, e, vi)
                w = builder.bitcast(w, vw)
                for q in range(nv):
                    a = builder.load(builder.gep(xrow, [ir.Constant(I64, q)]), align=64)
                    term = builder.ashr(builder.call(madd, [builder.bitcast(a, vw), w]), shift_v)
                    if word_add:
                        summed = builder.call(add_sat, [builder.bitcast(builder.load(accs[q]), vw),
                                                        builder.bitcast(term, vw)])
                        builder.store(builder.bitcast(summed, vi), accs[q])
                    else:
                        summed = builder.add(builder.load(accs[q]), term)
                        builder.store(builder.call(smin, [builder.call(smax, [summed, lo]), hi]), accs[q])
            for q in range(nv):
                builder.store(builder.load(accs[q]), builder.gep(out, [ir.Constant(I64, q)]), align=64)
            return context.get_dummy_value()

        return sig, codegen

    return pair_dot_fixed16


_pq1, _pq2, _pq3, _pq4 = (_make_pair_dot_fixed16(nv, word_add=False) for nv in (1, 2, 3, 4))
_pw1, _pw2, _pw3, _pw4 = (_make_pair_dot_fixed16(nv, word_add=True) for nv in (1, 2, 3, 4))


@njit(cache=True)
def _fixed16_words(x_q, s0, n, x_hi):
    """The chunk's int16 samples as int32 words ``x | x_hi << 16``, (n, K) C-contiguous."""
    k = x_q.shape[1]
    hi = np.int32(x_hi) << 16
    out = np.empty((n, k), dtype=np.int32)
    for s in range(n):
        for j in range(k):
            out[s, j] = (np.int32(x_q[s0 + s, j]) & 0xFFFF) | hi
    return out


@njit(cache=True, parallel=True)
def panel_block_fixed16(pptr, packed, codebook_w, bounds, panel, x_q, bias_q, shift, x_hi, terms_fit16, relu, s0,
                        width, out):
    """int16 ``out[s0 : s0 + n, :] = act(W x + b)`` for one chunk of ``width`` lanes, bit-exact:
    each sample keeps its own accumulator, clamped to int16 after every add, and receives its row's
    terms in ascending column order (panels in order, columns in order within a pair): the
    hardware's order. ``shift <= 29``; ``codebook_w`` and ``x_hi`` as for ``_make_pair_dot_fixed16``;
    ``terms_fit16`` when the caller proved every rounded product fits int16.
    """
    m = out.shape[1]
    k = x_q.shape[1]
    n = min(width, x_q.shape[0] - s0)
    nv = width // LANES
    n_panels = (k + panel - 1) // panel
    sh = np.int32(shift)
    xw = _fixed16_words(x_q, s0, n, x_hi).view(np.float32)  # 4-byte words: the float tile transpose moves them
    for b in prange(bounds.shape[0] - 1):
        r0 = bounds[b]
        r1 = bounds[b + 1]
        xf = _aligned_f32(panel, width)
        xp = xf.view(np.int32)
        acc = aligned_empty((r1 - r0) * width, np.int32).reshape((r1 - r0, width))
        for i in range(r0, r1):
            acc[i - r0, :] = np.int32(bias_q[i])
        for p in range(n_panels):
            _transpose_panel(xw, 0, p * panel, xf)
            for i in range(r0, r1):
                e0 = np.int64(pptr[p * m + i])
                e1 = np.int64(pptr[p * m + i + 1])
                row = np.int64(i - r0)
                if terms_fit16:
                    if nv == 4:
                        _pw4(xp, packed, codebook_w, e0, e1, acc, row, sh)
                    elif nv == 3:
                        _pw3(xp, packed, codebook_w, e0, e1, acc, row, sh)
                    elif nv == 2:
                        _pw2(xp, packed, codebook_w, e0, e1, acc, row, sh)
                    else:
                        _pw1(xp, packed, codebook_w, e0, e1, acc, row, sh)
                elif nv == 4:
                    _pq4(xp, packed, codebook_w, e0, e1, acc, row, sh)
                elif nv == 3:
                    _pq3(xp, packed, codebook_w, e0, e1, acc, row, sh)
                elif nv == 2:
                    _pq2(xp, packed, codebook_w, e0, e1, acc, row, sh)
                else:
                    _pq1(xp, packed, codebook_w, e0, e1, acc, row, sh)
        for lane in range(n):
            for i in range(r0, r1):
                y = np.int16(acc[i - r0, lane])  # the low int16 (all of it without terms_fit16)
                out[s0 + lane, i] = 0 if relu and y < 0 else y


def panel_batch_fixed16(pptr, packed, codebook_w, bounds, panel, x_q, bias_q, shift, x_hi, terms_fit16, relu, out):
    """int16 ``out`` (B, M) for int16 ``x_q`` (B, K), bit-exact, in chunks of 64 samples; ``shift <= 29``."""
    nb = x_q.shape[0]
    for s0 in range(0, nb, CHUNK):
        width = min(CHUNK, -(-(nb - s0) // LANES) * LANES)
        panel_block_fixed16(pptr, packed, codebook_w, bounds, panel, x_q, bias_q, shift, x_hi, terms_fit16, relu,
                            s0, width, out)
