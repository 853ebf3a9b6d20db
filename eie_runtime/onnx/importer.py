"""ONNX model -> :class:`~eie_runtime.graph.GraphModel` with compressed EIE layers.

Reads the model (:func:`~eie_runtime.onnx.reader.load_onnx`: checker, shape
inference), folds the constant sub-graphs exporters emit (``Constant``,
``Shape`` of constants, ``Transpose`` of initializers...), and turns

- ``Gemm`` (every attribute: ``transA``, ``transB``, ``alpha``, ``beta``; bias
  ``C`` of any broadcastable shape) and ``MatMul`` with a constant 2-D weight
  (a following ``Add`` of a constant bias vector folded in) into ``Linear``
  nodes over EIE layers;
- ``LSTM`` (forward / reverse / bidirectional, ``layout`` 0 and 1, initial
  states, sequence lengths) into the executor's ``LSTM`` node over
  :func:`~eie_runtime.converters.lstm.compress_lstm`'s matrices, after
  permuting ONNX's gate order (i, o, f, c) to torch's (i, f, g, o). ``clip``,
  peepholes (a non-zero ``P``), ``input_forget`` and non-default activations
  are refused by name.

With ``lossless=True`` no weight is pruned or shared: ``Gemm``/``MatMul``
become ``DenseLinear`` nodes and LSTM cells keep dense float32 matrices
(ONNX's conformance tests need exact weights; a 4-bit codebook cannot hold them).
"""

from __future__ import annotations

import numpy as np
from onnx import numpy_helper
from tqdm import tqdm

from ..converters.compress import as_weight_matrix, check_n_pe, compress_matrix
from ..converters.lstm import LSTMDirectionWeights, compress_lstm, lstm_matrix
from ..converters.prune import check_density
from ..converters.weight_sharing import check_bits
from ..errors import EIEFormatError, EIEInputError
from ..graph import ELEMENTARY_OPS, ONNX_DTYPES, GraphModel, Node, run_elementary
from .reader import constant_value, default_opset, input_spec, load_onnx, node_attrs, output_spec

LAYER_SOURCE_OPS = ("Gemm", "MatMul", "LSTM")
SUPPORTED_OPS = ELEMENTARY_OPS + LAYER_SOURCE_OPS + ("Constant",)
# ONNX LSTM gate blocks are (i, o, f, c); torch's (i, f, g=c, o) takes blocks 0, 2, 3, 1.
ONNX_TO_TORCH_GATES = (0, 2, 3, 1)
_DEFAULT_ACTS = ("sigmoid", "tanh", "tanh")


def _settings(name: str, density, bits, overrides: dict) -> tuple[float, int]:
    o = overrides.get(name)
    if o is None:
        return density, bits
    if isinstance(o, dict):
        unknown = set(o) - {"density", "bits"}
        if unknown:
            raise EIEInputError(f"layer override for {name!r}: unknown keys {sorted(unknown)} (use density, bits)")
        return check_density(o.get("density", density)), check_bits(o.get("bits", bits))
    return check_density(o), bits


# ------------------------------------------------------------------ convert
class _Importer:
    def __init__(self, model, *, density, bits, n_pe, seed, overrides, lossless, progress):
        self.model = model
        self.graph = model.graph
        self.opset = default_opset(model)
        self.density, self.bits, self.n_pe, self.seed = density, bits, n_pe, seed
        self.overrides = overrides
        self.lossless = lossless
        self.progress = progress
        self.consts: dict[str, np.ndarray] = {}
        for init in self.graph.initializer:
            try:
                self.consts[init.name] = numpy_helper.to_array(init)
            except Exception as exc:
                raise EIEFormatError(f"initializer {init.name!r} cannot be read: {exc}") from None
        self.nodes: list[Node] = []
        self.layers = []
        self.shapes = {vi.name: vi for vi in list(self.graph.value_info) + list(self.graph.input)}
        self.skip: set[int] = set()  # indices of ONNX nodes folded into an earlier one

    # -- names
    def _node_names(self) -> list[str]:
        names, seen = [], set()
        for i, n in enumerate(self.graph.node):
            name = n.name or f"{n.op_type}_{i}"
            while name in seen:
                name += f"_{i}"
            seen.add(name)
            names.append(name)
        return names

    def _const(self, node_name, op, tensor, what) -> np.ndarray:
        if tensor not in self.consts:
            raise EIEInputError(f"node {node_name!r} ({op}): input {tensor!r} ({what}) is computed at run time, "
                                "but EIE compresses constant weights only: make it an initializer")
        return self.consts[tensor]

    def _check_features(self, name: str, op: str, tensor: str, axis: int, k: int) -> None:
        """Refuse early when shape inference knows the input's feature count and it disagrees with the weight."""
        vi = self.shapes.get(tensor)
        if vi is None or vi.type.WhichOneof("value") != "tensor_type" or not vi.type.tensor_type.HasField("shape"):
            return
        dims = vi.type.tensor_type.shape.dim
        if dims and -len(dims) <= axis < len(dims) and dims[axis].HasField("dim_value") and dims[axis].dim_value != k:
            raise EIEInputError(f"node {name!r} ({op}): input {tensor!r} has {dims[axis].dim_value} features "
                                f"(axis {axis}), but weight B expects {k}")

    def run(self) -> GraphModel:
        g = self.graph
        names = self._node_names()
        self._refuse_unsupported(names)
        layer_names = [names[i] for i, n in enumerate(g.node) if n.op_type in LAYER_SOURCE_OPS]
        unknown = set(self.overrides) - set(layer_names)
        if unknown:
            raise EIEInputError(f"layer overrides name unknown layer node(s) {sorted(unknown)}; "
                                f"the model's layer nodes are {layer_names}")
        consumers: dict[str, list[int]] = {}
        for i, n in enumerate(g.node):
            for t in n.input:
                consumers.setdefault(t, []).append(i)
        graph_outputs = [o.name for o in g.output]
        bar = _progress(len(layer_names), self.progress)
        try:
            for i, n in enumerate(g.node):
                if i in self.skip:
                    continue
                name = names[i]
                attrs = node_attrs(n)
                if n.op_type == "Constant":
                    self.consts[n.output[0]] = constant_value(n, attrs)
                elif n.op_type in ELEMENTARY_OPS:
                    self._elementary(n, name, attrs)
                else:
                    if n.op_type == "Gemm":
                        self._gemm(n, name, attrs)
                    elif n.op_type == "MatMul":
                        self._matmul(i, n, name, consumers, graph_outputs)
                    else:
                        self._lstm(n, name, attrs)
                    bar.update(1)
        finally:
            bar.close()
        inits = {t.name for t in g.initializer}  # old IR versions list initializers as inputs too
        inputs = [input_spec(vi) for vi in g.input if vi.name not in inits]
        nodes, consts = _prune_dead(self.nodes, self.consts, graph_outputs)
        meta = {"opset": self.opset, "density": self.density, "bits": self.bits, "n_pe": self.n_pe,
                "seed": self.seed, "lossless": self.lossless, "layer_overrides": self.overrides,
                "outputs": [output_spec(o) for o in g.output]}
        return GraphModel(nodes, inputs, graph_outputs, consts, self.layers, self.opset, meta=meta)

    def _refuse_unsupported(self, names):
        bad: dict[str, list[str]] = {}
        for name, n in zip(names, self.graph.node):
            if n.domain not in ("", "ai.onnx") or n.op_type not in SUPPORTED_OPS:
                key = n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}"
                bad.setdefault(key, []).append(name)
        if bad:
            listing = "; ".join(f"{op} ({', '.join(repr(x) for x in v)})" for op, v in sorted(bad.items()))
            raise EIEFormatError(f"the model uses ops this runtime does not support: {listing}. "
                                 f"Supported: {', '.join(SUPPORTED_OPS)}")

    # -- elementary ops: fold when every input is a constant, else emit
    def _elementary(self, n, name, attrs):
        if n.op_type == "ConstantOfShape" and "value" in attrs:
            v = np.asarray(attrs["value"]).reshape(-1)
            if v.size != 1 or str(v.dtype) not in ONNX_DTYPES.values():  # else IndexError, AttributeError later
                raise EIEFormatError(f"node {name!r} (ConstantOfShape): attribute 'value' must be one number of a "
                                     f"supported type, got {v.size} value(s) of {v.dtype}")
            attrs = {"value": [v[0].item()], "dtype": str(v.dtype)}
        if n.op_type == "Cast" and attrs.get("to") not in ONNX_DTYPES:
            raise EIEFormatError(f"node {name!r} (Cast): target type {attrs.get('to')} is not supported")
        attrs = {k: v for k, v in attrs.items() if not isinstance(v, np.ndarray)}
        ins = list(n.input)
        if all((not t) or t in self.consts for t in ins) and ins:
            args = [self.consts[t] if t else None for t in ins]
            try:
                outs = run_elementary(n.op_type, args, attrs, self.opset)
            except (EIEInputError, ValueError, IndexError) as exc:
                raise EIEFormatError(f"node {name!r} ({n.op_type}): constant folding failed: {exc}") from None
            for o, v in zip(n.output, outs):
                self.consts[o] = np.asarray(v)
            return
        self.nodes.append(Node(n.op_type, name, ins, list(n.output), attrs))

    # -- layers
    def _linear(self, name, x, out, w, bias):
        """Append a Linear (or lossless DenseLinear) node computing ``x @ w.T + bias``."""
        w = np.ascontiguousarray(as_weight_matrix(w, f"node {name!r} weight"), dtype=np.float32)
        if self.lossless:
            wname = f"eie::{name}.weight"
            self.consts[wname] = w
            attrs = {"weight": wname, "bias": None}
            if bias is not None:
                attrs["bias"] = f"eie::{name}.bias"
                self.consts[attrs["bias"]] = np.asarray(bias, dtype=np.float32)
            self.nodes.append(Node("DenseLinear", name, [x], [out], attrs))
            return
        density, bits = _settings(name, self.density, self.bits, self.overrides)
        layer = compress_matrix(w, density=density, bits=bits, n_pe=self.n_pe, bias=bias, seed=self.seed, name=name)
        self.layers.append(layer)
        self.nodes.append(Node("Linear", name, [x], [out], {"layer": len(self.layers) - 1}))

    def _gemm(self, n, name, a):
        alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
        x = n.input[0]
        if a.get("transA", 0):
            x_t = f"eie::{name}.A_T"
            self.nodes.append(Node("Transpose", f"{name}.transA", [x], [x_t], {"perm": [1, 0]}))
            x = x_t
        b = self._const(name, "Gemm", n.input[1], "weight B")
        if b.ndim != 2:
            raise EIEInputError(f"node {name!r} (Gemm): weight B must be 2-D, got shape {b.shape}")
        w = b if a.get("transB", 0) else b.T  # (N, K)
        self._check_features(name, "Gemm", n.input[0], 0 if a.get("transA", 0) else 1, w.shape[1])
        if alpha != 1.0:
            w = (w * np.float32(alpha)).astype(np.float32)
        n_out = w.shape[0]
        c_name = n.input[2] if len(n.input) > 2 else ""
        bias, post = None, None
        if c_name and c_name in self.consts:
            c = self.consts[c_name].astype(np.float32) * np.float32(beta)
            if c.size == 1 or (c.ndim <= 2 and c.shape[-1] == n_out and c.size == n_out):
                bias = np.broadcast_to(c.reshape(-1), (n_out,)).astype(np.float32)
            else:  # a (M, N) or (M, 1) bias depends on the batch: add it after the layer
                post = f"eie::{name}.C"
                self.consts[post] = c
        elif c_name:  # bias computed at run time
            post = c_name
            if beta != 1.0:
                scaled = f"eie::{name}.betaC"
                self.consts[f"eie::{name}.beta"] = np.asarray(beta, dtype=np.float32)
                self.nodes.append(Node("Mul", f"{name}.beta", [c_name, f"eie::{name}.beta"], [scaled]))
                post = scaled
        out = n.output[0]
        if post is None:
            self._linear(name, x, out, w, bias)
        else:
            mid = f"eie::{name}.AB"
            self._linear(name, x, mid, w, bias)
            self.nodes.append(Node("Add", f"{name}.C", [mid, post], [out]))

    def _matmul(self, i, n, name, consumers, graph_outputs):
        b = self._const(name, "MatMul", n.input[1], "weight B")
        if b.ndim != 2:
            raise EIEInputError(f"node {name!r} (MatMul): weight B must be a 2-D matrix to become an EIE layer, "
                                f"got shape {b.shape}")
        self._check_features(name, "MatMul", n.input[0], -1, b.shape[0])
        out, bias = n.output[0], None
        users = consumers.get(out, [])
        if len(users) == 1 and out not in graph_outputs:
            j = users[0]
            add = self.graph.node[j]
            if add.op_type == "Add" and add.domain in ("", "ai.onnx"):
                other = add.input[1] if add.input[0] == out else add.input[0]
                c = self.consts.get(other)
                if c is not None and c.dtype.kind == "f" and c.shape == (b.shape[1],):
                    bias, out = c.astype(np.float32), add.output[0]
                    self.skip.add(j)
        self._linear(name, n.input[0], out, b.T, bias)

    def _lstm(self, n, name, a):
        where = f"node {name!r} (LSTM)"
        if "clip" in a:
            raise EIEInputError(f"{where}: attribute 'clip' (cell clipping) is not supported")
        if a.get("input_forget", 0):
            raise EIEInputError(f"{where}: attribute 'input_forget' = 1 (coupled input-forget gate) is not supported")
        direction = a.get("direction", "forward")
        nd = 2 if direction == "bidirectional" else 1
        acts = [s.lower() for s in a.get("activations", list(_DEFAULT_ACTS) * nd)]
        if acts != list(_DEFAULT_ACTS) * nd or "activation_alpha" in a or "activation_beta" in a:
            raise EIEInputError(f"{where}: only the default activations (Sigmoid, Tanh, Tanh) are supported, "
                                f"got {a.get('activations')}")
        ins = list(n.input) + [""] * (8 - len(n.input))
        w = self._const(name, "LSTM", ins[1], "weight W")
        r = self._const(name, "LSTM", ins[2], "recurrence weight R")
        bias = self._const(name, "LSTM", ins[3], "bias B") if ins[3] else None
        if ins[7]:
            p = self._const(name, "LSTM", ins[7], "peephole weight P")
            if np.any(p != 0):
                raise EIEInputError(f"{where}: peepholes (input P) are not supported: EIE's one-matrix LSTM step "
                                    "has no term for the cell state")
        if w.ndim != 3 or w.shape[0] != nd or w.shape[1] % 4:
            raise EIEInputError(f"{where}: W has shape {w.shape}, expected ({nd}, 4*hidden_size, input_size)")
        hs = w.shape[1] // 4
        if a.get("hidden_size", hs) != hs:
            raise EIEInputError(f"{where}: hidden_size {a['hidden_size']} disagrees with W's {w.shape[1]} rows (4*{hs})")
        if r.shape != (nd, 4 * hs, hs):
            raise EIEInputError(f"{where}: R has shape {r.shape}, expected {(nd, 4 * hs, hs)}")
        if bias is not None and bias.shape != (nd, 8 * hs):
            raise EIEInputError(f"{where}: B has shape {bias.shape}, expected {(nd, 8 * hs)}")

        def gates(m):  # reorder ONNX's (i, o, f, c) row blocks into torch's (i, f, g, o)
            return np.concatenate([m[k * hs:(k + 1) * hs] for k in ONNX_TO_TORCH_GATES]).astype(np.float32)

        dirs = []
        for d in range(nd):
            b_ih = gates(bias[d, :4 * hs]) if bias is not None else None
            b_hh = gates(bias[d, 4 * hs:]) if bias is not None else None
            dirs.append(LSTMDirectionWeights(w_ih=gates(w[d]), w_hh=gates(r[d]), b_ih=b_ih, b_hh=b_hh))
        attrs = {"hidden_size": hs, "direction": direction, "layout": int(a.get("layout", 0))}
        if self.lossless:
            attrs["dense_cells"] = []
            for d, dw in enumerate(dirs):
                cname = f"eie::{name}.cell{d}"
                self.consts[cname] = lstm_matrix(dw)
                attrs["dense_cells"].append(cname)
        else:
            density, bits = _settings(name, self.density, self.bits, self.overrides)
            core = compress_lstm([dirs], density=density, bits=bits, n_pe=self.n_pe, seed=self.seed, name=name)
            attrs["cells"] = []
            for cell in core.cells[0]:
                self.layers.append(cell)
                attrs["cells"].append(len(self.layers) - 1)
        inputs = [ins[0], ins[4], ins[5], ins[6]]
        while inputs and not inputs[-1]:
            inputs.pop()
        self.nodes.append(Node("LSTM", name, inputs, list(n.output), attrs))


def _prune_dead(nodes: list[Node], consts: dict, outputs: list[str]):
    """Drop nodes and constants no graph output depends on."""
    need = set(outputs)
    kept = []
    for node in reversed(nodes):
        if any(o in need for o in node.outputs if o):
            kept.append(node)
            need.update(t for t in node.inputs if t)
            for key in ("weight", "bias"):
                if node.attrs.get(key):
                    need.add(node.attrs[key])
            need.update(node.attrs.get("dense_cells", []))
    kept.reverse()
    return kept, {k: v for k, v in consts.items() if k in need}


class _NoBar:
    def update(self, n=1):
        pass

    def close(self):
        pass


def _progress(total: int, enabled: bool):
    if not enabled or total == 0:
        return _NoBar()
    return tqdm(total=total, desc="compressing layers", unit="layer")


def import_onnx(src, *, density: float = 0.1, bits: int = 4, n_pe: int = 64, seed: int = 0,
                layer_overrides: dict | None = None, lossless: bool = False, progress: bool = False) -> GraphModel:
    """Convert an ONNX model (path, bytes or ``ModelProto``) into a :class:`GraphModel`.

    ``layer_overrides`` maps a layer node's name to a density, or to
    ``{"density": ..., "bits": ...}``. ``lossless=True`` keeps exact float32
    weights (no pruning, no sharing; ``density``/``bits`` are ignored).
    """
    n_pe = check_n_pe(n_pe)
    if not lossless:
        density, bits = check_density(density), check_bits(bits)
    overrides = dict(layer_overrides or {})
    model = load_onnx(src)
    imp = _Importer(model, density=density, bits=bits, n_pe=n_pe, seed=seed, overrides=overrides,
                    lossless=lossless, progress=progress)
    gm = imp.run()
    if not isinstance(src, (bytes, bytearray)) and not hasattr(src, "graph"):
        gm.meta["source"] = str(src)
    return gm
