"""Structural checks: a graph is validated when it is built or loaded, before anything runs."""

from __future__ import annotations

import numpy as np

from ..errors import EIEFormatError, EIEInputError
from ..layer import EIELinear
from .ir import ONNX_DTYPES, TensorSpec, is_int, shape_str
from .ops import INT, INT_OR_NONE, OPS

_DTYPE_NAMES = frozenset(ONNX_DTYPES.values())  # the dtypes a graph's constants may have (all savable)


#: The largest opset a graph may declare (ONNX's default domain is at 23 in 2025; any larger number is a
#: typo or a hostile file, and 2**80 does not fit the int64 an ONNX export writes).
MAX_OPSET = 1000


def check_graph(g) -> None:
    """Validate names, ops, attributes and layer references of a GraphModel; raise EIEFormatError naming the node."""
    if not is_int(g.opset) or not 1 <= g.opset <= MAX_OPSET:
        raise EIEFormatError(f"graph opset must be an integer in [1, {MAX_OPSET}], got {g.opset!r:.80}")
    for name, arr in g.constants.items():
        if not isinstance(arr, np.ndarray):
            raise EIEFormatError(f"constant {name!r} is a {type(arr).__name__}, not an array")
        if arr.dtype.name not in _DTYPE_NAMES:  # e.g. ONNX strings, complex, int4: not runnable nor savable
            raise EIEFormatError(f"constant {name!r} has dtype {arr.dtype}; graph constants may be "
                                 f"{', '.join(sorted(_DTYPE_NAMES))}")
    for i, layer in enumerate(g.layers):
        if not isinstance(layer, EIELinear):
            raise EIEFormatError(f"layer {i} is a {type(layer).__name__}, not an EIELinear")
    defined = set(g.constants)
    for spec in g.inputs:
        _check_input_spec(spec)
        defined.add(spec.name)
    used_layers = set()
    for node in g.nodes:
        where = f"node {node.name!r} ({node.op})"
        spec = OPS.get(node.op)
        if spec is None:
            raise EIEFormatError(f"{where}: unknown op")
        if not isinstance(node.attrs, dict):
            raise EIEFormatError(f"{where}: attrs must be an object")
        if not isinstance(node.inputs, list) or not isinstance(node.outputs, list):
            raise EIEFormatError(f"{where}: inputs and outputs must be lists")
        lo, hi = spec.arity
        if not lo <= len(node.inputs) <= hi or not node.inputs[0] or len(node.outputs) < 1:
            raise EIEFormatError(f"{where}: takes {lo}..{hi} inputs (the first one required) and gives at least "
                                 f"one output, got inputs {node.inputs} and outputs {node.outputs}")
        if not spec.multi_output and len(node.outputs) != 1:
            raise EIEFormatError(f"{where}: gives exactly one output, got {node.outputs}")
        for key, v in node.attrs.items():
            _check_attr(where, key, v, spec.attrs.get(key))
        for name in node.inputs:
            if not isinstance(name, str):
                raise EIEFormatError(f"{where}: input names must be strings")
            if name and name not in defined:
                raise EIEFormatError(f"{where}: input {name!r} is not produced by an earlier node, an input or a constant")
        if spec.check is not None:
            spec.check(g, node, where, used_layers)
        for name in node.outputs:
            if not isinstance(name, str):
                raise EIEFormatError(f"{where}: output names must be strings")
            if name:
                defined.add(name)
    for name in g.outputs:
        if not isinstance(name, str):
            raise EIEFormatError(f"graph outputs must be names (strings), got {name!r:.80}")
        if name not in defined:
            raise EIEFormatError(f"graph output {name!r} is not produced by any node, input or constant")


def _check_input_spec(spec) -> None:
    if not isinstance(spec, TensorSpec) or not isinstance(spec.name, str) or not spec.name:
        raise EIEFormatError(f"graph input {spec!r} must be a TensorSpec with a name")
    try:
        np.dtype(spec.dtype)
    except TypeError:
        raise EIEFormatError(f"graph input {spec.name!r}: unknown dtype {spec.dtype!r}") from None
    if spec.shape is not None and not (isinstance(spec.shape, list) and all(
            d is None or (is_int(d) and d >= 0) for d in spec.shape)):
        raise EIEFormatError(f"graph input {spec.name!r}: shape must be a list of non-negative ints or nulls")


def _check_attr(where: str, key: str, v, kind: str | None) -> None:
    if kind is None:  # an attribute the op does not read
        return
    if kind in (INT, INT_OR_NONE):
        if not is_int(v) and not (v is None and kind == INT_OR_NONE):
            raise EIEFormatError(f"{where}: attribute {key!r} must be an integer, got {v!r:.80}")
        values = [v] if v is not None else []
    elif not (isinstance(v, list) and all(is_int(i) for i in v)):
        raise EIEFormatError(f"{where}: attribute {key!r} must be a list of integers, got {v!r:.80}")
    else:
        values = v
    if not all(-(1 << 63) <= i < 1 << 63 for i in values):  # ONNX attributes are int64: 2**70 is refused here
        raise EIEFormatError(f"{where}: attribute {key!r} holds an integer outside int64, got {v!r:.80}")


def check_feed(spec: TensorSpec, value) -> np.ndarray:
    """A run-time input as an array, refused unless its dtype and fixed axes match ``spec``."""
    if hasattr(value, "detach"):  # a torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.dtype != np.dtype(spec.dtype):
        raise EIEInputError(f"input {spec.name!r} has dtype {arr.dtype}, expected {spec.dtype}")
    if spec.shape is not None:
        ok = arr.ndim == len(spec.shape) and all(d is None or d == n for d, n in zip(spec.shape, arr.shape))
        if not ok:
            raise EIEInputError(f"input {spec.name!r} has shape {arr.shape}, expected {shape_str(spec.shape)}")
    return arr
