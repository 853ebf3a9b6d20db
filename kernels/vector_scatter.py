"""The saturating fixed16 column scatter, 16 entries at a time.

Within one column of a row block every entry has a different row, so the 16
accumulators one vector step touches are distinct: a gather, a vector add, a
clamp to int16 and a scatter give each row exactly the saturating add the
hardware does, in the same (column) order. Numba cannot express this (it
has no vector types, and LLVM will not vectorise a scatter it cannot prove
conflict-free), so ``saturating_column_add`` is an intrinsic written in LLVM
IR. Measured against the scalar loop it replaces: see ``docs/speed.md``.
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .llvm_ir import I1, I16, I32, I64, LANES, array_args, broadcast, declare, element_pointers, vec


@intrinsic
def saturating_column_add(typingctx, acc, packed, tab, e0, e1):
    """For ``e0 <= e < e1``: ``r, v = packed[e] >> 4, packed[e] & 15``;
    ``acc[r] = clamp(acc[r] + tab[v], -32768, 32767)``. The rows must be distinct
    (one column of one block); ``acc`` and ``tab`` int32, ``packed`` uint16, ``e0, e1`` uint64."""
    sig = types.void(acc, packed, tab, e0, e1)

    def codegen(context, builder, signature, args):
        acc_a, packed_a, tab_a = array_args(context, builder, signature, args, 0, 1, 2)
        first, end = args[3], args[4]
        vi32, vmask = vec(I32), vec(I1)
        gather = declare(builder, "llvm.masked.gather.v16i32.v16p0i32", vi32,
                         [vec(I32.as_pointer()), I32, vmask, vi32])
        scatter = declare(builder, "llvm.masked.scatter.v16i32.v16p0i32", ir.VoidType(),
                          [vi32, vec(I32.as_pointer()), I32, vmask])
        load = declare(builder, "llvm.masked.load.v16i16.p0v16i16", vec(I16),
                       [vec(I16).as_pointer(), I32, vmask, vec(I16)])
        smin = declare(builder, "llvm.smin.v16i32", vi32, [vi32, vi32])
        smax = declare(builder, "llvm.smax.v16i32", vi32, [vi32, vi32])
        lanes = ir.Constant(vec(I64), list(range(LANES)))
        zero = ir.Constant(vi32, [0] * LANES)
        lo = ir.Constant(vi32, [-32768] * LANES)
        hi = ir.Constant(vi32, [32767] * LANES)
        four = ir.Constant(vi32, [4] * LANES)
        fifteen = ir.Constant(vi32, [15] * LANES)
        align4 = ir.Constant(I32, 4)
        with cgutils.for_range_slice(builder, first, end, ir.Constant(I64, LANES), intp=I64) as (e, _):
            mask = builder.icmp_unsigned("<", lanes, broadcast(builder, builder.sub(end, e)))  # the tail
            src = builder.bitcast(builder.gep(packed_a.data, [e]), vec(I16).as_pointer())
            p = builder.zext(builder.call(load, [src, ir.Constant(I32, 2), mask, ir.Constant(vec(I16), [0] * LANES)]),
                             vi32)
            term = builder.call(gather, [element_pointers(builder, tab_a.data, builder.and_(p, fifteen)), align4,
                                         mask, zero])
            where = element_pointers(builder, acc_a.data, builder.lshr(p, four))
            total = builder.add(builder.call(gather, [where, align4, mask, zero]), term)
            builder.call(scatter, [builder.call(smin, [builder.call(smax, [total, lo]), hi]), where, align4, mask])
        return context.get_dummy_value()

    return sig, codegen
