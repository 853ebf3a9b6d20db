"""A CSR times 16 samples side by side: the product of the batched recurrent kernels.

``csr_times_lanes(ptr, cols, vals, vt, start, out)``: ``out[r, :] = start[r, :]
+ sum_e vals[e] * vt[cols[e], :]`` over row ``r``'s entries, for float32
matrices of 16 columns, each row's 16 values contiguous (any row stride: a
16-column slice of a wider matrix will do): one 16-lane vector FMA per
entry, the row's sum held in registers (four chains, for the FMA's latency). Numba cannot say this
(it has no vector type, and it turns LLVM's SLP vectoriser off), so the row
loop is written in LLVM IR; ``llvm.fma.v16f32`` is a generic intrinsic that
LLVM lowers to one zmm FMA with AVX-512, two ymm ones with AVX2, scalar code
elsewhere. Written as a loop over 16 samples, Numba's own code stored the
accumulators to memory and checked aliasing at every entry: 4-6x slower.
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .jit import njit
from .llvm_ir import F32, I64, LANES, array_args, broadcast, declare, vec

__all__ = ["LANES", "csr_times_lanes"]

_VF = vec(F32)
_CHAINS = 4


@intrinsic
def _csr_times_lanes(typingctx, ptr, cols, vals, vt, start, out):
    sig = types.void(ptr, cols, vals, vt, start, out)

    def codegen(context, builder, signature, args):
        ptr_a, cols_a, vals_a, vt_a, start_a, out_a = array_args(context, builder, signature, args, 0, 1, 2, 3, 4, 5)
        fma = declare(builder, "llvm.fma.v16f32", _VF, [_VF, _VF, _VF])
        i8p = ir.IntType(8).as_pointer()

        def rows(a):  # i -> a pointer to the 16 values of row i of array a
            base, stride = builder.bitcast(a.data, i8p), builder.extract_value(a.strides, 0)
            return lambda i: builder.bitcast(builder.gep(base, [builder.mul(i, stride)]), _VF.as_pointer())

        vt_row, start_row, out_row = rows(vt_a), rows(start_a), rows(out_a)
        one = ir.Constant(I64, 1)
        zero = ir.Constant(_VF, [0.0] * LANES)
        accs = [cgutils.alloca_once_value(builder, zero) for _ in range(_CHAINS)]
        n_rows = builder.sub(builder.extract_value(ptr_a.shape, 0), one)

        def add_entry(e, acc):
            w = broadcast(builder, builder.load(builder.gep(vals_a.data, [e])))
            col = builder.zext(builder.load(builder.gep(cols_a.data, [e])), I64)
            x = builder.load(vt_row(col), align=4)
            builder.store(builder.call(fma, [w, x, builder.load(acc)]), acc)

        with cgutils.for_range(builder, n_rows, intp=I64) as row_loop:
            r = row_loop.index
            e0 = builder.load(builder.gep(ptr_a.data, [r]))
            e1 = builder.load(builder.gep(ptr_a.data, [builder.add(r, one)]))
            builder.store(builder.load(start_row(r), align=4), accs[0])
            for acc in accs[1:]:
                builder.store(zero, acc)
            whole = builder.add(e0, builder.and_(builder.sub(e1, e0), ir.Constant(I64, -_CHAINS)))
            with cgutils.for_range_slice(builder, e0, whole, ir.Constant(I64, _CHAINS), intp=I64) as (e, _):
                for u, acc in enumerate(accs):
                    add_entry(builder.add(e, ir.Constant(I64, u)), acc)
            with cgutils.for_range_slice(builder, whole, e1, one, intp=I64) as (e, _):
                add_entry(e, accs[0])
            total = builder.load(accs[0])
            for acc in accs[1:]:
                total = builder.fadd(total, builder.load(acc))
            builder.store(total, out_row(r), align=4)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, inline="always")
def csr_times_lanes(ptr, cols, vals, vt, start, out):
    """``out (M, 16) = start + W vt`` for the CSR ``W`` (``ptr`` int64, ``cols`` unsigned, ``vals``
    float32), float32 ``vt (K, 16)``, ``start`` and ``out`` (M, 16) with unit stride along their 16
    columns (``start`` may be ``out``); nothing is bounds-checked."""
    _csr_times_lanes(ptr, cols, vals, vt, start, out)
