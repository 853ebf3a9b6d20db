"""Small LLVM IR helpers for the kernels Numba cannot express (it has no vector types).

Used inside ``numba.extending.intrinsic`` code generators: the vector types
here are generic LLVM ones, which LLVM lowers to whatever the target has
(zmm registers and gather/scatter instructions with AVX-512, narrower or
scalar code elsewhere), so the kernels stay correct on any CPU.

Numba's on-disk cache keys a kernel on its own file only: after editing this
file or an intrinsic, delete the ``__pycache__`` folders under ``kernels/``.
"""

from llvmlite import ir
from numba.core import cgutils

LANES = 16
F32 = ir.FloatType()
I1 = ir.IntType(1)
I16 = ir.IntType(16)
I32 = ir.IntType(32)
I64 = ir.IntType(64)


def vec(t, n: int = LANES) -> ir.VectorType:
    return ir.VectorType(t, n)


def broadcast(builder, value, n: int = LANES):
    """A vector of ``n`` copies of the scalar ``value``."""
    undef = ir.Constant(vec(value.type, n), ir.Undefined)
    one = builder.insert_element(undef, value, ir.Constant(I32, 0))
    return builder.shuffle_vector(one, undef, ir.Constant(vec(I32, n), [0] * n))


class _VectorGEP(ir.instructions.Instruction):
    """``getelementptr`` of one base pointer with a vector of indices (llvmlite's own gep takes scalars only)."""

    def __init__(self, parent, ptr, idx):
        super().__init__(parent, vec(ptr.type, idx.type.count), "getelementptr", [ptr, idx])

    def descr(self, buf):
        ptr, idx = self.operands
        buf.append(f"getelementptr inbounds {ptr.type.pointee}, {ptr.type} {ptr.get_reference()}, "
                   f"{idx.type} {idx.get_reference()}\n")


def element_pointers(builder, base, idx):
    """The vector of pointers ``&base[idx[l]]``; LLVM turns it into one gather's or scatter's addressing."""
    instr = _VectorGEP(builder.block, base, idx)
    builder._insert(instr)
    return instr


def declare(builder, name: str, ret, args):
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(ret, args), name)


def array_args(context, builder, signature, args, *positions):
    """Numba's array structs (``data``, ``shape``, ``strides``) of the intrinsic arguments at ``positions``."""
    return [context.make_array(signature.args[i])(context, builder, args[i]) for i in positions]
