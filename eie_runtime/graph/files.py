"""Loading a graph model from a ``.eie`` file (kind ``"graph"``, see :meth:`GraphModel._eie_file_contents`)."""

from __future__ import annotations

import math

import numpy as np

from ..errors import EIEFormatError
from .ir import GRAPH_VERSION, Node, TensorSpec, is_int
from .model import GraphModel


def model_from_file(mf) -> GraphModel:
    """Rebuild a :class:`GraphModel` from a validated ``.eie`` ModelFile of kind ``"graph"``."""
    g = mf.meta.get("graph") if isinstance(mf.meta, dict) else None
    if not isinstance(g, dict):
        raise EIEFormatError("graph model file: header meta lacks the 'graph' object")
    if g.get("version") != GRAPH_VERSION:
        raise EIEFormatError(f"graph model file: graph version {g.get('version')!r} is not supported (this build reads {GRAPH_VERSION})")
    try:
        constants = _constants(g["constants"], mf.extra)
        inputs = [TensorSpec(s["name"], s["dtype"], s["shape"]) for s in g["inputs"]]
        nodes = []
        for i, n in enumerate(g["nodes"]):
            if not isinstance(n, dict):
                raise TypeError(f"node {i} must be an object")
            node = Node(n["op"], n["name"], list(n["inputs"]), list(n["outputs"]), n.get("attrs", {}))
            if not isinstance(node.name, str) or not isinstance(node.op, str):
                raise TypeError(f"node {i}: 'op' and 'name' must be strings")
            nodes.append(node)
        outputs = list(g["outputs"])
        opset = g["opset"]
    except (KeyError, TypeError) as exc:
        raise EIEFormatError(f"graph model file: malformed graph header ({exc.__class__.__name__}: {exc})") from None
    if not is_int(opset):
        raise EIEFormatError(f"graph model file: opset must be an integer, got {opset!r}")
    info = mf.meta.get("info", {})
    return GraphModel(nodes, inputs, outputs, constants, mf.layers, opset, meta=info if isinstance(info, dict) else {})


def _constants(const_keys, extra: dict) -> dict[str, np.ndarray]:
    """The header's constant table ({name: {"key", "shape"}}) resolved against the file's extra tensors."""
    if not isinstance(const_keys, dict):
        raise TypeError("'constants' must be an object")
    constants = {}
    for name, c in const_keys.items():
        key, shape = c["key"], c["shape"]
        if key not in extra:
            raise EIEFormatError(f"graph model file: constant {name!r} (tensor 'extra.{key}') is missing")
        arr = extra[key]
        if not (isinstance(shape, list) and len(shape) <= 32 and all(is_int(d) and 0 <= d <= 1 << 40 for d in shape)) \
                or arr.size != math.prod(shape):  # Python integers: a product cannot wrap around int64 and match
            raise EIEFormatError(f"graph model file: constant {name!r} holds {arr.size} values, its shape says {shape!r}")
        constants[name] = arr.reshape(shape)
    return constants
