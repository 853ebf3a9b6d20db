"""The layer ops: ``Linear``, ``DenseLinear`` and ``LSTM``, each with its structural check.

They run on the model's EIE layers or its dense float32 constants, so their
functions take the model: ``run(model, node, args, mode)``.
"""

from __future__ import annotations

import numpy as np

from ..errors import EIEFormatError, EIEInputError
from ..lstm import EIELSTMCore
from .ir import DenseCell, Node, float_input
from .ops import INT, OPS, layer_op


# ------------------------------------------------------------------ helpers
def _apply_last_axis(fn, x, node: Node) -> np.ndarray:
    x = float_input(x, node.inputs[0])
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


def layer_indices(node: Node) -> list[int]:
    """Indices into the model's ``layers`` that ``node`` runs."""
    if node.op == "Linear":
        return [node.attrs.get("layer")]
    if node.op == "LSTM":
        return list(node.attrs.get("cells", []))
    return []


# ------------------------------------------------------------------- Linear
def _check_linear(g, node: Node, where: str, used: set) -> None:
    i = node.attrs.get("layer")
    if not isinstance(i, int) or not 0 <= i < len(g.layers):
        raise EIEFormatError(f"{where}: attribute 'layer' must index one of the {len(g.layers)} layers, got {i!r}")
    used.add(i)


@layer_op("Linear", arity=(1, 1), attrs={"layer": INT}, check=_check_linear)
def _run_linear(model, node: Node, args: list, mode: str) -> list:
    layer = model.layers[node.attrs["layer"]]
    return [_apply_last_axis(lambda x2: layer(x2, mode=mode), args[0], node)]


# -------------------------------------------------------------- DenseLinear
def _check_dense_linear(g, node: Node, where: str, used: set) -> None:
    a = node.attrs
    w = g.constants.get(a.get("weight"))
    if w is None or w.ndim != 2 or w.dtype != np.float32:
        raise EIEFormatError(f"{where}: attribute 'weight' must name a 2-D float32 constant")
    b = a.get("bias")
    if b is not None and (b not in g.constants or g.constants[b].shape != (w.shape[0],)):
        raise EIEFormatError(f"{where}: attribute 'bias' must name a constant of shape ({w.shape[0]},)")


@layer_op("DenseLinear", arity=(1, 1), check=_check_dense_linear)
def _run_dense_linear(model, node: Node, args: list, mode: str) -> list:
    if mode != "float32":
        raise EIEInputError("was converted losslessly (dense float32 weights) and runs in float32 mode only")
    w = model.constants[node.attrs["weight"]]
    b = model.constants[node.attrs["bias"]] if node.attrs.get("bias") else None
    return [_apply_last_axis(lambda x2: x2 @ w.T + (0 if b is None else b), args[0], node)]


# --------------------------------------------------------------------- LSTM
def _check_lstm(g, node: Node, where: str, used: set) -> None:
    a = node.attrs
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


def _lstm_cores(model, node: Node) -> list[EIELSTMCore]:
    """One core per direction, built on first use and kept in the model's cache.

    Keyed by the node object, never by its name: a file may give two nodes one name, and a cache by name
    would run the second with the first one's weights."""
    cached = model._lstm_cache.get(id(node))
    cores = cached[1] if cached is not None and cached[0] is node else None
    if cores is None:
        h = node.attrs["hidden_size"]
        if "cells" in node.attrs:
            cells = [model.layers[i] for i in node.attrs["cells"]]
        else:
            cells = [DenseCell(model.constants[c], f"{node.name}.{d}") for d, c in enumerate(node.attrs["dense_cells"])]
        cores = [EIELSTMCore([[c]], h) for c in cells]
        model._lstm_cache[id(node)] = (node, cores)  # the node kept too: its id is never reused meanwhile
    return cores


def _initial_states(h0, c0, nd: int, batch: int, hs: int, layout: int) -> list[np.ndarray]:
    states = []
    for s, what in ((h0, "initial_h"), (c0, "initial_c")):
        if s is None:
            states.append(np.zeros((nd, batch, hs), dtype=np.float32))
            continue
        s = float_input(s, what)
        if layout == 1 and s.ndim == 3:
            s = s.transpose(1, 0, 2)
        if s.shape != (nd, batch, hs):
            want = (nd, batch, hs) if layout == 0 else (batch, nd, hs)
            raise EIEInputError(f"input {what} has shape {s.shape if layout == 0 else s.transpose(1, 0, 2).shape}, expected {want}")
        states.append(s)
    return states


@layer_op("LSTM", arity=(1, 4), attrs={"hidden_size": INT, "layout": INT}, check=_check_lstm, multi_output=True)
def _run_lstm(model, node: Node, args: list, mode: str) -> list:
    x, seq_lens, h0, c0 = (args + [None] * 4)[:4]
    a = node.attrs
    layout, hs = a["layout"], a["hidden_size"]
    cores = _lstm_cores(model, node)
    nd = len(cores)
    x = float_input(x, "X")
    if x.ndim != 3:
        raise EIEInputError(f"input X must be 3-D, got shape {x.shape}")
    if layout == 1:
        x = x.transpose(1, 0, 2)
    t_len, batch, in_size = x.shape
    if in_size != cores[0].input_size:
        raise EIEInputError(f"input X has {in_size} features, the LSTM expects {cores[0].input_size}")
    states = _initial_states(h0, c0, nd, batch, hs, layout)
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


#: Ops that run the model's EIE layers (or, converted losslessly, its dense weights).
LAYER_OPS = tuple(name for name, spec in OPS.items() if spec.layer)
