"""The project's ONNX operators (domain :data:`DOMAIN`): how an EIE layer is stored in an ONNX node, and read back.

Three ops, each holding its arrays as initializers named by the node's inputs:

``EIELinear`` (inputs ``X, entries, ptr, codebook[, bias]``; output ``Y``)
    ``Y = act(X W^T + b)`` over the last axis of ``X``. ``entries`` uint8 (1 byte
    per stored entry: low nibble codebook index, high nibble zero run), ``ptr``
    int32/int64 ``(n_pe, K + 1)``, ``codebook`` float32 ``(2**bits,)`` with
    ``codebook[0] == 0``, ``bias`` float32 ``(M,)``. Attributes: ``out_features``
    (M), ``in_features`` (K), ``n_pe``, ``bits``, optional ``activation``
    (``"relu"``) and ``fixed`` (``[in_frac, w_frac, out_frac]`` for fixed16 mode).
``EIEDenseLinear`` (inputs ``X, W[, bias]``)
    The same with an exact float32 ``W (M, K)``: what lossless conversion makes
    (a 4-bit codebook cannot hold arbitrary weights); float32 mode only.
``EIELSTM`` (inputs ``X, sequence_lens, initial_h, initial_c`` then, per
    direction, ``entries, ptr, codebook`` or, with ``dense=1``, one float32
    matrix; outputs ``Y, Y_h, Y_c``)
    ONNX's LSTM (``direction``, ``layout``) with each direction's gates as one
    matrix ``(4H, I + H + 1)`` over ``[x_t; h_{t-1}; 1]`` in gate order
    i, f, g, o (:class:`~eie_runtime.lstm.EIELSTMCore`). Attributes:
    ``hidden_size``, ``input_size``, ``direction``, ``layout``, ``dense``,
    ``n_pe`` and ``bits`` (compressed), optional ``fixed`` (3 ints per direction).

:func:`decode_node` checks every field a kernel will trust (through
:class:`~eie_runtime.format.InterleavedCSC`'s full check) and raises
:class:`~eie_runtime.errors.EIEFormatError` naming the node.
"""

from __future__ import annotations

import numpy as np
from onnx import AttributeProto, helper, numpy_helper

from ..errors import EIEFormatError, EIEInputError
from ..fixed_point import FixedPointParams
from ..format import InterleavedCSC
from ..graph.ir import DenseCell
from ..graph.layer_ops import _initial_states
from ..layer import MODES, EIELinear
from ..lstm import EIELSTMCore
from ..model_file import LIMITS

#: The project's operator domain and its version.
DOMAIN, DOMAIN_VERSION = "ai.eie", 1
LINEAR, DENSE_LINEAR, LSTM, GRU = "EIELinear", "EIEDenseLinear", "EIELSTM", "EIEGRU"
EIE_OPS = (LINEAR, DENSE_LINEAR, LSTM, GRU)
#: how many leading inputs of each op are run-time data (the rest are weight initializers)
DATA_INPUTS = {LINEAR: 1, DENSE_LINEAR: 1, LSTM: 4, GRU: 3}


def is_eie(node) -> bool:
    return node.domain == DOMAIN


# ------------------------------------------------------------------ encode
def _ptr_array(ptr: np.ndarray) -> np.ndarray:
    return ptr.astype(np.int32) if ptr.size == 0 or ptr.max() < 2 ** 31 else ptr.astype(np.int64)


def _tensor(arr, name):
    return numpy_helper.from_array(np.ascontiguousarray(arr), name)


def matrix_initializers(matrix: InterleavedCSC, prefix: str) -> list:
    return [_tensor(matrix.entries, f"{prefix}.entries"), _tensor(_ptr_array(matrix.ptr), f"{prefix}.ptr"),
            _tensor(matrix.codebook.astype(np.float32), f"{prefix}.codebook")]


def linear_node(name: str, x: str, y: str, layer: EIELinear, prefix: str):
    """An ``EIELinear`` node and its initializers for ``layer``."""
    inits = matrix_initializers(layer.matrix, prefix)
    if layer.bias is not None:
        inits.append(_tensor(layer.bias, f"{prefix}.bias"))
    m, k = layer.shape
    attrs = {"out_features": m, "in_features": k, "n_pe": layer.matrix.n_pe, "bits": layer.matrix.bits}
    if layer.activation:
        attrs["activation"] = layer.activation
    node = helper.make_node(LINEAR, [x] + [t.name for t in inits], [y], name=name, domain=DOMAIN, **attrs)
    return node, inits


def dense_linear_node(name: str, x: str, y: str, w: np.ndarray, bias, prefix: str, activation=None):
    inits = [_tensor(w.astype(np.float32), f"{prefix}.weight")]
    if bias is not None:
        inits.append(_tensor(np.asarray(bias, np.float32), f"{prefix}.bias"))
    attrs = {"activation": activation} if activation else {}
    node = helper.make_node(DENSE_LINEAR, [x] + [t.name for t in inits], [y], name=name, domain=DOMAIN, **attrs)
    return node, inits


def lstm_node(name: str, data_inputs: list, outputs: list, cells: list, *, hidden_size: int, direction: str,
              layout: int, prefix: str):
    """An ``EIELSTM`` node; ``cells`` is one EIELinear (compressed) or float32 matrix (dense) per direction."""
    dense = not isinstance(cells[0], EIELinear)
    has_bias = not dense and any(c.bias is not None for c in cells)  # lstm_bias="dense": exact float32 biases
    inits = []
    for d, cell in enumerate(cells):
        if dense:
            inits.append(_tensor(np.asarray(cell, np.float32), f"{prefix}.d{d}.weight"))
        else:
            inits += matrix_initializers(cell.matrix, f"{prefix}.d{d}")
            if has_bias:
                inits.append(_tensor(_bias_or_zeros(cell), f"{prefix}.d{d}.bias"))
    in_size = (cells[0].shape[1] if dense else cells[0].in_features) - hidden_size - 1
    attrs = {"hidden_size": hidden_size, "input_size": in_size, "direction": direction, "layout": layout,
             "dense": int(dense)}
    if not dense:
        attrs.update(n_pe=cells[0].matrix.n_pe, bits=cells[0].matrix.bits)
    if has_bias:
        attrs["bias"] = 1
    ins = (list(data_inputs) + [""] * 4)[:4] + [t.name for t in inits]
    node = helper.make_node(LSTM, ins, list(outputs), name=name, domain=DOMAIN, **attrs)
    return node, inits


def gru_node(name: str, data_inputs: list, outputs: list, cells: list, *, hidden_size: int, direction: str,
             layout: int, linear_before_reset: bool, prefix: str):
    """An ``EIEGRU`` node; ``cells`` holds per direction (w_x, w_hrz, w_hn): EIELinear or float32 matrices."""
    dense = not isinstance(cells[0][0], EIELinear)
    # lstm_bias="dense": w_x's and w_hn's bias columns kept exact beside them (w_hrz has none)
    has_bias = not dense and any(m.bias is not None for mats in cells for m in mats)
    inits, n_pes = [], []
    for d, mats in enumerate(cells):
        for which, m in zip(("x", "hrz", "hn"), mats):
            if dense:
                inits.append(_tensor(np.asarray(m, np.float32), f"{prefix}.d{d}.{which}.weight"))
            else:
                inits += matrix_initializers(m.matrix, f"{prefix}.d{d}.{which}")
                n_pes.append(m.matrix.n_pe)
                if has_bias and which != "hrz":
                    inits.append(_tensor(_bias_or_zeros(m), f"{prefix}.d{d}.{which}.bias"))
    w_x = cells[0][0]
    in_size = (w_x.shape[1] if dense else w_x.in_features) - 1
    attrs = {"hidden_size": hidden_size, "input_size": in_size, "direction": direction, "layout": layout,
             "linear_before_reset": int(linear_before_reset), "dense": int(dense)}
    if not dense:
        attrs.update(n_pes=n_pes, bits=cells[0][0].matrix.bits)
    if has_bias:
        attrs["bias"] = 1
    ins = (list(data_inputs) + [""] * 3)[:3] + [t.name for t in inits]
    return helper.make_node(GRU, ins, list(outputs), name=name, domain=DOMAIN, **attrs), inits


def _bias_or_zeros(layer) -> np.ndarray:
    return np.asarray(layer.bias if layer.bias is not None else np.zeros(layer.out_features), np.float32)


def _dense_bias(consts, name, rows, where, what):
    b = _array(consts, name, where, f"{what}bias", (np.float32,), 1)
    if b.shape != (rows,) or not np.isfinite(b).all():
        raise EIEFormatError(f"{where}: {what}bias must be {rows} finite float32 values, got shape {b.shape}")
    return b


def set_fixed(node, params: list[FixedPointParams]) -> None:
    """Store fixed16 parameters (one per matrix) in the node's ``fixed`` attribute."""
    for i, a in enumerate(node.attribute):
        if a.name == "fixed":
            del node.attribute[i]
            break
    vals = [v for p in params for v in (p.in_frac, p.w_frac, p.out_frac)]
    node.attribute.append(helper.make_attribute("fixed", vals))


# ------------------------------------------------------------------ decode
_ATTRS = {
    LINEAR: {"out_features": "i", "in_features": "i", "n_pe": "i", "bits": "i", "activation": "s", "fixed": "ints"},
    DENSE_LINEAR: {"activation": "s"},
    LSTM: {"hidden_size": "i", "input_size": "i", "direction": "s", "layout": "i", "dense": "i", "n_pe": "i",
           "bits": "i", "fixed": "ints", "bias": "i"},
    GRU: {"hidden_size": "i", "input_size": "i", "direction": "s", "layout": "i", "dense": "i", "n_pes": "ints",
          "bits": "i", "fixed": "ints", "linear_before_reset": "i", "bias": "i"},
}
_KINDS = {"i": AttributeProto.INT, "s": AttributeProto.STRING, "ints": AttributeProto.INTS}


def _attrs(node, where: str) -> dict:
    spec = _ATTRS[node.op_type]
    out = {}
    for a in node.attribute:
        if a.name not in spec:
            raise EIEFormatError(f"{where}: unknown attribute {a.name!r} (expected {sorted(spec)})")
        if a.type != _KINDS[spec[a.name]]:
            raise EIEFormatError(f"{where}: attribute {a.name!r} has the wrong type")
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode("utf-8", "replace") if isinstance(v, bytes) else (list(v) if isinstance(v, list) else v)
    return out


def _need_int(a: dict, key: str, where: str, lo: int, hi: int) -> int:
    v = a.get(key)
    if not isinstance(v, int) or not lo <= v <= hi:
        raise EIEFormatError(f"{where}: attribute {key!r} must be an integer in [{lo}, {hi}], got {v!r}")
    return v


def _array(consts, name: str, where: str, what: str, dtypes, ndim: int) -> np.ndarray:
    if not name or name not in consts:
        raise EIEFormatError(f"{where}: input {what} ({name!r}) must be an initializer")
    arr = consts[name]
    if arr.dtype not in dtypes or arr.ndim != ndim:
        raise EIEFormatError(f"{where}: input {what} ({name!r}) must be a {ndim}-D array of "
                             f"{'/'.join(str(np.dtype(d)) for d in dtypes)}, got {arr.dtype} {arr.shape}")
    return arr


def _fixed(a: dict, n: int, where: str):
    f = a.get("fixed")
    if f is None:
        return [None] * n
    if len(f) != 3 * n:
        raise EIEFormatError(f"{where}: attribute 'fixed' must hold {3 * n} integers, got {len(f)}")
    try:
        return [FixedPointParams(*f[3 * i:3 * i + 3]) for i in range(n)]
    except (ValueError, TypeError) as exc:
        raise EIEFormatError(f"{where}: attribute 'fixed': {exc}") from None


def _matrix(consts, names, shape, a, where, what, n_pe=None) -> InterleavedCSC:
    if n_pe is None:
        n_pe = _need_int(a, "n_pe", where, 1, LIMITS["max_pe"])
    elif not isinstance(n_pe, int) or not 1 <= n_pe <= LIMITS["max_pe"]:
        raise EIEFormatError(f"{where}: {what}n_pe must be an integer in [1, {LIMITS['max_pe']}], got {n_pe!r}")
    bits = _need_int(a, "bits", where, 1, 4)
    entries = _array(consts, names[0], where, f"{what}entries", (np.uint8,), 1)
    ptr = _array(consts, names[1], where, f"{what}ptr", (np.int32, np.int64), 2)
    codebook = _array(consts, names[2], where, f"{what}codebook", (np.float32,), 1)
    if ptr.shape != (n_pe, shape[1] + 1):
        raise EIEFormatError(f"{where}: {what}ptr has shape {ptr.shape}, expected (n_pe, K + 1) = {(n_pe, shape[1] + 1)}")
    if codebook.shape != (1 << bits,):
        raise EIEFormatError(f"{where}: {what}codebook has {codebook.size} values, expected 2**bits = {1 << bits}")
    try:
        return InterleavedCSC(shape, n_pe, entries, ptr.astype(np.int64), codebook, check=True)
    except EIEFormatError as exc:
        raise EIEFormatError(f"{where}: {what}{exc}") from None


def _act(a, where):
    act = a.get("activation")
    if act not in (None, "relu"):
        raise EIEFormatError(f"{where}: attribute 'activation' must be 'relu' or absent, got {act!r}")
    return act


def _last_axis(fn, x, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.float32:
        raise EIEInputError(f"input {what!r} has dtype {x.dtype}, expected float32")
    if x.ndim == 0:
        raise EIEInputError(f"input {what!r} is a scalar; a layer needs at least 1 axis")
    lead = x.shape[:-1]
    y = fn(np.ascontiguousarray(x.reshape(-1, x.shape[-1])))
    return y.reshape(*lead, y.shape[-1])


class LinearKernel:
    """A decoded ``EIELinear`` / ``EIEDenseLinear`` node: ``run([x], mode) -> [y]``."""

    def __init__(self, layer, where: str, x_name: str):
        self.layer, self.where, self.x_name = layer, where, x_name
        self.layers = [layer] if isinstance(layer, EIELinear) else []

    def run(self, args, mode):
        layer = self.layer
        x = args[0]
        if x is None:
            raise EIEInputError(f"{self.where}: input X is missing")
        if x.shape[-1:] != (layer.in_features,):
            raise EIEInputError(f"{self.where}: input {self.x_name!r} has shape {x.shape}, the layer expects "
                                f"{layer.in_features} features on its last axis")
        return [_last_axis(lambda x2: layer(x2, mode=mode), x, self.x_name)]


class _DenseLayer(DenseCell):
    def __init__(self, w, bias, activation, name):
        super().__init__(w, name)
        self.bias, self.activation = bias, activation

    def __call__(self, x, mode="float32"):
        y = super().__call__(x, mode)
        if self.bias is not None:
            y += self.bias
        return np.maximum(y, 0) if self.activation == "relu" else y


class LSTMKernel:
    """A decoded ``EIELSTM`` (or ``EIEGRU``) node: ONNX's semantics over one core per direction."""

    gru = False

    def __init__(self, cores, a, where):
        self.cores, self.a, self.where = cores, a, where
        self.in_size = cores[0].input_size
        cells = [m for c in cores for m in (c.cells[0][0] if self.gru else (c.cells[0][0],))]
        self.layers = [m for m in cells if isinstance(m, EIELinear)]

    def run(self, args, mode):
        n = len(args)
        x = args[0] if n else None
        seq_lens = args[1] if n > 1 else None
        h0 = args[2] if n > 2 else None
        c0 = args[3] if n > 3 and not self.gru else None
        a = self.a
        layout, hs = a["layout"], a["hidden_size"]
        nd = len(self.cores)
        if mode not in MODES:
            raise EIEInputError(f"{self.where}: mode must be one of {MODES}, got {mode!r}")
        if x is None or x.dtype != np.float32 or x.ndim != 3:
            raise EIEInputError(f"{self.where}: input X must be a 3-D float32 array")
        if layout == 1:
            x = x.transpose(1, 0, 2)
        t_len, batch, in_size = x.shape
        if in_size != self.in_size:
            raise EIEInputError(f"{self.where}: input X has {in_size} features, the LSTM expects {self.in_size}")
        states = [h0, c0]
        if not (layout == 0 and _is_state(h0, nd, batch, hs) and _is_state(c0, nd, batch, hs)):
            try:  # converted, transposed, or refused with its reason
                states = [np.ascontiguousarray(st) for st in _initial_states(h0, c0, nd, batch, hs, layout)]
            except EIEInputError as exc:
                raise EIEInputError(f"{self.where}: {exc}") from None
            states = [None if given is None else st for given, st in zip((h0, c0), states)]
        lens = None  # None: every sample runs every step (the cores' own default)
        if seq_lens is not None:
            lens = np.asarray(seq_lens)
            if lens.dtype.kind not in "iu" or lens.shape != (batch,) or (lens < 0).any() or (lens > t_len).any():
                raise EIEInputError(f"{self.where}: sequence_lens must be {batch} integers in [0, {t_len}]")
            lens = np.ascontiguousarray(lens, dtype=np.int64)
        x = np.ascontiguousarray(x)
        reverse = (a["direction"] == "reverse",) if nd == 1 else (False, True)
        ys, hn, cn = [], [], []
        for d, core in enumerate(self.cores):  # the cores run the reverse direction from each sample's last step
            h0d = None if states[0] is None else states[0][d:d + 1]
            if self.gru:
                y, h = core.run_checked(x, h0d, lens, mode, reverse=reverse[d])
                c = h
            else:
                c0d = None if states[1] is None else states[1][d:d + 1]
                y, h, c = core.run_checked(x, h0d, c0d, lens, mode, reverse=reverse[d])
            ys.append(y)
            hn.append(h)
            cn.append(c)
        if nd == 1:  # views, not copies: a small LSTM's call is a few microseconds
            y, h_n, c_n = ys[0][:, None], hn[0], cn[0]
        else:
            y = np.stack(ys, axis=1)
            h_n, c_n = np.concatenate(hn), np.concatenate(cn)
        if lens is not None and not lens.all():  # onnxruntime's Y_h, Y_c of a zero-length sample: zeros
            empty = lens == 0
            h_n[:, empty] = 0.0
            c_n[:, empty] = 0.0
        if layout == 1:
            y, h_n, c_n = y.transpose(2, 0, 1, 3), h_n.transpose(1, 0, 2), c_n.transpose(1, 0, 2)
            y, h_n, c_n = np.ascontiguousarray(y), np.ascontiguousarray(h_n), np.ascontiguousarray(c_n)
        return [y, h_n] if self.gru else [y, h_n, c_n]


def _is_state(s, nd, batch, hs) -> bool:
    """``s`` absent or already a C-contiguous float32 (nd, batch, hs) array: used as it is."""
    return s is None or (type(s) is np.ndarray and s.dtype == np.float32 and s.shape == (nd, batch, hs)
                         and s.flags.c_contiguous)


class GRUKernel(LSTMKernel):
    gru = True


def decode_node(node, consts, where: str):
    """Check an EIE node and build its kernel; ``consts`` maps initializer names to arrays (scopes included)."""
    if node.op_type not in EIE_OPS:
        raise EIEFormatError(f"{where}: unknown op {DOMAIN}::{node.op_type} (known: {', '.join(EIE_OPS)})")
    a = _attrs(node, where)
    ins = list(node.input)
    if node.op_type == LINEAR:
        if len(ins) not in (4, 5) or len(node.output) != 1 or not ins[0]:
            raise EIEFormatError(f"{where}: takes X, entries, ptr, codebook[, bias] and gives one output")
        m = _need_int(a, "out_features", where, 1, LIMITS["max_dim"])
        k = _need_int(a, "in_features", where, 1, LIMITS["max_dim"])
        matrix = _matrix(consts, ins[1:4], (m, k), a, where, "")
        bias = None
        if len(ins) == 5 and ins[4]:
            bias = _array(consts, ins[4], where, "bias", (np.float32,), 1)
            if bias.shape != (m,) or not np.isfinite(bias).all():
                raise EIEFormatError(f"{where}: bias must be {m} finite float32 values, got shape {bias.shape}")
        fixed = _fixed(a, 1, where)[0]
        matrix.name = node.name
        return LinearKernel(EIELinear(matrix, bias=bias, activation=_act(a, where), fixed=fixed, name=node.name),
                            where, ins[0])
    if node.op_type == DENSE_LINEAR:
        if len(ins) not in (2, 3) or len(node.output) != 1 or not ins[0]:
            raise EIEFormatError(f"{where}: takes X, W[, bias] and gives one output")
        w = _array(consts, ins[1], where, "W", (np.float32,), 2)
        bias = _array(consts, ins[2], where, "bias", (np.float32,), 1) if len(ins) == 3 and ins[2] else None
        if bias is not None and bias.shape != (w.shape[0],):
            raise EIEFormatError(f"{where}: bias has shape {bias.shape}, expected ({w.shape[0]},)")
        return LinearKernel(_DenseLayer(w, bias, _act(a, where), node.name), where, ins[0])
    if node.op_type == GRU:
        return _decode_gru(node, a, ins, consts, where)
    # LSTM
    hs, isz, dense, has_bias, nd = _recurrent_attrs(a, where)
    per = 1 if dense else 3 + has_bias
    if len(ins) != 4 + per * nd or not ins[0] or len(node.output) > 3:
        raise EIEFormatError(f"{where}: takes X, sequence_lens, initial_h, initial_c and {per * nd} weight "
                             f"initializer(s), gives Y, Y_h, Y_c; got {len(ins)} inputs")
    shape = (4 * hs, isz + hs + 1)
    fixed = _fixed(a, nd, where)
    cells = []
    for d in range(nd):
        names = ins[4 + per * d: 4 + per * (d + 1)]
        if dense:
            w = _array(consts, names[0], where, f"direction {d} weight", (np.float32,), 2)
            if w.shape != shape:
                raise EIEFormatError(f"{where}: direction {d} weight has shape {w.shape}, expected {shape}")
            cells.append(DenseCell(w, f"{node.name}.d{d}"))
        else:
            mat = _matrix(consts, names[:3], shape, a, where, f"direction {d} ")
            mat.name = f"{node.name}.d{d}"
            bias = _dense_bias(consts, names[3], shape[0], where, f"direction {d} ") if has_bias else None
            cells.append(EIELinear(mat, bias=bias, fixed=fixed[d], name=mat.name))
    try:
        cores = [EIELSTMCore([[c]], hs) for c in cells]
    except EIEFormatError as exc:
        raise EIEFormatError(f"{where}: {exc}") from None
    return LSTMKernel(cores, a, where)


def _recurrent_attrs(a, where):
    """An EIELSTM/EIEGRU node's checked attributes: (hidden_size, input_size, dense, bias, directions)."""
    hs = _need_int(a, "hidden_size", where, 1, LIMITS["max_dim"])
    isz = _need_int(a, "input_size", where, 1, LIMITS["max_dim"])
    if a.get("direction") not in ("forward", "reverse", "bidirectional") or a.get("layout") not in (0, 1):
        raise EIEFormatError(f"{where}: attributes 'direction' (forward/reverse/bidirectional) and 'layout' (0/1) "
                             "are required")
    dense = _need_int(a, "dense", where, 0, 1)
    has_bias = _need_int(a, "bias", where, 0, 1 - dense) if "bias" in a else 0
    return hs, isz, dense, has_bias, 2 if a["direction"] == "bidirectional" else 1


def _decode_gru(node, a, ins, consts, where):
    from ..gru import EIEGRUCore

    hs, isz, dense, has_bias, nd = _recurrent_attrs(a, where)
    lbr = _need_int(a, "linear_before_reset", where, 0, 1)
    per = 3 if dense else 9 + 2 * has_bias
    if len(ins) != 3 + per * nd or not ins[0] or len(node.output) > 2:
        raise EIEFormatError(f"{where}: takes X, sequence_lens, initial_h and {per * nd} weight initializer(s), "
                             f"gives Y, Y_h; got {len(ins)} inputs")
    shapes = ((3 * hs, isz + 1), (2 * hs, hs), (hs, hs + 1))
    fixed = _fixed(a, 3 * nd, where)
    n_pes = a.get("n_pes", [])
    if not dense and len(n_pes) != 3 * nd:
        raise EIEFormatError(f"{where}: attribute 'n_pes' must hold {3 * nd} integers")
    cores = []
    for d in range(nd):
        mats = []
        for i, (which, shape) in enumerate(zip(("x", "hrz", "hn"), shapes)):
            what = f"direction {d} w_{which} "
            if dense:
                w = _array(consts, ins[3 + per * d + i], where, what + "weight", (np.float32,), 2)
                if w.shape != shape:
                    raise EIEFormatError(f"{where}: {what}has shape {w.shape}, expected {shape}")
                mats.append(DenseCell(w, f"{node.name}.d{d}.{which}"))
            else:
                # per direction: x (entries, ptr, codebook[, bias]), hrz (3), hn (3[, bias])
                j = 3 + per * d + (0, 3 + has_bias, 6 + has_bias)[i]
                mat = _matrix(consts, ins[j:j + 3], shape, a, where, what, n_pe=n_pes[3 * d + i])
                mat.name = f"{node.name}.d{d}.{which}"
                bias = (_dense_bias(consts, ins[j + 3], shape[0], where, what)
                        if has_bias and which != "hrz" else None)
                mats.append(EIELinear(mat, bias=bias, fixed=fixed[3 * d + i], name=mat.name))
        try:
            cores.append(EIEGRUCore([[tuple(mats)]], hs, linear_before_reset=bool(lbr)))
        except EIEFormatError as exc:
            raise EIEFormatError(f"{where}: {exc}") from None
    return GRUKernel(cores, a, where)
