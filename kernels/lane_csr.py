"""A CSR times 16 samples side by side: the product of the batched recurrent kernels.

``csr_times_lanes(ptr, cols, vals, vt, out)``: ``out[r, :] = sum_e vals[e] *
vt[cols[e], :]`` over row ``r``'s entries, with ``vt`` (K, 16) and ``out`` (M, 16)
C-contiguous float32: one 16-lane vector FMA per entry, the row's sum held in
registers (four chains, for the FMA's latency). Numba cannot say this
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
def _csr_times_lanes(typingctx, ptr, cols, vals, vt, out):
    sig = types.void(ptr, cols, vals, vt, out)

    def codegen(context, builder, signature, args):
        ptr_a, cols_a, vals_a, vt_a, out_a = array_args(context, builder, signature, args, 0, 1, 2, 3, 4)
        fma = declare(builder, "llvm.fma.v16f32", _VF, [_VF, _VF, _VF])
        vt_rows = builder.bitcast(vt_a.data, _VF.as_pointer())
        out_rows = builder.bitcast(out_a.data, _VF.as_pointer())
        one = ir.Constant(I64, 1)
        zero = ir.Constant(_VF, [0.0] * LANES)
        accs = [cgutils.alloca_once_value(builder, zero) for _ in range(_CHAINS)]
        n_rows = builder.sub(builder.extract_value(ptr_a.shape, 0), one)

        def add_entry(e, acc):
            w = broadcast(builder, builder.load(builder.gep(vals_a.data, [e])))
            col = builder.zext(builder.load(builder.gep(cols_a.data, [e])), I64)
            x = builder.load(builder.gep(vt_rows, [col]), align=4)
            builder.store(builder.call(fma, [w, x, builder.load(acc)]), acc)

        with cgutils.for_range(builder, n_rows, intp=I64) as row_loop:
            r = row_loop.index
            e0 = builder.load(builder.gep(ptr_a.data, [r]))
            e1 = builder.load(builder.gep(ptr_a.data, [builder.add(r, one)]))
            for acc in accs:
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
            builder.store(total, builder.gep(out_rows, [r]), align=4)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, inline="always")
def csr_times_lanes(ptr, cols, vals, vt, out):
    """``out (M, 16) = W vt`` for the CSR ``W`` (``ptr`` int64, ``cols`` unsigned, ``vals`` float32) and
    ``vt (K, 16)``, both C-contiguous float32; nothing is bounds-checked."""
    _csr_times_lanes(ptr, cols, vals, vt, out)
