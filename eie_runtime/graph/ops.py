"""The op registry, and the elementary ONNX ops the executor runs besides the EIE layers.

Each op is registered once with what a graph check needs (arity, attribute
kinds) and what execution needs (its function); :func:`check_graph
<eie_runtime.graph.checks.check_graph>` and :func:`run_elementary` both read
:data:`OPS`. The layer ops (``Linear``, ``DenseLinear``, ``LSTM``) register
from :mod:`eie_runtime.graph.layer_ops`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import EIEInputError
from ..lstm import _sigmoid
from .ir import ONNX_DTYPES, float_input

# attribute kinds a graph check enforces
INT, INT_OR_NONE, INTS = "int", "int or null", "list of ints"


@dataclass(frozen=True)
class OpSpec:
    """One op: its inputs, checked attributes and implementation."""

    name: str
    arity: tuple[int, int]  # (fewest, most) inputs; the first input is always required
    attrs: dict = field(default_factory=dict)  # attribute name -> INT / INT_OR_NONE / INTS (others are not checked)
    run: Callable | None = None  # elementary: run(args, attrs, opset) -> array; layer: run(model, node, args, mode) -> list
    layer: bool = False  # runs an EIE layer or dense weights of the model
    check: Callable | None = None  # layer ops: check(graph, node, where, used_layers), structure beyond arity and attrs
    multi_output: bool = False  # gives several outputs (its check counts them); else exactly one


#: Every op a graph may hold, by name, in registration order.
OPS: dict[str, OpSpec] = {}


def _register(spec: OpSpec) -> None:
    if spec.name in OPS:
        raise ValueError(f"op {spec.name!r} is registered twice")
    OPS[spec.name] = spec


def elementary_op(name: str, *, arity: tuple[int, int] = (1, 1), attrs: dict | None = None):
    """Register ``fn(args, attrs, opset) -> array`` as the ONNX op ``name``."""
    def register(fn):
        _register(OpSpec(name, arity, dict(attrs or {}), fn))
        return fn
    return register


def layer_op(name: str, *, arity: tuple[int, int], attrs: dict | None = None, check: Callable,
             multi_output: bool = False):
    """Register ``fn(model, node, args, mode) -> list`` as the layer op ``name``, validated by ``check``."""
    def register(fn):
        _register(OpSpec(name, arity, dict(attrs or {}), fn, layer=True, check=check, multi_output=multi_output))
        return fn
    return register


def run_elementary(op: str, args: list, attrs: dict, opset: int) -> list:
    """Run one of :data:`ELEMENTARY_OPS` on numpy arrays with ONNX semantics at ``opset``."""
    spec = OPS.get(op)
    if spec is None or spec.layer:
        raise EIEInputError(f"op {op!r} is not supported by the executor")
    return [spec.run(args, attrs, opset)]


#: What one op of the executor may allocate: an output (or a broadcast) of more than ``max_value_bytes`` is
#: refused with an EIEInputError naming the node before anything is allocated. Raise it by assigning, e.g.
#: ``eie_runtime.graph.ops.GRAPH_LIMITS["max_value_bytes"] = 16 << 30`` (SECURITY.md).
GRAPH_LIMITS = {"max_value_bytes": 2 << 30}


def check_value_size(shape, dtype, what: str = "output") -> tuple:
    """``shape`` as a tuple of ints, refused unless each is in [0, 2**62] and the value fits ``GRAPH_LIMITS``.

    Python integers: no int64 product can wrap around and pass."""
    dims = tuple(int(d) for d in shape)
    if any(not 0 <= d <= 1 << 62 for d in dims):
        raise EIEInputError(f"{what} shape {dims} has a dimension outside [0, 2**62]")
    nbytes = np.dtype(dtype).itemsize
    for d in dims:
        nbytes *= d
    if nbytes > GRAPH_LIMITS["max_value_bytes"]:
        raise EIEInputError(f"{what} of shape {dims} ({np.dtype(dtype)}) would take {nbytes} bytes, over "
                            f"GRAPH_LIMITS['max_value_bytes'] = {GRAPH_LIMITS['max_value_bytes']} "
                            "(eie_runtime.graph.ops.GRAPH_LIMITS)")
    return dims


# ------------------------------------------------------------------ helpers
def _axis(axis: int, rank: int, what: str = "axis") -> int:
    if not -rank <= axis < max(rank, 1):
        raise EIEInputError(f"{what} {axis} is out of range for rank {rank}")
    return axis % max(rank, 1)


def _ints(v, what: str) -> list[int]:
    arr = np.asarray(v)
    if arr.dtype.kind not in "iu":
        raise EIEInputError(f"{what} must be integers, got {arr.dtype}")
    return [int(i) for i in arr.reshape(-1)]


def _softmax(x, axis):
    x = float_input(x, "input") if np.asarray(x).dtype.kind != "f" else np.asarray(x)
    m = np.max(x, axis=axis, keepdims=True)
    e = np.exp(x - m)
    return e / np.sum(e, axis=axis, keepdims=True)


def _binary(fn, args):
    a, b = np.asarray(args[0]), np.asarray(args[1])
    if a.dtype != b.dtype:
        raise EIEInputError(f"inputs have different dtypes {a.dtype} and {b.dtype}")
    check_value_size(np.broadcast_shapes(a.shape, b.shape), a.dtype, "broadcast result")
    with np.errstate(over="ignore"):  # integer wrap-around is ONNX's (and C's) semantics
        return np.asarray(fn(a, b), dtype=a.dtype)


def _squeeze_axes(args, attrs, opset):
    if opset >= 13:
        return None if len(args) < 2 or args[1] is None else _ints(args[1], "axes")
    return attrs.get("axes")


# ---------------------------------------------------------------------- ops
@elementary_op("Relu")
def _relu(args, attrs, opset):
    x = args[0]
    return np.maximum(x, np.zeros((), dtype=x.dtype))


@elementary_op("Sigmoid")
def _sigmoid_op(args, attrs, opset):
    x = args[0]
    return _sigmoid(np.asarray(x)).astype(x.dtype, copy=False)


@elementary_op("Tanh")
def _tanh(args, attrs, opset):
    return np.tanh(args[0])


@elementary_op("Softmax", attrs={"axis": INT})
def _softmax_op(args, attrs, opset):
    x = args[0]
    if opset < 13:  # coerce to 2-D at `axis` (default 1), softmax over the trailing block
        ax = _axis(attrs.get("axis", 1), x.ndim)
        flat = x.reshape(int(np.prod(x.shape[:ax], dtype=np.int64)), -1)
        return _softmax(flat, 1).reshape(x.shape).astype(x.dtype, copy=False)
    return _softmax(x, _axis(attrs.get("axis", -1), x.ndim)).astype(x.dtype, copy=False)


@elementary_op("Add", arity=(2, 2))
def _add(args, attrs, opset):
    return _binary(np.add, args)


@elementary_op("Mul", arity=(2, 2))
def _mul(args, attrs, opset):
    return _binary(np.multiply, args)


@elementary_op("Flatten", attrs={"axis": INT})
def _flatten(args, attrs, opset):
    x = args[0]
    ax = attrs.get("axis", 1)
    if not -x.ndim <= ax <= x.ndim:
        raise EIEInputError(f"axis {ax} is out of range for rank {x.ndim}")
    if ax < 0:
        ax += x.ndim
    lead = int(np.prod(x.shape[:ax], dtype=np.int64))
    return x.reshape(lead, int(np.prod(x.shape[ax:], dtype=np.int64)))


@elementary_op("Reshape", arity=(1, 2), attrs={"allowzero": INT, "shape": INTS})
def _reshape(args, attrs, opset):
    x = args[0]
    shape = _ints(args[1] if opset >= 5 else np.asarray(attrs["shape"], dtype=np.int64), "shape")
    out = []
    for i, d in enumerate(shape):
        if d == 0 and not attrs.get("allowzero", 0):
            if i >= x.ndim:
                raise EIEInputError(f"shape {shape}: 0 at axis {i} copies a dimension the input (rank {x.ndim}) lacks")
            out.append(x.shape[i])
        else:
            out.append(d)
    if out.count(-1) > 1:
        raise EIEInputError(f"shape {shape} has more than one -1")
    return x.reshape(out)


@elementary_op("Transpose", attrs={"perm": INTS})
def _transpose(args, attrs, opset):
    x = args[0]
    return np.transpose(x, attrs.get("perm", list(range(x.ndim))[::-1])).copy()


@elementary_op("Identity")
def _identity(args, attrs, opset):
    return args[0]


@elementary_op("Concat", arity=(1, 1 << 16), attrs={"axis": INT})
def _concat(args, attrs, opset):
    parts = [np.asarray(a) for a in args if a is not None]
    check_value_size([sum(p.size for p in parts)], parts[0].dtype, "concatenation")
    return np.concatenate(parts, axis=_axis(attrs["axis"], parts[0].ndim))


@elementary_op("Squeeze", arity=(1, 2), attrs={"axes": INTS})
def _squeeze(args, attrs, opset):
    x = args[0]
    axes = _squeeze_axes(args, attrs, opset)
    if axes is None:
        return np.squeeze(x)
    axes = tuple(_axis(a, x.ndim) for a in axes)
    if any(x.shape[a] != 1 for a in axes):
        raise EIEInputError(f"cannot squeeze axes {axes} of shape {x.shape}: not all of size 1")
    return np.squeeze(x, axis=axes)


@elementary_op("Unsqueeze", arity=(1, 2), attrs={"axes": INTS})
def _unsqueeze(args, attrs, opset):
    x = args[0]
    axes = _squeeze_axes(args, attrs, opset)
    if axes is None:
        raise EIEInputError("Unsqueeze needs axes")
    rank = np.ndim(x) + len(axes)
    out = np.asarray(x)
    for a in sorted(_axis(a, rank) for a in axes):
        out = np.expand_dims(out, a)
    return out


@elementary_op("Gather", arity=(2, 2), attrs={"axis": INT})
def _gather(args, attrs, opset):
    x = args[0]
    ax = _axis(attrs.get("axis", 0), x.ndim)
    idx = np.asarray(args[1])
    if idx.dtype.kind not in "iu":
        raise EIEInputError(f"Gather indices must be integers, got {idx.dtype}")
    n = x.shape[ax]
    if ((idx < -n) | (idx >= n)).any():
        raise EIEInputError(f"Gather indices out of range [-{n}, {n - 1}]")
    check_value_size(x.shape[:ax] + idx.shape + x.shape[ax + 1:], x.dtype)
    return np.take(x, np.where(idx < 0, idx + n, idx), axis=ax)


@elementary_op("Shape", attrs={"start": INT, "end": INT_OR_NONE})
def _shape(args, attrs, opset):
    shape = np.asarray(np.shape(args[0]), dtype=np.int64)
    return shape[slice(attrs.get("start", 0), attrs.get("end", None))]


@elementary_op("Expand", arity=(2, 2))
def _expand(args, attrs, opset):
    x = np.asarray(args[0])
    shape = _ints(args[1], "shape")
    if any(not 0 <= d <= 1 << 62 for d in shape):
        raise EIEInputError(f"shape {shape} has a dimension outside [0, 2**62]")
    out = check_value_size(np.broadcast_shapes(x.shape, tuple(shape)), x.dtype)
    return np.array(np.broadcast_to(x, out))


@elementary_op("ConstantOfShape")
def _constant_of_shape(args, attrs, opset):
    value = np.asarray(attrs.get("value", [0.0]), dtype=attrs.get("dtype", "float32")).reshape(-1)
    if value.size != 1 or value.dtype.kind not in "biuf":
        raise EIEInputError(f"attribute 'value' must hold one number, got {value.size} of {value.dtype}")
    shape = check_value_size(_ints(args[0], "shape"), value.dtype)
    return np.full(shape, value[0], dtype=value.dtype)


@elementary_op("Cast", attrs={"to": INT})
def _cast(args, attrs, opset):
    to = attrs.get("to")
    if to not in ONNX_DTYPES:
        raise EIEInputError(f"Cast to ONNX type {to} is not supported (supported: {sorted(ONNX_DTYPES)})")
    x = np.asarray(args[0])
    check_value_size(x.shape, ONNX_DTYPES[to])
    return x.astype(ONNX_DTYPES[to])


@elementary_op("Slice", arity=(1, 5), attrs={"starts": INTS, "ends": INTS, "axes": INTS})
def _slice(args, attrs, opset):
    x = args[0]
    if opset < 10:
        starts, ends = attrs["starts"], attrs["ends"]
        axes = attrs.get("axes", list(range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts, ends = _ints(args[1], "starts"), _ints(args[2], "ends")
        axes = _ints(args[3], "axes") if len(args) > 3 and args[3] is not None else list(range(len(starts)))
        steps = _ints(args[4], "steps") if len(args) > 4 and args[4] is not None else [1] * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise EIEInputError("starts, ends, axes and steps must have the same length")
    index = [slice(None)] * x.ndim
    for s, e, ax, st in zip(starts, ends, axes, steps):
        if st == 0:
            raise EIEInputError("slice step 0")
        index[_axis(ax, x.ndim)] = slice(s, e, st)
    return x[tuple(index)]


#: ONNX ops the executor runs besides the EIE layers (``Constant`` nodes become constants on import).
ELEMENTARY_OPS = tuple(name for name, spec in OPS.items() if not spec.layer)
