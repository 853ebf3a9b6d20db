"""ONNX model -> the same ONNX model with its compressible nodes as EIE-domain nodes.

Every ``Gemm`` and ``MatMul`` with a constant 2-D float32 weight (a following
``Add`` of a constant bias that leaves the shape as it is and a following
``Relu`` folded in; a constant first input, ``W @ X``, becomes ``Transpose``
nodes around the layer) becomes an ``EIELinear`` node; every ``LSTM``/``GRU``
with constant weights and the default activations becomes an ``EIELSTM``/
``EIEGRU`` node (:mod:`eie_runtime.onnx.nodes`). Nodes
inside ``If``/``Loop``/``Scan`` bodies are converted too; the weights may live
in an enclosing graph. Every other node stays as it was, and so does a node
whose weight is computed at run time (attention's ``MatMul``) or that EIE
cannot express (LSTM peepholes, ``clip``, other activations): each such node
is listed with its reason in the conversion summary.

The result is deterministic: the same input and settings give the same bytes.
"""

from __future__ import annotations

import re
from collections import ChainMap

import numpy as np
import onnx
from onnx import helper, numpy_helper
from tqdm import tqdm

from ..converters.compress import check_n_pe, compress_matrix
from ..converters.lstm import LSTMDirectionWeights, check_lstm_bias, compress_lstm, lstm_matrix
from ..converters.prune import check_density
from ..converters.weight_sharing import check_bits, check_init
from ..errors import EIEFormatError, EIEInputError
from . import nodes as N
from .reader import load_onnx
# node_reads, subgraphs and unique_node_names are re-exported: other modules import them from here
from .walk import (_all_graphs, _drop_unused, _Folder, initializers_as_inputs, node_reads,  # noqa: F401
                   standard_form, subgraphs, unique_node_names, value_ranks)

SOURCE_OPS = ("Gemm", "MatMul", "LSTM", "GRU")
ONNX_TO_TORCH_GATES = (0, 2, 3, 1)  # ONNX LSTM gates (i, o, f, c) -> (i, f, g, o)
ONNX_TO_TORCH_GRU = (1, 0, 2)  # ONNX GRU gates (z, r, h) -> torch's (r, z, n)
_DEFAULT_ACTS = ("sigmoid", "tanh", "tanh")
#: Constant node attributes whose value the converter reads (None: a tensor) and their numpy types
_CONSTANT_FORMS = {"value": None, "value_float": np.float32, "value_floats": np.float32, "value_int": np.int64,
                   "value_ints": np.int64}


class _Keep(Exception):
    """The node stays an ONNX node (the message says why)."""


def _settings(name, ctx):
    o = ctx.overrides.get(name)
    if o is None:
        return ctx.density, ctx.bits
    if isinstance(o, dict):
        unknown = set(o) - {"density", "bits"}
        if unknown:
            raise EIEInputError(f"layer override for {name!r}: unknown keys {sorted(unknown)} (use density, bits)")
        return check_density(o.get("density", ctx.density)), check_bits(o.get("bits", ctx.bits))
    return check_density(o), ctx.bits


class _Ctx:
    def __init__(self, density, bits, n_pe, seed, overrides, lossless, bar, taken):
        self.density, self.bits, self.n_pe, self.seed = density, bits, n_pe, seed
        self.overrides, self.lossless, self.bar = overrides, lossless, bar
        self.taken = {t.split(".")[0] for t in taken}  # new names are PREFIX.suffix with a PREFIX unused here
        self.count = 0
        self.rows: list[dict] = []
        self.consumed: set = set()  # weight names the converted nodes read (and constants folded into them)
        self.opsets: list = []
        self.init, self.lstm_bias = "linear", "shared"  # codebook initialisation; LSTM/GRU bias kept dense or not
        self.ranks: list = []  # per graph, value name -> rank (walk.value_ranks)
        self.graphs_seen = 0
        self.node_names: set = set()  # every node name of the model (new nodes get names none has)

    def node_name(self, base: str) -> str:
        """A node name no node of the model has yet (``base``, else ``base_1``, ...); reserved from now on."""
        name, k = base, 0
        while name in self.node_names:
            k += 1
            name = f"{base}_{k}"
        self.node_names.add(name)
        return name

    def prefix(self, name: str) -> str:
        self.count += 1
        base = re.sub(r"[^A-Za-z0-9_/:-]", "_", name) or "node"
        p = f"eie{self.count}:{base}"
        while p in self.taken:
            p += "_"
        self.taken.add(p)
        return p


def _row(ctx, name, op, layers, note=""):
    for lay in layers:
        if isinstance(lay, np.ndarray):
            ctx.rows.append({"node": name, "op": op, "shape": f"{lay.shape[0]}x{lay.shape[1]}", "density": 1.0,
                             "bits": 32, "bytes": lay.nbytes, "ratio": 1.0, "note": note or "lossless"})
        else:
            s = lay.matrix.stats()
            ctx.rows.append({"node": name, "op": op, "shape": f"{s.shape[0]}x{s.shape[1]}",
                             "density": round(s.density, 4), "bits": lay.matrix.bits, "bytes": s.nbytes,
                             "ratio": round(s.compression_ratio, 1), "note": note})


def _weight(consts, name, node_name, op, what) -> np.ndarray:
    if not name or name not in consts:
        raise _Keep(f"{what} is computed at run time")
    w = consts[name]
    if w.dtype != np.float32:
        raise _Keep(f"{what} is {w.dtype}, EIE layers hold float32 weights")
    if not np.isfinite(w).all():
        raise _Keep(f"{what} holds NaN or Inf, which no codebook holds")
    return w


class _GraphConverter:
    def __init__(self, graph, outer: ChainMap, ctx: _Ctx, outer_ranks: ChainMap | None = None):
        self.g, self.ctx = graph, ctx
        local = {}
        for t in graph.initializer:
            try:
                local[t.name] = numpy_helper.to_array(t)
            except Exception as exc:
                raise EIEFormatError(f"initializer {t.name!r} cannot be read: {exc}") from None
        for n in graph.node:
            if n.op_type == "Constant" and n.domain in ("", "ai.onnx") and len(n.attribute) == 1 \
                    and n.attribute[0].name in _CONSTANT_FORMS:
                v = helper.get_attribute_value(n.attribute[0])
                kind = _CONSTANT_FORMS[n.attribute[0].name]
                local[n.output[0]] = numpy_helper.to_array(v) if kind is None else np.asarray(v, kind)
        self.consts = outer.new_child(local)
        # the ranks of this graph's values, then of the enclosing graphs' (bodies are visited in _all_graphs order)
        self.ranks = (outer_ranks if outer_ranks is not None else ChainMap()).new_child(
            ctx.ranks[ctx.graphs_seen] if ctx.graphs_seen < len(ctx.ranks) else {})
        ctx.graphs_seen += 1
        self.folded = _Folder(graph, self.consts, ctx)
        self.readers: dict[str, int] = {}
        for n in graph.node:
            for t in node_reads(n):
                self.readers[t] = self.readers.get(t, 0) + 1
        self.outputs = {o.name for o in graph.output}
        self.producer = {o: n for n in graph.node for o in n.output}
        self.new_inits: list = []

    def _single_reader(self, value: str, op: str):
        """The node that alone reads ``value`` if it is a default-domain ``op`` node, else None."""
        if value in self.outputs or self.readers.get(value, 0) != 1:
            return None
        for n in self.g.node:
            if value in n.input:
                return n if n.op_type == op and n.domain in ("", "ai.onnx") and not any(n is s for s in self.skip) else None
        return None

    def run(self):
        self.skip: list = []
        out = []
        for node in self.g.node:
            if any(node is s for s in self.skip):
                continue
            for sub in subgraphs(node):
                _GraphConverter(sub, self.consts, self.ctx, self.ranks).run()
            if node.domain in ("", "ai.onnx") and node.op_type in SOURCE_OPS:
                name = node.name or self.ctx.node_name(node.op_type)
                try:
                    made = getattr(self, "_" + node.op_type.lower())(node, name)
                except _Keep as why:
                    self.ctx.rows.append({"node": name, "op": node.op_type, "shape": "-", "density": "-",
                                          "bits": "-", "bytes": "-", "ratio": "-", "note": f"kept: {why}"})
                    made = [node]
                self.ctx.bar.update(1)
                out.extend(made)
            else:
                out.append(node)
        del self.g.node[:]
        self.g.node.extend(out)
        self.g.initializer.extend(self.new_inits)

    # -- helpers
    def _emit(self, name, x, y, w, bias):
        """EIE node(s) for ``y = x @ w.T + bias``, folding a following Relu."""
        relu = self._single_reader(y, "Relu")
        act = None
        if relu is not None:
            self.skip.append(relu)
            act, y = "relu", relu.output[0]
        prefix = self.ctx.prefix(name)
        if self.ctx.lossless:
            node, inits = N.dense_linear_node(name, x, y, w, bias, prefix, act)
            _row(self.ctx, name, N.DENSE_LINEAR, [w])
        else:
            density, bits = _settings(name, self.ctx)
            layer = compress_matrix(np.ascontiguousarray(w, np.float32), density=density, bits=bits,
                                    n_pe=self.ctx.n_pe, bias=bias, activation=act, seed=self.ctx.seed, name=name,
                                    init=self.ctx.init)
            node, inits = N.linear_node(name, x, y, layer, prefix)
            _row(self.ctx, name, N.LINEAR, [layer])
        self.new_inits.extend(inits)
        return node

    def _gemm(self, n, name):
        a = {x.name: helper.get_attribute_value(x) for x in n.attribute}
        alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
        self.folded.fold(n.input[1:3])
        b = _weight(self.consts, n.input[1], name, "Gemm", "weight B")
        if b.ndim != 2:
            raise _Keep(f"weight B has shape {b.shape}")
        w = b if a.get("transB", 0) else b.T
        if alpha != 1.0:
            w = (w * np.float32(alpha)).astype(np.float32)
        made, x = [], n.input[0]
        if a.get("transA", 0):
            x = f"{self.ctx.prefix(name)}.A_T"
            made.append(helper.make_node("Transpose", [n.input[0]], [x], name=self.ctx.node_name(f"{name}/transA"),
                                         perm=[1, 0]))
        c_name = n.input[2] if len(n.input) > 2 else ""
        bias, post, m = None, None, w.shape[0]
        if c_name and c_name in self.consts:
            c = self.consts[c_name].astype(np.float32) * np.float32(beta)
            if (c.size == 1 or (c.ndim <= 2 and c.size == m and c.shape[-1] == m)) and np.isfinite(c).all():
                bias = np.broadcast_to(c.reshape(-1), (m,)).astype(np.float32)
            else:
                post = f"{self.ctx.prefix(name)}.C"
                self.new_inits.append(numpy_helper.from_array(c, post))
        elif c_name:
            post = c_name
            if beta != 1.0:
                p = self.ctx.prefix(name)
                self.new_inits.append(numpy_helper.from_array(np.asarray(beta, np.float32), f"{p}.beta"))
                made.append(helper.make_node("Mul", [c_name, f"{p}.beta"], [f"{p}.betaC"],
                                             name=self.ctx.node_name(f"{name}/beta")))
                post = f"{p}.betaC"
        self.ctx.consumed.update(t for t in n.input[1:3] if t)
        if post is None:
            made.append(self._emit(name, x, n.output[0], w, bias))
        else:
            mid = f"{self.ctx.prefix(name)}.AB"
            made.append(self._emit_plain(name, x, mid, w, bias))
            made.append(helper.make_node("Add", [mid, post], [n.output[0]], name=self.ctx.node_name(f"{name}/C")))
        return made

    def _emit_plain(self, name, x, y, w, bias):
        saved, self._single_reader = self._single_reader, lambda *_: None
        try:
            return self._emit(name, x, y, w, bias)
        finally:
            self._single_reader = saved

    def _matmul(self, n, name):
        self.folded.fold(n.input[1:2])
        if n.input[1] not in self.consts:
            self.folded.fold(n.input[0:1])
            if n.input[0] in self.consts:
                return self._matmul_left(n, name)
        b = _weight(self.consts, n.input[1], name, "MatMul", "weight B")
        if b.ndim > 2 and b.size == b.shape[-2] * b.shape[-1] and self.ranks.get(n.input[0], 0) >= b.ndim:
            b = b.reshape(b.shape[-2:])  # (1, ..., K, N): the same product when X has at least as many axes
        if b.ndim != 2:
            raise _Keep(f"weight B has shape {b.shape}, not a 2-D matrix")
        out, bias = n.output[0], None
        add = self._single_reader(out, "Add")
        if add is not None:
            other = add.input[1] if add.input[0] == out else add.input[0]
            self.folded.fold([other])  # a bias behind a constant chain (Cast from float16, Unsqueeze, ...)
            c = self.consts.get(other)
            if c is not None and c.dtype == np.float32 and self._row_bias(c, b.shape[1], n.input[0]) \
                    and np.isfinite(c).all():  # EIE biases are finite: an Inf/NaN one stays onnxruntime's Add
                bias, out = np.broadcast_to(c.reshape(-1), (b.shape[1],)).astype(np.float32), add.output[0]
                self.skip.append(add)
                self.ctx.consumed.add(other)
        self.ctx.consumed.add(n.input[1])
        return [self._emit(name, n.input[0], out, b.T, bias)]

    def _row_bias(self, c, m: int, x: str) -> bool:
        """Whether adding constant ``c`` to ``x @ W`` (``m`` columns) only adds a bias row (the shape stays)."""
        if c.size not in (1, m) or (c.ndim and c.shape[-1] != c.size):
            return False
        return c.ndim <= 1 or c.ndim <= self.ranks.get(x, 0)  # a longer shape would add leading axes

    def _matmul_left(self, n, name):
        """``W @ X`` with a constant 2-D ``W``: ``x @ W^T`` over X's second-to-last axis (Transposes around)."""
        w = _weight(self.consts, n.input[0], name, "MatMul", "weight A (the first input)")
        if w.ndim != 2:
            raise _Keep(f"weight A (the first input) has shape {w.shape}, not a 2-D matrix")
        x, rank = n.input[1], self.ranks.get(n.input[1])
        if rank is None:
            raise _Keep(f"W @ X with a constant W: the rank of {x!r} is unknown (shape inference could not tell)")
        self.ctx.consumed.add(n.input[0])
        if rank == 1:  # W @ x = x @ W^T
            return [self._emit(name, x, n.output[0], w, None)]
        perm = list(range(rank - 2)) + [rank - 1, rank - 2]
        out, bias, m = n.output[0], None, w.shape[0]
        add = self._single_reader(out, "Add")  # a column bias (M, 1) is a row bias of the transposed product
        if add is not None:
            other = add.input[1] if add.input[0] == out else add.input[0]
            self.folded.fold([other])
            c = self.consts.get(other)
            if c is not None and c.dtype == np.float32 and 2 <= c.ndim <= rank and c.size == m \
                    and c.shape[-2:] == (m, 1) and np.isfinite(c).all():
                bias, out = c.reshape(m), add.output[0]
                self.skip.append(add)
                self.ctx.consumed.add(other)
        p = self.ctx.prefix(name)
        node_xt, node_yt = self.ctx.node_name(f"{name}/XT"), self.ctx.node_name(f"{name}/YT")
        return [helper.make_node("Transpose", [x], [f"{p}.XT"], name=node_xt, perm=perm),
                self._emit_plain(name, f"{p}.XT", f"{p}.YT", w, bias),
                helper.make_node("Transpose", [f"{p}.YT"], [out], name=node_yt, perm=perm)]

    def _lstm(self, n, name):
        a = {x.name: helper.get_attribute_value(x) for x in n.attribute}
        if "clip" in a:
            raise _Keep("cell clipping ('clip') has no EIE form")
        if a.get("input_forget", 0):
            raise _Keep("input_forget=1 has no EIE form")
        direction = a.get("direction", b"forward")
        direction = direction.decode() if isinstance(direction, bytes) else direction
        nd = 2 if direction == "bidirectional" else 1
        acts = [s.decode().lower() if isinstance(s, bytes) else s.lower() for s in a.get("activations", [])]
        if acts and acts != list(_DEFAULT_ACTS) * nd:  # Sigmoid and Tanh take no activation_alpha/beta
            raise _Keep(f"activations {acts} are not the default (Sigmoid, Tanh, Tanh)")
        ins = list(n.input) + [""] * (8 - len(n.input))
        self.folded.fold([ins[1], ins[2], ins[3], ins[7]])
        w = _weight(self.consts, ins[1], name, "LSTM", "weight W")
        r = _weight(self.consts, ins[2], name, "LSTM", "recurrence R")
        bias = _weight(self.consts, ins[3], name, "LSTM", "bias B") if ins[3] else None
        if ins[7]:
            p = _weight(self.consts, ins[7], name, "LSTM", "peepholes P")
            if np.any(p != 0):
                raise _Keep("peepholes (non-zero P): EIE's one-matrix step has no cell-state term")
        if w.ndim != 3 or w.shape[0] != nd or w.shape[1] % 4:
            raise EIEFormatError(f"node {name!r} (LSTM): W has shape {w.shape}, expected ({nd}, 4*hidden, input)")
        hs = w.shape[1] // 4
        if r.shape != (nd, 4 * hs, hs) or (bias is not None and bias.shape != (nd, 8 * hs)):
            raise EIEFormatError(f"node {name!r} (LSTM): R {r.shape} / B {None if bias is None else bias.shape} "
                                 f"disagree with W {w.shape}")

        def gates(m):
            return np.concatenate([m[k * hs:(k + 1) * hs] for k in ONNX_TO_TORCH_GATES]).astype(np.float32)

        dirs = [LSTMDirectionWeights(w_ih=gates(w[d]), w_hh=gates(r[d]),
                                     b_ih=gates(bias[d, :4 * hs]) if bias is not None else None,
                                     b_hh=gates(bias[d, 4 * hs:]) if bias is not None else None) for d in range(nd)]
        if self.ctx.lossless:
            cells = [lstm_matrix(dw) for dw in dirs]
        else:
            density, bits = _settings(name, self.ctx)
            cells = compress_lstm([dirs], density=density, bits=bits, n_pe=self.ctx.n_pe, seed=self.ctx.seed,
                                  name=name, init=self.ctx.init, bias=self.ctx.lstm_bias).cells[0]
        self.ctx.consumed.update(t for t in (ins[1], ins[2], ins[3], ins[7]) if t)
        node, inits = N.lstm_node(name, [ins[0], ins[4], ins[5], ins[6]], list(n.output), cells, hidden_size=hs,
                                  direction=direction, layout=int(a.get("layout", 0)), prefix=self.ctx.prefix(name))
        _row(self.ctx, name, N.LSTM, cells)
        self.new_inits.extend(inits)
        return [node]


def _gru(self, n, name):
    """ONNX GRU -> EIEGRU over eie_runtime.gru.EIEGRUCore (both linear_before_reset forms)."""
    from ..converters.gru import GRUDirectionWeights, compress_gru, gru_matrices

    a = {x.name: helper.get_attribute_value(x) for x in n.attribute}
    if "clip" in a:
        raise _Keep("cell clipping ('clip') has no EIE form")
    direction = a.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    nd = 2 if direction == "bidirectional" else 1
    acts = [s.decode().lower() if isinstance(s, bytes) else s.lower() for s in a.get("activations", [])]
    if acts and acts != ["sigmoid", "tanh"] * nd:  # Sigmoid and Tanh take no activation_alpha/beta
        raise _Keep(f"activations {acts} are not the default (Sigmoid, Tanh)")
    ins = list(n.input) + [""] * (6 - len(n.input))
    self.folded.fold([ins[1], ins[2], ins[3]])
    w = _weight(self.consts, ins[1], name, "GRU", "weight W")
    r = _weight(self.consts, ins[2], name, "GRU", "recurrence R")
    bias = _weight(self.consts, ins[3], name, "GRU", "bias B") if ins[3] else None
    if w.ndim != 3 or w.shape[0] != nd or w.shape[1] % 3:
        raise EIEFormatError(f"node {name!r} (GRU): W has shape {w.shape}, expected ({nd}, 3*hidden, input)")
    hs = w.shape[1] // 3
    if r.shape != (nd, 3 * hs, hs) or (bias is not None and bias.shape != (nd, 6 * hs)):
        raise EIEFormatError(f"node {name!r} (GRU): R {r.shape} / B {None if bias is None else bias.shape} "
                             f"disagree with W {w.shape}")

    def gates(m):
        return np.concatenate([m[k * hs:(k + 1) * hs] for k in ONNX_TO_TORCH_GRU]).astype(np.float32)

    lbr = bool(a.get("linear_before_reset", 0))
    dirs = [GRUDirectionWeights(w_ih=gates(w[d]), w_hh=gates(r[d]),
                                b_ih=gates(bias[d, :3 * hs]) if bias is not None else None,
                                b_hh=gates(bias[d, 3 * hs:]) if bias is not None else None) for d in range(nd)]
    if self.ctx.lossless:
        cells = [gru_matrices(dw, lbr) for dw in dirs]
        flat = [m for c in cells for m in c]
    else:
        density, bits = _settings(name, self.ctx)
        cells = compress_gru([dirs], density=density, bits=bits, n_pe=self.ctx.n_pe, seed=self.ctx.seed, name=name,
                             linear_before_reset=lbr, **_quality_kw(compress_gru, self.ctx)).cells[0]
        flat = [m for c in cells for m in c]
    self.ctx.consumed.update(t for t in (ins[1], ins[2], ins[3]) if t)
    node, inits = N.gru_node(name, [ins[0], ins[4], ins[5]], list(n.output), cells, hidden_size=hs,
                             direction=direction, layout=int(a.get("layout", 0)), linear_before_reset=lbr,
                             prefix=self.ctx.prefix(name))
    _row(self.ctx, name, N.GRU, flat)
    self.new_inits.extend(inits)
    return [node]


_GraphConverter._gru = _gru


def _quality_kw(fn, ctx) -> dict:
    """``init``/``bias`` for a recurrent converter, each only if it takes it (converters.gru gained them later)."""
    import inspect

    params = inspect.signature(fn).parameters
    kw = {}
    for key, value, default in (("init", ctx.init, "linear"), ("bias", ctx.lstm_bias, "shared")):
        if key in params:
            kw[key] = value
        elif value != default:
            raise EIEInputError(f"{fn.__module__}.{fn.__name__} takes no {key!r}: convert with the default {default!r}")
    return kw


def _count_layers(graph) -> tuple[int, list]:
    names = [n.name for g in _all_graphs(graph) for n in g.node
             if n.domain in ("", "ai.onnx") and n.op_type in SOURCE_OPS]
    return len(names), names


def convert_model(src, *, density: float = 0.1, bits: int = 4, n_pe: int = 64, seed: int = 0,
                  layer_overrides: dict | None = None, lossless: bool = False, progress: bool = False,
                  check: bool = True, init: str = "linear", lstm_bias: str = "shared"):
    """Convert an ONNX model (path, bytes or ModelProto); returns ``(ModelProto, summary rows)``.

    ``init``: the k-means codebook initialisation (``converters.weight_sharing.INITS``); ``lstm_bias``:
    ``"shared"`` prunes and shares the LSTM/GRU bias columns with the weights (the paper's form), ``"dense"``
    keeps them exact in float32 beside the matrices."""
    n_pe = check_n_pe(n_pe)
    init, lstm_bias = check_init(init), check_lstm_bias(lstm_bias)
    if not lossless:
        density, bits = check_density(density), check_bits(bits)
    where = str(src) if not hasattr(src, "graph") and not isinstance(src, (bytes, bytearray)) else "model"
    model = onnx.ModelProto()
    model.CopyFrom(load_onnx(src, infer_shapes=False))
    if any(op.domain == N.DOMAIN for op in model.opset_import):
        raise EIEInputError(f"{where}: already converted (imports the {N.DOMAIN} domain)")
    model = standard_form(model, where)  # layers inside model-local functions become visible
    renames = unique_node_names(model)
    total, names = _count_layers(model.graph)
    overrides = dict(layer_overrides or {})
    unknown = set(overrides) - set(names)
    if unknown:
        raise EIEInputError(f"layer overrides name unknown layer node(s) {sorted(unknown)}; "
                            f"the model's layer nodes are {sorted(set(names))}")
    taken = {t for g in _all_graphs(model.graph) for n in g.node for t in list(n.input) + list(n.output)}
    taken |= {t.name for g in _all_graphs(model.graph) for t in g.initializer}
    bar = tqdm(total=total, desc="compressing layers", unit="layer", disable=not progress or total == 0)
    ctx = _Ctx(density, bits, n_pe, seed, overrides, lossless, bar, taken)
    ctx.opsets = list(model.opset_import)
    ctx.init, ctx.lstm_bias = init, lstm_bias
    ctx.node_names = {n.name for g in _all_graphs(model.graph) for n in g.node if n.name}
    if any(n.op_type == "MatMul" for g in _all_graphs(model.graph) for n in g.node):
        ctx.ranks = value_ranks(model)
    try:
        _GraphConverter(model.graph, ChainMap(), ctx).run()
    finally:
        bar.close()
    _drop_unused(model, ctx.consumed)
    initializers_as_inputs(model)
    if ctx.count:
        model.opset_import.append(helper.make_opsetid(N.DOMAIN, N.DOMAIN_VERSION))
    if check:  # onnxruntime loads what it will run (an LSTM with layout=1 it refuses may have become EIE's)
        from .session import InferenceSession

        InferenceSession(model, where=where)
    for old, new in renames:
        ctx.rows.append({"node": new, "op": "-", "shape": "-", "density": "-", "bits": "-", "bytes": "-", "ratio": "-",
                         "note": f"renamed from {old!r}: another node has that name (onnxruntime needs unique names)"})
    return model, ctx.rows
