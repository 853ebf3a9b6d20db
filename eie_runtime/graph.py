"""A small numpy graph executor for converted ONNX models (floor 2: no onnx, no torch).

A :class:`GraphModel` is a list of :class:`Node` in topological order over
named tensors. The compute-heavy nodes are EIE layers:

- ``Linear``: ``y = x W^T + b`` over the last axis of ``x`` with an
  :class:`~eie_runtime.EIELinear` (attribute ``layer``: index into ``layers``);
- ``DenseLinear``: the same with exact float32 weights kept as constants
  (attributes ``weight``, ``bias``). Only the lossless conversion mode makes
  these: a 4-bit codebook cannot hold arbitrary weights;
- ``LSTM``: ONNX's LSTM node (any direction, ``layout`` 0/1, initial states,
  sequence lengths) run by :class:`~eie_runtime.lstm.EIELSTMCore`, one EIE
  matrix per direction (attribute ``cells``: layer indices, or
  ``dense_cells``: constant names in lossless mode).

Everything else is one of :data:`ELEMENTARY_OPS`, with ONNX's semantics at the
graph's ``opset``. Models save to ``.eie`` (kind ``"graph"``): the graph in the
JSON header, layers and constants as safetensors tensors; loading validates
the graph before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import EIEFormatError, EIEInputError
from .layer import MODES, EIELinear
from .lstm import EIELSTMCore, _sigmoid

#: ONNX ops the executor runs besides the EIE layers (``Constant`` nodes become constants on import).
ELEMENTARY_OPS = ("Relu", "Sigmoid", "Tanh", "Softmax", "Add", "Mul", "Flatten", "Reshape", "Transpose",
                  "Identity", "Concat", "Squeeze", "Unsqueeze", "Gather", "Shape", "Expand",
                  "ConstantOfShape", "Cast", "Slice")
LAYER_OPS = ("Linear", "DenseLinear", "LSTM")
# (fewest, most) inputs of each elementary op; the first input is always required
_ARITY = {"Relu": (1, 1), "Sigmoid": (1, 1), "Tanh": (1, 1), "Softmax": (1, 1), "Add": (2, 2), "Mul": (2, 2),
          "Flatten": (1, 1), "Reshape": (1, 2), "Transpose": (1, 1), "Identity": (1, 1), "Concat": (1, 1 << 16),
          "Squeeze": (1, 2), "Unsqueeze": (1, 2), "Gather": (2, 2), "Shape": (1, 1), "Expand": (2, 2),
          "ConstantOfShape": (1, 1), "Cast": (1, 1), "Slice": (1, 5), "Linear": (1, 1), "DenseLinear": (1, 1),
          "LSTM": (1, 4)}
_INT_ATTRS = ("axis", "allowzero", "start", "end", "to", "layer", "hidden_size", "layout")
_INT_LIST_ATTRS = ("perm", "axes", "starts", "ends", "shape")
GRAPH_VERSION = 1

#: ONNX TensorProto data type codes -> numpy dtypes (the tensor types the executor handles).
ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
               9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64"}


@dataclass
class Node:
    """One graph node: ``op`` over named ``inputs`` ("" = absent optional input) to ``outputs``."""

    op: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"op": self.op, "name": self.name, "inputs": self.inputs, "outputs": self.outputs, "attrs": self.attrs}


@dataclass
class TensorSpec:
    """A graph input: name, numpy dtype name, shape (an int per fixed axis, None per free one)."""

    name: str
    dtype: str
    shape: list | None = None  # None: rank unknown

    def to_dict(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": self.shape}


class DenseCell:
    """An exact float32 matrix with EIELinear's call signature (lossless mode's LSTM cells)."""

    def __init__(self, weight: np.ndarray, name: str):
        self.weight = np.ascontiguousarray(weight, dtype=np.float32)
        self.name = name

    @property
    def shape(self) -> tuple[int, int]:
        return self.weight.shape

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    def __call__(self, x, mode: str = "float32") -> np.ndarray:
        if mode != "float32":
            raise EIEInputError(f"layer {self.name!r} was converted losslessly (dense float32 weights) "
                                f"and runs in float32 mode only, not {mode!r}")
        return np.asarray(x, dtype=np.float32) @ self.weight.T


class GraphModel:
    """A converted model: run it with ``model(x)`` or ``model.run({name: array})``.

    Parameters
    ----------
    nodes : list[Node]
        Topologically ordered.
    inputs : list[TensorSpec]
        Run-time inputs (initializers are ``constants``).
    outputs : list[str]
    constants : dict[str, np.ndarray]
    layers : list[EIELinear]
        Referenced by ``Linear`` and ``LSTM`` nodes.
    opset : int
        The ONNX default-domain opset the node semantics follow.
    meta : dict, optional
        Free-form JSON-able provenance (source file, conversion settings).
    """

    def __init__(self, nodes, inputs, outputs, constants, layers, opset: int, meta: dict | None = None):
        self.nodes = list(nodes)
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.constants = dict(constants)
        self.layers = list(layers)
        self.opset = int(opset)
        self.meta = dict(meta or {})
        self._lstm_cache: dict[str, list[EIELSTMCore]] = {}
        check_graph(self)

    # ----------------------------------------------------------------- info
    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.inputs]

    def layer_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.op in LAYER_OPS]

    def __repr__(self) -> str:
        return (f"GraphModel({len(self.nodes)} nodes, {len(self.layers)} EIE layers, inputs={self.input_names}, "
                f"outputs={self.outputs}, opset={self.opset})")

    def summary(self) -> list[dict]:
        """One row per EIE layer: node, shape, density, bits, stored entries, bytes."""
        rows = []
        owner = {}
        for n in self.nodes:
            for i in _layer_indices(n):
                owner[i] = n.name
        for i, layer in enumerate(self.layers):
            s = layer.matrix.stats()
            rows.append({"node": owner.get(i, "-"), "layer": layer.name, "shape": f"{s.shape[0]}x{s.shape[1]}",
                         "n_pe": s.n_pe, "density": round(s.density, 4), "bits": layer.matrix.bits,
                         "stored": s.stored_entries, "padding": s.padding_entries, "bytes": s.nbytes,
                         "ratio": round(s.compression_ratio, 1)})
        for n in self.nodes:
            if n.op == "DenseLinear" or (n.op == "LSTM" and "dense_cells" in n.attrs):
                names = [n.attrs["weight"]] if n.op == "DenseLinear" else n.attrs["dense_cells"]
                for c in names:
                    w = self.constants[c]
                    rows.append({"node": n.name, "layer": "(dense, lossless)", "shape": f"{w.shape[0]}x{w.shape[1]}",
                                 "n_pe": "-", "density": round(float(np.count_nonzero(w)) / max(1, w.size), 4),
                                 "bits": 32, "stored": w.size, "padding": 0, "bytes": w.nbytes, "ratio": 1.0})
        return rows

    # ------------------------------------------------------------------ run
    def __call__(self, *args, mode: str = "float32", **kwargs):
        """``model(x)`` or ``model(x1, x2)`` (positional, in input order) or ``model(name=x)``.

        Returns the single output, or a tuple of outputs in graph order.
        """
        if len(args) > len(self.inputs):
            raise EIEInputError(f"the model takes {len(self.inputs)} input(s) {self.input_names}, got {len(args)}")
        feeds = dict(zip(self.input_names, args))
        feeds.update(kwargs)
        out = self.run(feeds, mode=mode)
        vals = tuple(out[o] for o in self.outputs)
        return vals[0] if len(vals) == 1 else vals

    def run(self, feeds: dict, mode: str = "float32") -> dict[str, np.ndarray]:
        """Run the graph on ``feeds`` (input name -> array); return {output name: array}."""
        if mode not in MODES:
            raise EIEInputError(f"mode must be one of {MODES}, got {mode!r}")
        env = dict(self.constants)
        known = set(self.input_names)
        for key in feeds:
            if key not in known:
                raise EIEInputError(f"unknown input {key!r}; the model's inputs are {self.input_names}")
        for spec in self.inputs:
            if spec.name not in feeds:
                raise EIEInputError(f"missing input {spec.name!r} (dtype {spec.dtype}, shape {_shape_str(spec.shape)})")
            env[spec.name] = _check_feed(spec, feeds[spec.name])
        for node in self.nodes:
            args = [env[i] if i else None for i in node.inputs]
            try:
                results = self._run_node(node, args, mode)
            except EIEInputError as exc:
                raise EIEInputError(f"node {node.name!r} ({node.op}): {exc}") from None
            except (ValueError, IndexError, TypeError, AttributeError, KeyError) as exc:  # numpy's shape errors etc.
                raise EIEInputError(f"node {node.name!r} ({node.op}) failed on inputs of shapes "
                                    f"{[None if a is None else a.shape for a in args]}: {exc}") from None
            for name, val in zip(node.outputs, results):
                if name:
                    env[name] = val
        return {o: env[o] for o in self.outputs}

    def _run_node(self, node: Node, args: list, mode: str) -> list:
        a = node.attrs
        if node.op == "Linear":
            return [_apply_last_axis(lambda x2: self.layers[a["layer"]](x2, mode=mode), args[0], node)]
        if node.op == "DenseLinear":
            if mode != "float32":
                raise EIEInputError("was converted losslessly (dense float32 weights) and runs in float32 mode only")
            w = self.constants[a["weight"]]
            b = self.constants[a["bias"]] if a.get("bias") else None
            return [_apply_last_axis(lambda x2: x2 @ w.T + (0 if b is None else b), args[0], node)]
        if node.op == "LSTM":
            return self._run_lstm(node, args, mode)
        return run_elementary(node.op, args, a, self.opset)

    def _lstm_cores(self, node: Node) -> list[EIELSTMCore]:
        cores = self._lstm_cache.get(node.name)
        if cores is None:
            h = node.attrs["hidden_size"]
            if "cells" in node.attrs:
                cells = [self.layers[i] for i in node.attrs["cells"]]
            else:
                cells = [DenseCell(self.constants[c], f"{node.name}.{d}") for d, c in enumerate(node.attrs["dense_cells"])]
            cores = [EIELSTMCore([[c]], h) for c in cells]
            self._lstm_cache[node.name] = cores
        return cores

    def _run_lstm(self, node: Node, args: list, mode: str) -> list:
        x, seq_lens, h0, c0 = (args + [None] * 4)[:4]
        a = node.attrs
        layout, hs = a["layout"], a["hidden_size"]
        cores = self._lstm_cores(node)
        nd = len(cores)
        x = _float_input(x, "X")
        if x.ndim != 3:
            raise EIEInputError(f"input X must be 3-D, got shape {x.shape}")
        if layout == 1:
            x = x.transpose(1, 0, 2)
        t_len, batch, in_size = x.shape
        if in_size != cores[0].input_size:
            raise EIEInputError(f"input X has {in_size} features, the LSTM expects {cores[0].input_size}")
        states = []
        for s, what in ((h0, "initial_h"), (c0, "initial_c")):
            if s is None:
                states.append(np.zeros((nd, batch, hs), dtype=np.float32))
                continue
            s = _float_input(s, what)
            if layout == 1 and s.ndim == 3:
                s = s.transpose(1, 0, 2)
            if s.shape != (nd, batch, hs):
                want = (nd, batch, hs) if layout == 0 else (batch, nd, hs)
                raise EIEInputError(f"input {what} has shape {s.shape if layout == 0 else s.transpose(1, 0, 2).shape}, expected {want}")
            states.append(s)
        if seq_lens is None:
            lens = np.full(batch, t_len, dtype=np.int64)
        else:
            lens = np.asarray(seq_lens)
            if lens.dtype.kind not in "iu" or lens.shape != (batch,) or (lens < 0).any() or (lens > t_len).any():
                raise EIEInputError(f"input sequence_lens must be {batch} integers in [0, {t_len}], got {lens.dtype} {lens.shape}")
            lens = lens.astype(np.int64)
        reverse = [a["direction"] == "reverse"] if nd == 1 else [False, True]
        ys, hn, cn = [], [], []
        for d, core in enumerate(cores):
            xd = _reverse_by_length(x, lens) if reverse[d] else x
            y, h, c = core.forward(xd, states[0][d:d + 1], states[1][d:d + 1], seq_lens=lens, mode=mode)
            ys.append(_reverse_by_length(y, lens) if reverse[d] else y)
            hn.append(h[0])
            cn.append(c[0])
        y = np.stack(ys, axis=1)  # (T, D, B, H)
        h_n, c_n = np.stack(hn), np.stack(cn)  # (D, B, H)
        if layout == 1:
            y = y.transpose(2, 0, 1, 3)
            h_n, c_n = h_n.transpose(1, 0, 2), c_n.transpose(1, 0, 2)
        return [np.ascontiguousarray(y), np.ascontiguousarray(h_n), np.ascontiguousarray(c_n)]

    # -------------------------------------------------------------- fixed16
    def calibrate(self, feeds: dict, *, headroom: float = 1.25) -> None:
        """Set every EIE layer's fixed-point parameters from a float32 run on ``feeds`` (batched samples).

        ``Linear`` layers calibrate on the activations they actually see; LSTM
        cells on the ``[x_t; h_{t-1}; 1]`` vectors of every step.
        """
        seen: dict[int, list[np.ndarray]] = {}
        originals = {}
        for i, layer in enumerate(self.layers):
            originals[i] = layer.run_float32

            def record(x, _i=i, _f=layer.run_float32):
                arr = np.asarray(x, dtype=np.float32)
                seen.setdefault(_i, []).append(arr.reshape(-1, arr.shape[-1]))
                return _f(x)

            layer.run_float32 = record
        try:
            self.run(feeds, mode="float32")
        finally:
            for i, layer in enumerate(self.layers):
                del layer.run_float32  # back to the class's method
        for i, layer in enumerate(self.layers):
            if i not in seen:
                raise EIEInputError(f"layer {layer.name!r} saw no activations during calibration")
            layer.calibrate(np.concatenate(seen[i]), headroom=headroom)

    # ------------------------------------------------------------------ file
    def _eie_file_contents(self) -> dict:
        # shapes kept in the header too: the safetensors writer stores 0-d arrays as 1-d
        const_keys = {name: {"key": f"c{i}", "shape": list(arr.shape)} for i, (name, arr) in enumerate(self.constants.items())}
        header = {
            "version": GRAPH_VERSION,
            "opset": self.opset,
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": self.outputs,
            "nodes": [n.to_dict() for n in self.nodes],
            "constants": const_keys,
        }
        return {"layers": self.layers, "kind": "graph", "meta": {"graph": header, "info": self.meta},
                "extra": {c["key"]: self.constants[name] for name, c in const_keys.items()}}


# ---------------------------------------------------------------- validation
def _layer_indices(node: Node) -> list[int]:
    if node.op == "Linear":
        return [node.attrs.get("layer")]
    if node.op == "LSTM":
        return list(node.attrs.get("cells", []))
    return []


def check_graph(g: GraphModel) -> None:
    """Validate names, ops, attributes and layer references; raise EIEFormatError naming the node."""
    if not isinstance(g.opset, int) or g.opset < 1:
        raise EIEFormatError(f"graph opset must be a positive integer, got {g.opset!r}")
    for name, arr in g.constants.items():
        if not isinstance(arr, np.ndarray):
            raise EIEFormatError(f"constant {name!r} is a {type(arr).__name__}, not an array")
    for i, layer in enumerate(g.layers):
        if not isinstance(layer, EIELinear):
            raise EIEFormatError(f"layer {i} is a {type(layer).__name__}, not an EIELinear")
    defined = set(g.constants)
    for spec in g.inputs:
        if not isinstance(spec, TensorSpec) or not isinstance(spec.name, str) or not spec.name:
            raise EIEFormatError(f"graph input {spec!r} must be a TensorSpec with a name")
        try:
            np.dtype(spec.dtype)
        except TypeError:
            raise EIEFormatError(f"graph input {spec.name!r}: unknown dtype {spec.dtype!r}") from None
        if spec.shape is not None and not (isinstance(spec.shape, list) and all(
                d is None or (isinstance(d, int) and not isinstance(d, bool) and d >= 0) for d in spec.shape)):
            raise EIEFormatError(f"graph input {spec.name!r}: shape must be a list of non-negative ints or nulls")
        defined.add(spec.name)
    used_layers = set()
    for node in g.nodes:
        where = f"node {node.name!r} ({node.op})"
        if node.op not in ELEMENTARY_OPS + LAYER_OPS:
            raise EIEFormatError(f"{where}: unknown op")
        if not isinstance(node.attrs, dict):
            raise EIEFormatError(f"{where}: attrs must be an object")
        if not isinstance(node.inputs, list) or not isinstance(node.outputs, list):
            raise EIEFormatError(f"{where}: inputs and outputs must be lists")
        lo, hi = _ARITY[node.op]
        if not lo <= len(node.inputs) <= hi or not node.inputs[0] or len(node.outputs) < 1:
            raise EIEFormatError(f"{where}: takes {lo}..{hi} inputs (the first one required) and gives at least "
                                 f"one output, got inputs {node.inputs} and outputs {node.outputs}")
        if node.op not in ("LSTM",) and len(node.outputs) != 1:
            raise EIEFormatError(f"{where}: gives exactly one output, got {node.outputs}")
        for key, v in node.attrs.items():
            if key in _INT_ATTRS and (v is not None or key != "end") and not _is_int(v):
                raise EIEFormatError(f"{where}: attribute {key!r} must be an integer, got {v!r}")
            if key in _INT_LIST_ATTRS and not (isinstance(v, list) and all(_is_int(i) for i in v)):
                raise EIEFormatError(f"{where}: attribute {key!r} must be a list of integers, got {v!r}")
        for name in node.inputs:
            if not isinstance(name, str):
                raise EIEFormatError(f"{where}: input names must be strings")
            if name and name not in defined:
                raise EIEFormatError(f"{where}: input {name!r} is not produced by an earlier node, an input or a constant")
        _check_layer_node(g, node, where, used_layers)
        for name in node.outputs:
            if not isinstance(name, str):
                raise EIEFormatError(f"{where}: output names must be strings")
            if name:
                defined.add(name)
    for name in g.outputs:
        if name not in defined:
            raise EIEFormatError(f"graph output {name!r} is not produced by any node, input or constant")


def _check_layer_node(g: GraphModel, node: Node, where: str, used: set) -> None:
    a = node.attrs
    if node.op == "Linear":
        i = a.get("layer")
        if not isinstance(i, int) or not 0 <= i < len(g.layers):
            raise EIEFormatError(f"{where}: attribute 'layer' must index one of the {len(g.layers)} layers, got {i!r}")
        used.add(i)
    elif node.op == "DenseLinear":
        w = g.constants.get(a.get("weight"))
        if w is None or w.ndim != 2 or w.dtype != np.float32:
            raise EIEFormatError(f"{where}: attribute 'weight' must name a 2-D float32 constant")
        b = a.get("bias")
        if b is not None and (b not in g.constants or g.constants[b].shape != (w.shape[0],)):
            raise EIEFormatError(f"{where}: attribute 'bias' must name a constant of shape ({w.shape[0]},)")
    elif node.op == "LSTM":
        h = a.get("hidden_size")
        if not isinstance(h, int) or h < 1:
            raise EIEFormatError(f"{where}: attribute 'hidden_size' must be a positive integer")
        if a.get("layout") not in (0, 1) or a.get("direction") not in ("forward", "reverse", "bidirectional"):
            raise EIEFormatError(f"{where}: attributes 'layout' (0/1) and 'direction' are invalid")
        nd = 2 if a["direction"] == "bidirectional" else 1
        if "cells" in a:
            cells = a["cells"]
            if not (isinstance(cells, list) and len(cells) == nd and all(isinstance(i, int) and 0 <= i < len(g.layers) for i in cells)):
                raise EIEFormatError(f"{where}: attribute 'cells' must list {nd} layer index(es)")
            mats = [g.layers[i] for i in cells]
        else:
            cells = a.get("dense_cells")
            if not (isinstance(cells, list) and len(cells) == nd and all(c in g.constants for c in cells)):
                raise EIEFormatError(f"{where}: attribute 'cells' or 'dense_cells' must list {nd} matrix(es)")
            mats = [DenseCell(g.constants[c], c) for c in cells]
        if len(node.inputs) > 4 or len(node.outputs) > 3:
            raise EIEFormatError(f"{where}: takes X, sequence_lens, initial_h, initial_c and gives Y, Y_h, Y_c")
        try:
            shape = mats[0].shape
            if any(m.shape != shape for m in mats) or shape[0] != 4 * h or shape[1] < h + 2:
                raise EIEFormatError(f"matrices must all be (4*hidden_size, I + hidden_size + 1), got {[m.shape for m in mats]}")
            EIELSTMCore([[m] for m in mats[:1]], h)
        except EIEFormatError as exc:
            raise EIEFormatError(f"{where}: {exc}") from None


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _shape_str(shape) -> str:
    if shape is None:
        return "any"
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def _check_feed(spec: TensorSpec, value) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.dtype != np.dtype(spec.dtype):
        raise EIEInputError(f"input {spec.name!r} has dtype {arr.dtype}, expected {spec.dtype}")
    if spec.shape is not None:
        ok = arr.ndim == len(spec.shape) and all(d is None or d == n for d, n in zip(spec.shape, arr.shape))
        if not ok:
            raise EIEInputError(f"input {spec.name!r} has shape {arr.shape}, expected {_shape_str(spec.shape)}")
    return arr


def _float_input(x, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise EIEInputError(f"input {what} must be floating point, got {x.dtype}")
    return x.astype(np.float32, copy=False)


def _apply_last_axis(fn, x, node: Node) -> np.ndarray:
    x = _float_input(x, node.inputs[0])
    if x.ndim == 0:
        raise EIEInputError(f"input {node.inputs[0]!r} is a scalar; a layer needs at least 1 axis")
    lead = x.shape[:-1]
    y = fn(np.ascontiguousarray(x.reshape(-1, x.shape[-1])))
    return np.asarray(y, dtype=np.float32).reshape(*lead, y.shape[-1])


def _reverse_by_length(x: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Reverse each sample's first ``lens[b]`` steps of time-major ``x``; later steps stay put."""
    t_len = x.shape[0]
    t = np.arange(t_len)[:, None]
    src = np.where(t < lens[None, :], lens[None, :] - 1 - t, t)  # (T, B)
    return x[src, np.arange(x.shape[1])[None, :]]


# --------------------------------------------------------------- elementary
def _axis(axis: int, rank: int, what: str = "axis") -> int:
    if not -rank <= axis < max(rank, 1):
        raise EIEInputError(f"{what} {axis} is out of range for rank {rank}")
    return axis % max(rank, 1)


def _softmax(x, axis):
    x = _float_input(x, "input") if np.asarray(x).dtype.kind != "f" else np.asarray(x)
    m = np.max(x, axis=axis, keepdims=True)
    e = np.exp(x - m)
    return e / np.sum(e, axis=axis, keepdims=True)


def _ints(v, what: str) -> list[int]:
    arr = np.asarray(v)
    if arr.dtype.kind not in "iu":
        raise EIEInputError(f"{what} must be integers, got {arr.dtype}")
    return [int(i) for i in arr.reshape(-1)]


def _reshape(x, shape, allowzero: int):
    shape = _ints(shape, "shape")
    out = []
    for i, d in enumerate(shape):
        if d == 0 and not allowzero:
            if i >= x.ndim:
                raise EIEInputError(f"shape {shape}: 0 at axis {i} copies a dimension the input (rank {x.ndim}) lacks")
            out.append(x.shape[i])
        else:
            out.append(d)
    if out.count(-1) > 1:
        raise EIEInputError(f"shape {shape} has more than one -1")
    return x.reshape(out)


def _squeeze_axes(op, args, attrs, opset):
    if opset >= 13:
        return None if len(args) < 2 or args[1] is None else _ints(args[1], "axes")
    return attrs.get("axes")


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


def run_elementary(op: str, args: list, attrs: dict, opset: int) -> list:
    """Run one of :data:`ELEMENTARY_OPS` on numpy arrays with ONNX semantics at ``opset``."""
    x = args[0] if args else None
    if op == "Relu":
        return [np.maximum(x, np.zeros((), dtype=x.dtype))]
    if op == "Sigmoid":
        return [_sigmoid(np.asarray(x)).astype(x.dtype, copy=False)]
    if op == "Tanh":
        return [np.tanh(x)]
    if op == "Softmax":
        if opset < 13:  # coerce to 2-D at `axis` (default 1), softmax over the trailing block
            ax = _axis(attrs.get("axis", 1), x.ndim)
            flat = x.reshape(int(np.prod(x.shape[:ax], dtype=np.int64)), -1)
            return [_softmax(flat, 1).reshape(x.shape).astype(x.dtype, copy=False)]
        return [_softmax(x, _axis(attrs.get("axis", -1), x.ndim)).astype(x.dtype, copy=False)]
    if op in ("Add", "Mul"):
        a, b = np.asarray(args[0]), np.asarray(args[1])
        if a.dtype != b.dtype:
            raise EIEInputError(f"inputs have different dtypes {a.dtype} and {b.dtype}")
        with np.errstate(over="ignore"):  # integer wrap-around is ONNX's (and C's) semantics
            r = np.add(a, b) if op == "Add" else np.multiply(a, b)
        return [np.asarray(r, dtype=a.dtype)]
    if op == "Flatten":
        ax = attrs.get("axis", 1)
        if not -x.ndim <= ax <= x.ndim:
            raise EIEInputError(f"axis {ax} is out of range for rank {x.ndim}")
        if ax < 0:
            ax += x.ndim
        lead = int(np.prod(x.shape[:ax], dtype=np.int64))
        return [x.reshape(lead, int(np.prod(x.shape[ax:], dtype=np.int64)))]
    if op == "Reshape":
        shape = args[1] if opset >= 5 else np.asarray(attrs["shape"], dtype=np.int64)
        return [_reshape(x, shape, attrs.get("allowzero", 0))]
    if op == "Transpose":
        perm = attrs.get("perm", list(range(x.ndim))[::-1])
        return [np.transpose(x, perm).copy()]
    if op == "Identity":
        return [x]
    if op == "Concat":
        parts = [np.asarray(a) for a in args if a is not None]
        return [np.concatenate(parts, axis=_axis(attrs["axis"], parts[0].ndim))]
    if op == "Squeeze":
        axes = _squeeze_axes(op, args, attrs, opset)
        if axes is None:
            return [np.squeeze(x)]
        axes = tuple(_axis(a, x.ndim) for a in axes)
        if any(x.shape[a] != 1 for a in axes):
            raise EIEInputError(f"cannot squeeze axes {axes} of shape {x.shape}: not all of size 1")
        return [np.squeeze(x, axis=axes)]
    if op == "Unsqueeze":
        axes = _squeeze_axes(op, args, attrs, opset)
        if axes is None:
            raise EIEInputError("Unsqueeze needs axes")
        rank = np.ndim(x) + len(axes)
        axes = sorted(_axis(a, rank) for a in axes)
        out = np.asarray(x)
        for a in axes:
            out = np.expand_dims(out, a)
        return [out]
    if op == "Gather":
        ax = _axis(attrs.get("axis", 0), x.ndim)
        idx = np.asarray(args[1])
        if idx.dtype.kind not in "iu":
            raise EIEInputError(f"Gather indices must be integers, got {idx.dtype}")
        n = x.shape[ax]
        if ((idx < -n) | (idx >= n)).any():
            raise EIEInputError(f"Gather indices out of range [-{n}, {n - 1}]")
        return [np.take(x, np.where(idx < 0, idx + n, idx), axis=ax)]
    if op == "Shape":
        shape = np.asarray(np.shape(x), dtype=np.int64)
        start, end = attrs.get("start", 0), attrs.get("end", None)
        return [shape[slice(start, end)]]
    if op == "Expand":
        shape = tuple(_ints(args[1], "shape"))
        return [np.array(np.broadcast_to(x, np.broadcast_shapes(np.shape(x), shape)))]
    if op == "ConstantOfShape":
        shape = tuple(_ints(x, "shape"))
        value = np.asarray(attrs.get("value", [0.0]), dtype=attrs.get("dtype", "float32")).reshape(-1)
        return [np.full(shape, value[0], dtype=value.dtype)]
    if op == "Cast":
        to = attrs.get("to")
        if to not in ONNX_DTYPES:
            raise EIEInputError(f"Cast to ONNX type {to} is not supported (supported: {sorted(ONNX_DTYPES)})")
        return [np.asarray(x).astype(ONNX_DTYPES[to])]
    if op == "Slice":
        return [_slice(args, attrs, opset)]
    raise EIEInputError(f"op {op!r} is not supported by the executor")


# ---------------------------------------------------------------------- load
def model_from_file(mf) -> GraphModel:
    """Rebuild a :class:`GraphModel` from a validated ``.eie`` ModelFile of kind ``"graph"``."""
    g = mf.meta.get("graph") if isinstance(mf.meta, dict) else None
    if not isinstance(g, dict):
        raise EIEFormatError("graph model file: header meta lacks the 'graph' object")
    if g.get("version") != GRAPH_VERSION:
        raise EIEFormatError(f"graph model file: graph version {g.get('version')!r} is not supported (this build reads {GRAPH_VERSION})")
    try:
        const_keys = g["constants"]
        if not isinstance(const_keys, dict):
            raise TypeError("'constants' must be an object")
        constants = {}
        for name, c in const_keys.items():
            key, shape = c["key"], c["shape"]
            if key not in mf.extra:
                raise EIEFormatError(f"graph model file: constant {name!r} (tensor 'extra.{key}') is missing")
            arr = mf.extra[key]
            if not (isinstance(shape, list) and all(_is_int(d) and d >= 0 for d in shape)) \
                    or arr.size != int(np.prod(shape, dtype=np.int64)):
                raise EIEFormatError(f"graph model file: constant {name!r} holds {arr.size} values, its shape says {shape!r}")
            constants[name] = arr.reshape(shape)
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
    if isinstance(opset, bool) or not isinstance(opset, int):
        raise EIEFormatError(f"graph model file: opset must be an integer, got {opset!r}")
    info = mf.meta.get("info", {})
    return GraphModel(nodes, inputs, outputs, constants, mf.layers, opset, meta=info if isinstance(info, dict) else {})
