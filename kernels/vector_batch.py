"""The float32 batch kernel, with its accumulators held in vector registers.

For a batch, each stored entry ``(row i, column c, value v)`` adds ``v *
X[:, c]`` to row ``i``'s outputs for all samples. With ``xt = X^T`` (K, B)
row-major, that is one broadcast multiply-add over a contiguous row of
``xt``. Written in Numba, the accumulator is an array that LLVM cannot keep
in registers (it cannot prove it distinct from ``xt``), so every entry paid a
load and a store of it, and the kernel ran at half the speed of MKL's CSR x
dense. Numba has no vector types, so ``_row_dot`` writes the loop in LLVM IR
(an intrinsic): ``16 * nv`` lanes as ``nv`` <16 x float> values, two entries
per step into two sets of accumulators (a fused multiply-add has a latency of
4 cycles; two sets keep both FMA pipes busy), summed at the end. On the
project's AVX-512 machine the loop is four ``vfmadd231ps zmm`` with memory
operands per entry; on narrower targets LLVM splits the vectors.

Measured side by side with the Numba version it replaces (2 threads, batch
64): 1.0 to 1.9x faster, layer by layer.
"""

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .llvm_ir import F32, I64, LANES, broadcast, declare, vec

_VF = vec(F32)


def _make_row_dot(nv: int):
    """An intrinsic ``f(xt, cols, codes, codebook, e0, e1, lane0, acc)``: for the entries ``e0 <= e < e1``,
    ``acc[lane0 : lane0 + 16 nv] = sum_e codebook[codes[e]] * xt[cols[e], lane0 : lane0 + 16 nv]``.

    ``xt`` is a C-contiguous (K, B') float32 array, ``lane0 + 16 nv <= B'``;
    ``e0, e1, lane0`` are int64; nothing is bounds-checked.
    """

    @intrinsic
    def row_dot(typingctx, xt, cols, codes, codebook, e0, e1, lane0, acc):
        sig = types.void(xt, cols, codes, codebook, e0, e1, lane0, acc)
        signed_cols = cols.dtype.signed

        def codegen(context, builder, signature, args):
            xt_a, cols_a, codes_a, cb_a = (context.make_array(t)(context, builder, a)
                                           for t, a in zip(signature.args[:4], args[:4]))
            acc_a = context.make_array(signature.args[7])(context, builder, args[7])
            first, end, lane0_v = args[4], args[5], args[6]
            row_bytes = builder.extract_value(xt_a.strides, 0)
            i8p = ir.IntType(8).as_pointer()
            base = builder.gep(builder.bitcast(xt_a.data, i8p), [builder.mul(lane0_v, ir.Constant(I64, 4))])
            fma = declare(builder, "llvm.fma.v16f32", _VF, [_VF, _VF, _VF])
            # two sets of nv accumulators; allocas in the entry block become registers
            accs = [cgutils.alloca_once_value(builder, ir.Constant(_VF, [0.0] * LANES)) for _ in range(2 * nv)]

            def add_entry(e, acc_set):
                col = builder.load(builder.gep(cols_a.data, [e]))
                col = builder.sext(col, I64) if signed_cols else builder.zext(col, I64)
                code = builder.zext(builder.load(builder.gep(codes_a.data, [e])), I64)
                weight = broadcast(builder, builder.load(builder.gep(cb_a.data, [code])))
                row = builder.bitcast(builder.gep(base, [builder.mul(col, row_bytes)]), F32.as_pointer())
                for q in range(nv):
                    ptr = builder.bitcast(builder.gep(row, [ir.Constant(I64, LANES * q)]), _VF.as_pointer())
                    slot = accs[acc_set * nv + q]
                    builder.store(builder.call(fma, [weight, builder.load(ptr, align=4), builder.load(slot)]), slot)

            two = ir.Constant(I64, 2)
            pairs_end = builder.add(first, builder.mul(builder.udiv(builder.sub(end, first), two), two))
            with cgutils.for_range_slice(builder, first, pairs_end, two, intp=I64) as (e, _):
                add_entry(e, 0)
                add_entry(builder.add(e, ir.Constant(I64, 1)), 1)
            with cgutils.for_range_slice(builder, pairs_end, end, ir.Constant(I64, 1), intp=I64) as (e, _):
                add_entry(e, 0)
            out = builder.gep(acc_a.data, [lane0_v])
            for q in range(nv):
                total = builder.fadd(builder.load(accs[q]), builder.load(accs[nv + q]))
                ptr = builder.bitcast(builder.gep(out, [ir.Constant(I64, LANES * q)]), _VF.as_pointer())
                builder.store(total, ptr, align=4)
            return context.get_dummy_value()

        return sig, codegen

    return row_dot


_row_dot_64 = _make_row_dot(4)
_row_dot_32 = _make_row_dot(2)
_row_dot_16 = _make_row_dot(1)


def padded_transpose(x: np.ndarray) -> np.ndarray:
    """X (B, K) float32 -> X^T as a C-contiguous (K, B') array, B' the next multiple of ``LANES`` (zeros)."""
    b, k = x.shape
    xt = np.zeros((k, -(-b // LANES) * LANES), dtype=np.float32)
    xt[:, :b] = x.T
    return xt


@njit(cache=True, parallel=True)
def csr_block_f32(rowptr, cols, codes, codebook, bounds, xt, bias, relu, out):
    """out (B, M) = act(X W^T + bias) from the CSR, with ``xt`` = ``padded_transpose(X)``."""
    nblk = bounds.shape[0] - 1
    width = xt.shape[1]
    nb = out.shape[0]
    for b in prange(nblk):
        acc = np.empty(width, dtype=np.float32)
        for i in range(bounds[b], bounds[b + 1]):
            e0 = np.int64(rowptr[i])
            e1 = np.int64(rowptr[i + 1])
            lane = 0
            while lane + 64 <= width:
                _row_dot_64(xt, cols, codes, codebook, e0, e1, np.int64(lane), acc)
                lane += 64
            if lane + 32 <= width:
                _row_dot_32(xt, cols, codes, codebook, e0, e1, np.int64(lane), acc)
                lane += 32
            if lane + 16 <= width:
                _row_dot_16(xt, cols, codes, codebook, e0, e1, np.int64(lane), acc)
            bi = bias[i]
            for s in range(nb):
                y = acc[s] + bi
                if relu and y < 0:
                    y = np.float32(0.0)
                out[s, i] = y
