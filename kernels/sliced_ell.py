"""Single vectors with many non-zeros: a sliced ELL whose input segment sits in a register.

A row gather over a CSR (``row_gather.gather_f32``) costs one hardware gather
per 16 entries, and gathers are what bound it (about 0.21 ns per entry and
thread here). This layout avoids them:

- rows in groups of 16 (one vector lane per row), columns in segments of 16;
- for each (group, segment), ``n`` *steps*, ``n`` the largest number of
  entries any of the 16 rows has in that segment; a step has one byte per
  lane, lane ``l`` holding ``column % 16 | code << 4`` of one of row ``l``'s
  entries there, or 0 (code 0 has weight 0) where that row has no more;
- a step permutes the segment's 16 activations by the column nibbles and the
  codebook by the code nibbles (``vpermps``, one instruction each, no
  gather), and adds their product to the group's 16 accumulators.

Steps come in blocks of 4 (``STEP_UNROLL``): ``slots`` holds one uint32 per
lane and block, byte ``u`` for step ``u``, so one 64-byte load serves four
steps and two shifts per step extract its nibbles. That leaves the shuffle
port to the two permutes; widening each step's 16 bytes to dwords
(``vpmovzxbd``) took a third shuffle and ran 12-15% slower.

About 40% of the slots hold entries on the paper's layers (28-55%), so a
step holds 4-9 entries and costs about 0.87 ns per thread: 1.4-1.8x faster
than the gather on the NeuralTalk layers, and faster than EIE's column
scatter once about a third of the activations are non-zero (it does not skip
zeros, but it never scatters). ``sliced_ell_fixed16`` walks the same steps
with int16 arithmetic, bit-exact (see its docstring). ``sliced_ell_multi_f32``
walks them for 8 (or 4) vectors at once, for small batches: one step's
nibbles and codebook permute serve all of them. The per-call choice is made
in ``eie_runtime.execution``.

The permute is an AVX-512 instruction with no generic LLVM equivalent, so
the kernel exists only where Numba compiles for a CPU with the features in
``REQUIRES`` (``AVAILABLE``). Padding slots multiply ``x[16 s]`` by a zero weight, so
``sliced_ell_f32`` declines a float32 input with NaN or Inf (it returns
without running, and the caller takes the gather or the scatter).
"""

import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .aligned import aligned_empty
from .cpu import supports
from .jit import njit
from .llvm_ir import F32, I16, I32, I64, LANES, array_args, broadcast, declare, vec

STEP_UNROLL = 4  # steps per block (one uint32 per lane) and loop iteration; groups pad to a multiple
_I8 = ir.IntType(8)
_VF = vec(F32)


#: vpermps/vpermd on 512 bits (AVX512F); vpshufb and vpmaddwd on 512 bits (AVX512BW)
REQUIRES = ("avx512f", "avx512bw")
AVAILABLE = supports(*REQUIRES)


def _block_words(builder, slots_a, t):
    """The 16 uint32 words of the 4-step block that starts at step ``t`` (a multiple of 4). The layout
    allocates ``slots`` 64-byte aligned (one line per block), but the load does not rely on it: an
    aligned-only load would fault on a caller's own unaligned array."""
    ptr = builder.gep(slots_a.data, [builder.mul(t, ir.Constant(I64, LANES // STEP_UNROLL))])
    return builder.load(builder.bitcast(ptr, vec(I32).as_pointer()), align=4)


def _nibbles(builder, words, u, shuffle_cols=False):
    """Step ``u`` (0-3) of a block: its column and code permute indices, the low and high nibbles of
    byte ``u`` of each lane's word. ``vpermps``/``vpermd`` read only the low 4 bits of an index, so
    shifts alone extract them (a shift runs beside the permutes; widening bytes would compete).
    ``shuffle_cols`` moves byte ``u`` down with ``vpshufb`` instead, for kernels whose own arithmetic
    keeps the shift unit busy (fixed16: 7-8% faster)."""
    if u == 0:
        col = words
    elif shuffle_cols:
        i8x64 = vec(_I8, 4 * LANES)
        pshufb = declare(builder, "llvm.x86.avx512.pshuf.b.512", i8x64, [i8x64, i8x64])
        move = ir.Constant(i8x64, [j + u if j % 4 == 0 else 0x80 for j in range(4 * LANES)])  # 0x80: zero
        col = builder.bitcast(builder.call(pshufb, [builder.bitcast(words, i8x64), move]), vec(I32))
    else:
        col = builder.lshr(words, ir.Constant(vec(I32), [8 * u] * LANES))
    return col, builder.lshr(words, ir.Constant(vec(I32), [8 * u + 4] * LANES))


def _segment(builder, segs_a, xp_a, t, vtype):
    """A pointer to the 16 values of ``xp`` (as ``vtype``) in step ``t``'s column segment."""
    seg = builder.zext(builder.load(builder.gep(segs_a.data, [t])), I64)
    return builder.bitcast(builder.gep(xp_a.data, [builder.mul(seg, ir.Constant(I64, LANES))]), vtype.as_pointer())


def _block_operands(builder, slots_a, segs_a, xp_a, t, vtype, shuffle_cols=False):
    """For the steps ``t .. t+3`` of one block: (segment values as ``vtype``, column indices, code indices)."""
    words = _block_words(builder, slots_a, t)
    return [(builder.load(_segment(builder, segs_a, xp_a, builder.add(t, ir.Constant(I64, u)), vtype), align=64),)
            + _nibbles(builder, words, u, shuffle_cols) for u in range(STEP_UNROLL)]


@intrinsic
def _group_dot(typingctx, slots, segs, xp, codebook16, t0, t1, res):
    """``res[0:16] = sum over steps t0 <= t < t1`` of ``xp[16 segs[t] + col] * codebook16[code]``
    lane by lane (``col, code`` the nibbles of ``slots[16 t + lane]``); ``t1 - t0`` a multiple of
    ``STEP_UNROLL``; nothing is bounds-checked."""
    sig = types.void(slots, segs, xp, codebook16, t0, t1, res)

    def codegen(context, builder, signature, args):
        slots_a, segs_a, xp_a, cb_a, res_a = array_args(context, builder, signature, args, 0, 1, 2, 3, 6)
        permute = declare(builder, "llvm.x86.avx512.permvar.sf.512", _VF, [_VF, vec(I32)])
        fma = declare(builder, "llvm.fma.v16f32", _VF, [_VF, _VF, _VF])
        cbv = builder.load(builder.bitcast(cb_a.data, _VF.as_pointer()), align=4)
        accs = [cgutils.alloca_once_value(builder, ir.Constant(_VF, [0.0] * LANES)) for _ in range(STEP_UNROLL)]
        with cgutils.for_range_slice(builder, args[4], args[5], ir.Constant(I64, STEP_UNROLL), intp=I64) as (t, _):
            for u, (xv, col, code) in enumerate(_block_operands(builder, slots_a, segs_a, xp_a, t, _VF)):
                a = builder.call(permute, [xv, col])
                w = builder.call(permute, [cbv, code])
                builder.store(builder.call(fma, [a, w, builder.load(accs[u])]), accs[u])
        total = builder.load(accs[0])
        for acc in accs[1:]:
            total = builder.fadd(total, builder.load(acc))
        builder.store(total, builder.bitcast(res_a.data, _VF.as_pointer()), align=4)
        return context.get_dummy_value()

    return sig, codegen


def _make_group_dot_multi(ns: int):
    """An intrinsic ``f(slots, segs, xp, codebook16, t0, t1, res)``: ``_group_dot`` for ``ns`` vectors
    at once, ``xp`` (ns, segments x 16) and ``res`` (ns, 16). A step's slot widening and codebook
    permute serve all of them; each vector adds its own permute and FMA."""
    sets = max(1, 8 // ns)  # at least 8 independent FMA chains (4-cycle latency, 2 pipes)

    @intrinsic
    def group_dot_multi(typingctx, slots, segs, xp, codebook16, t0, t1, res):
        sig = types.void(slots, segs, xp, codebook16, t0, t1, res)

        def codegen(context, builder, signature, args):
            slots_a, segs_a, xp_a, cb_a, res_a = array_args(context, builder, signature, args, 0, 1, 2, 3, 6)
            permute = declare(builder, "llvm.x86.avx512.permvar.sf.512", _VF, [_VF, vec(I32)])
            fma = declare(builder, "llvm.fma.v16f32", _VF, [_VF, _VF, _VF])
            cbv = builder.load(builder.bitcast(cb_a.data, _VF.as_pointer()), align=4)
            xp_row = builder.extract_value(xp_a.strides, 0)  # bytes between the vectors' copies
            i8p = _I8.as_pointer()
            zero = ir.Constant(_VF, [0.0] * LANES)
            accs = [[cgutils.alloca_once_value(builder, zero) for _ in range(ns)] for _ in range(sets)]
            with cgutils.for_range_slice(builder, args[4], args[5], ir.Constant(I64, STEP_UNROLL), intp=I64) as (t, _):
                words = _block_words(builder, slots_a, t)
                for u in range(STEP_UNROLL):
                    col, code = _nibbles(builder, words, u)
                    w = builder.call(permute, [cbv, code])
                    seg_ptr = builder.bitcast(_segment(builder, segs_a, xp_a, builder.add(t, ir.Constant(I64, u)), _VF),
                                              i8p)
                    for v in range(ns):
                        xv = builder.load(builder.bitcast(builder.gep(seg_ptr, [builder.mul(ir.Constant(I64, v), xp_row)]),
                                                          _VF.as_pointer()), align=64)
                        acc = accs[u % sets][v]
                        builder.store(builder.call(fma, [builder.call(permute, [xv, col]), w, builder.load(acc)]), acc)
            out = builder.bitcast(res_a.data, _VF.as_pointer())
            for v in range(ns):
                total = builder.load(accs[0][v])
                for j in range(1, sets):
                    total = builder.fadd(total, builder.load(accs[j][v]))
                builder.store(total, builder.gep(out, [ir.Constant(I64, v)]), align=4)
            return context.get_dummy_value()

        return sig, codegen

    return group_dot_multi


MULTI_WIDTHS = (8, 4)  # vectors per pass of sliced_ell_multi_f32
_group_dot_8, _group_dot_4 = (_make_group_dot_multi(ns) for ns in MULTI_WIDTHS)


@njit(cache=True, parallel=True)
def sliced_ell_multi_f32(gptr, slots, segs, codebook16, bounds, x, s0, ns, bias, relu, out):
    """``out[s0 + v] = act(W x[s0 + v] + bias)`` for ``v < ns`` (8 or 4; vectors past the batch's end
    are zeros, their results dropped): the steps walked once for all of them."""
    m = out.shape[1]
    nb, k = x.shape
    n = min(ns, nb - s0)
    width = (k + LANES - 1) // LANES * LANES
    for b in prange(bounds.shape[0] - 1):
        xp = aligned_empty(ns * width, np.float32).reshape((ns, width))  # each thread its own copy
        xp[:, k:] = 0.0
        xp[n:, :] = 0.0
        xp[:n, :k] = x[s0:s0 + n]
        res = np.empty((ns, LANES), dtype=np.float32)
        for g in range(bounds[b] // LANES, (bounds[b + 1] + LANES - 1) // LANES):
            if ns == 8:
                _group_dot_8(slots, segs, xp, codebook16, np.int64(gptr[g]), np.int64(gptr[g + 1]), res)
            else:
                _group_dot_4(slots, segs, xp, codebook16, np.int64(gptr[g]), np.int64(gptr[g + 1]), res)
            r0 = g * LANES
            for v in range(n):
                for lane in range(min(LANES, m - r0)):
                    y = res[v, lane] + bias[r0 + lane]
                    if relu and y < 0:
                        y = np.float32(0.0)
                    out[s0 + v, r0 + lane] = y


def sliced_ell_batch_f32(gptr, slots, segs, codebook16, bounds, x, bias, relu, out):
    """``out`` (B, M) = act(X W^T + bias) for a finite float32 ``x`` (B, K), 8 vectors per pass (4
    for a remainder of at most 4)."""
    nb = x.shape[0]
    s0 = 0
    while s0 < nb:
        ns = MULTI_WIDTHS[0] if nb - s0 > MULTI_WIDTHS[1] else MULTI_WIDTHS[1]
        sliced_ell_multi_f32(gptr, slots, segs, codebook16, bounds, x, s0, ns, bias, relu, out)
        s0 += ns


@njit(cache=True)
def _copy_counting(x, xp):
    """``xp[:k] = x``, zeros after; returns x's non-zero count (NaN counts), or ``-1 - count`` when x
    holds NaN or Inf. One pass over the bit patterns, vectorised (unsigned index, no branch)."""
    k = x.shape[0]
    bits = x.view(np.uint32)
    xb = xp.view(np.uint32)
    n = 0
    bad = 0
    for j in range(np.uint64(k)):
        v = bits[j]
        xb[j] = v
        n += (v & np.uint32(0x7FFFFFFF)) != 0  # -0.0 is zero
        bad += (v & np.uint32(0x7F800000)) == np.uint32(0x7F800000)  # exponent all ones: Inf or NaN
    xp[k:] = 0.0
    return n if bad == 0 else -1 - n


@njit(cache=True, parallel=True)
def sliced_ell_f32(gptr, slots, segs, codebook16, bounds, x, bias, relu, out, min_nonzero):
    """out = act(W x + bias), if ``x`` is finite with at least ``min_nonzero`` (>= 0) non-zeros; else
    ``out`` is left as it was. Returns x's non-zero count, or ``-1 - count`` if it holds NaN or Inf:
    the kernel ran exactly when the result is ``>= min_nonzero``.

    Each thread counts while it copies ``x`` into its aligned buffer, so the caller needs no
    separate pass to choose between this kernel and the scatter (4-7% of a call on the paper
    layers). ``bounds``: row blocks at multiples of 16 rows (the last may end at M).
    """
    m = out.shape[0]
    k = x.shape[0]
    nseg = (k + LANES - 1) // LANES
    nblk = bounds.shape[0] - 1
    if nblk == 0:
        return _copy_counting(x, np.empty(nseg * LANES, dtype=np.float32))
    found = np.empty(nblk, dtype=np.int64)  # every block counts the same
    for b in prange(nblk):
        xp = aligned_empty(nseg * LANES, np.float32)  # each thread its own copy, whole segments
        found[b] = _copy_counting(x, xp)
        if found[b] < min_nonzero:  # too few non-zeros, or NaN/Inf (which padding would spread)
            continue
        res = np.empty(LANES, dtype=np.float32)
        for g in range(bounds[b] // LANES, (bounds[b + 1] + LANES - 1) // LANES):
            _group_dot(slots, segs, xp, codebook16, np.int64(gptr[g]), np.int64(gptr[g + 1]), res)
            r0 = g * LANES
            for lane in range(min(LANES, m - r0)):
                y = res[lane] + bias[r0 + lane]
                if relu and y < 0:
                    y = np.float32(0.0)
                out[r0 + lane] = y
    return found[0]


def _make_group_dot_fixed16(word_add: bool):
    """An intrinsic ``f(slots, segs, xp, codebook16, shift, t0, t1, acc)``: per lane over steps
    ``t0 <= t < t1``, ``acc = clamp(acc + ((a w + half) >> shift), int16)``, ``a`` the lane's activation
    and ``w`` its weight, each the low int16 of an int32 of ``xp`` / ``codebook16`` whose high int16s
    multiply to ``half`` (``vpmaddwd``: one instruction for the product and the rounding constant).

    With ``word_add`` (every term known to fit int16), the add and clamp are one saturating add of
    the low int16s (``vpaddsw``); the high halves of ``acc`` then hold nothing meaningful.
    Nothing is bounds-checked.
    """

    @intrinsic
    def group_dot(typingctx, slots, segs, xp, codebook16, shift, t0, t1, acc):
        sig = types.void(slots, segs, xp, codebook16, shift, t0, t1, acc)

        def codegen(context, builder, signature, args):
            slots_a, segs_a, xp_a, cb_a, acc_a = array_args(context, builder, signature, args, 0, 1, 2, 3, 7)
            vi, vw = vec(I32), vec(I16, 2 * LANES)
            permute = declare(builder, "llvm.x86.avx512.permvar.si.512", vi, [vi, vi])
            madd = declare(builder, "llvm.x86.avx512.pmaddw.d.512", vi, [vw, vw])
            smin = declare(builder, "llvm.smin.v16i32", vi, [vi, vi])
            smax = declare(builder, "llvm.smax.v16i32", vi, [vi, vi])
            add_sat = declare(builder, "llvm.sadd.sat.v32i16", vw, [vw, vw])
            cbv = builder.load(builder.bitcast(cb_a.data, vi.as_pointer()), align=4)
            shift_v = broadcast(builder, args[4])
            lo, hi = ir.Constant(vi, [-32768] * LANES), ir.Constant(vi, [32767] * LANES)
            out_ptr = builder.bitcast(acc_a.data, vi.as_pointer())
            total = cgutils.alloca_once_value(builder, builder.load(out_ptr, align=4))
            with cgutils.for_range_slice(builder, args[5], args[6], ir.Constant(I64, STEP_UNROLL), intp=I64) as (t, _):
                steps = _block_operands(builder, slots_a, segs_a, xp_a, t, vi, shuffle_cols=True)
                for xv, col, code in steps:  # in column order, as the hardware adds them
                    a = builder.call(permute, [xv, col])
                    w = builder.call(permute, [cbv, code])
                    term = builder.ashr(builder.call(madd, [builder.bitcast(a, vw), builder.bitcast(w, vw)]), shift_v)
                    if word_add:
                        summed = builder.call(add_sat, [builder.bitcast(builder.load(total), vw),
                                                        builder.bitcast(term, vw)])
                        builder.store(builder.bitcast(summed, vi), total)
                    else:
                        summed = builder.add(builder.load(total), term)
                        builder.store(builder.call(smin, [builder.call(smax, [summed, lo]), hi]), total)
            builder.store(builder.load(total), out_ptr, align=4)
            return context.get_dummy_value()

        return sig, codegen

    return group_dot


_group_dot_fixed16 = _make_group_dot_fixed16(word_add=False)
_group_dot_fixed16_words = _make_group_dot_fixed16(word_add=True)


def rounding_halves(shift: int) -> tuple[int, int]:
    """int16s ``(x_hi, w_hi)`` with ``x_hi * w_hi == 2**(shift-1)`` (0 for shift 0); shift <= 29."""
    if shift == 0:
        return 0, 0
    if shift <= 15:
        return 1, 1 << (shift - 1)
    return 1 << (shift - 15), 1 << 14


@njit(cache=True)
def codebook_words(codebook_q, w_hi):
    """The 16 int32 words ``weight | w_hi << 16`` that ``vpmaddwd`` multiplies with activation words
    ``a | x_hi << 16`` into ``a w + half``; code 0 (padding) and codes past the codebook weigh 0, so
    they add ``half >> shift == 0``."""
    cb = np.zeros(LANES, dtype=np.int32)
    for v in range(LANES):
        w = np.int32(codebook_q[v]) if v < codebook_q.shape[0] else np.int32(0)
        cb[v] = (w & 0xFFFF) | (np.int32(w_hi) << 16)
    return cb


@njit(cache=True)
def _words_counting(x_q, x_hi, xp):
    """``xp`` = the activation words ``a | x_hi << 16`` (padding lanes: ``a = 0``); returns x_q's
    non-zero count and largest |value|, from the same pass."""
    k = x_q.shape[0]
    hi = np.int32(x_hi) << 16
    n = 0
    amax = 0
    for j in range(np.uint64(k)):
        a = np.int32(x_q[j])
        xp[j] = (a & 0xFFFF) | hi
        n += a != 0
        amax = max(amax, abs(a))
    xp[k:] = hi
    return n, amax


@njit(cache=True, parallel=True)
def sliced_ell_fixed16(gptr, slots, segs, codebook_w, bounds, x_q, bias_q, shift, x_hi, fit16_amax, min_nonzero, relu,
                       out):
    """int16 out = act(W x + b), bit-exact, for the int16 ``x_q``; ``shift <= 29``,
    ``(x_hi, w_hi) = rounding_halves(shift)``, ``codebook_w = codebook_words(codebook_q, w_hi)``
    (made once per parameters by the caller, as for the panel kernel).

    Returns ``count << 16 | amax``, x_q's non-zero count and largest |value|; runs only if
    ``count >= min_nonzero[fits]`` (else ``out`` is left as it was), ``fits`` meaning
    ``amax <= fit16_amax``: the caller's proof that every rounded product then fits int16, which
    allows one saturating int16 add per step. The caller learns from the result whether the kernel
    ran, without a counting pass of its own.

    Each lane (row) receives its terms in ascending column order (segments in
    order, columns in order within one) and padding slots add 0, so clamping
    after every add is exactly the hardware's saturating sum. Every term fits
    int32: ``|a w| + half <= 2**30 + 2**28``.
    """
    m = out.shape[0]
    k = x_q.shape[0]
    nseg = (k + LANES - 1) // LANES
    nblk = bounds.shape[0] - 1
    if nblk == 0:
        n, amax = _words_counting(x_q, x_hi, np.empty(nseg * LANES, dtype=np.int32))
        return (n << 16) | amax
    found = np.empty(nblk, dtype=np.int64)  # every block counts the same
    for b in prange(nblk):
        xp = aligned_empty(nseg * LANES, np.int32)
        n, amax = _words_counting(x_q, x_hi, xp)
        found[b] = (n << 16) | amax
        terms_fit16 = amax <= fit16_amax
        if n < min_nonzero[1 if terms_fit16 else 0]:
            continue
        acc = np.empty(LANES, dtype=np.int32)
        for g in range(bounds[b] // LANES, (bounds[b + 1] + LANES - 1) // LANES):
            r0 = g * LANES
            rows = min(LANES, m - r0)
            for lane in range(LANES):
                acc[lane] = bias_q[r0 + lane] if lane < rows else 0
            if terms_fit16:
                _group_dot_fixed16_words(slots, segs, xp, codebook_w, np.int32(shift), np.int64(gptr[g]),
                                         np.int64(gptr[g + 1]), acc)
            else:
                _group_dot_fixed16(slots, segs, xp, codebook_w, np.int32(shift), np.int64(gptr[g]),
                                   np.int64(gptr[g + 1]), acc)
            for lane in range(rows):
                y = np.int16(acc[lane])  # the low int16 (all of it without terms_fit16)
                if relu and y < 0:
                    y = 0
                out[r0 + lane] = y
    return found[0]
