"""What the sequence kernels (``kernels/recurrent.py``) read of an EIE layer: CSRs of column ranges.

A :class:`RowsCSR` is the part of a layer's matrix in a range of columns,
rows in order and columns ascending within each row (the order fixed16
accumulates in), with each weight as float32 and, per ``w_frac``, as int16.
It is built from the layer's execution CSR (``RowGather.source``), once, and
rebuilt when the layer's matrix is replaced.
"""

from __future__ import annotations

import threading

import numpy as np

from .fixed_point import to_fixed
from .kernels.recurrent_lanes import LANES
from .layer import EIELinear, calls_observed

_LOCK = threading.Lock()


class RowsCSR:
    """Columns ``[lo, hi)`` of ``layer``'s matrix as a CSR with local column numbers."""

    def __init__(self, layer: EIELinear, lo: int, hi: int):
        self.matrix = layer.matrix
        ex = layer.execution_layout()
        rowptr = ex.rows.rowptr
        cols, codes = ex.row_gather.source()
        m = layer.out_features
        row_of = np.repeat(np.arange(m, dtype=np.int64), np.diff(rowptr.astype(np.int64)))
        cols = cols.astype(np.int64)
        keep = (cols >= lo) & (cols < hi)
        self.ptr = np.zeros(m + 1, dtype=np.int64)
        np.cumsum(np.bincount(row_of[keep], minlength=m), out=self.ptr[1:])
        self.cols = np.ascontiguousarray(cols[keep] - lo, dtype=np.uint32)
        self.vals = np.ascontiguousarray(self.matrix.codebook[codes[keep]], dtype=np.float32)
        self._wq = (None, None)

    def wq(self, w_frac: int) -> np.ndarray:
        """The weights in int16 with ``w_frac`` fractional bits (the codebook's ``to_fixed``)."""
        frac, arr = self._wq
        if frac != w_frac:
            arr = to_fixed(self.vals, w_frac)
            self._wq = (w_frac, arr)
        return arr

    def nbytes(self) -> int:
        return self.ptr.nbytes + self.cols.nbytes + self.vals.nbytes




def cached_csr(owner, key, layer: EIELinear, lo: int, hi: int) -> RowsCSR:
    """``owner._csr[key]``, rebuilt if ``layer``'s matrix was replaced (thread-safe; built once)."""
    cache = owner.__dict__.setdefault("_csr", {})
    csr = cache.get(key)
    if csr is None or csr.matrix is not layer.matrix:
        with _LOCK:
            csr = cache.get(key)
            if csr is None or csr.matrix is not layer.matrix:
                csr = RowsCSR(layer, lo, hi)
                cache[key] = csr
    return csr


#: ``lens`` of a fused run without sequence lengths: every sample runs every step (the kernels take it so)
ALL_STEPS = np.zeros(0, np.int64)

# From this many samples a float32 batch runs 16 side by side (``lane_chunk``); fewer run one after
# another in the single-sample kernels. A 16-lane pass costs 4.5-9x one sample's run (bench.recurrent,
# batch 16 against batch 1: GRU(128) 4.5x, NT-LSTM 9x).
LANES_MIN_BATCH = 6


def lane_chunk(x, states, lens, s0: int):
    """Samples ``s0 .. s0+16`` of a batch, padded to the 16 lanes of the batch kernels
    (``kernels/recurrent_lanes.py``): ``(n, inputs (T, K, 16), [state (16, S), ...], lens (16,))`` for
    ``x`` (T, B, K); padding samples have length 0, so the kernels never write them; ``n`` are real."""
    n = min(LANES, x.shape[1] - s0)
    xt = np.zeros((x.shape[0], x.shape[2], LANES), dtype=np.float32)
    xt[:, :, :n] = x[:, s0:s0 + n].transpose(0, 2, 1)
    padded = []
    for st in states:
        p = np.zeros((LANES, st.shape[1]), dtype=np.float32)
        p[:n] = st[s0:s0 + n]
        padded.append(p)
    lc = np.zeros(LANES, dtype=np.int64)
    lc[:n] = x.shape[0] if lens.shape[0] == 0 else lens[s0:s0 + n]  # no lengths (ALL_STEPS): every step
    return n, xt, padded, lc


def folded_bias(owner, key, layer: EIELinear, col: int) -> np.ndarray:
    """The float32 bias of ``layer`` plus the entries of its constant-one column ``col`` (a recurrent
    cell's bias column), so that a product over the other columns can start from it."""
    bcol = cached_csr(owner, key, layer, col, col + 1)
    bias = layer._bias_f32().copy()
    bias[np.repeat(np.arange(layer.out_features), np.diff(bcol.ptr))] += bcol.vals
    return bias


def run_fused_layers(plans, x, lens, reverse: bool, num_layers: int, width: int, starts, finals):
    """A recurrent core's layers/directions through their fused plans (index ``l * D + d``):
    ``plan.run(x, *starts, lens, reverse, out, offset, *finals)`` per direction, each layer's output the next
    one's input. ``starts``/``finals``: the initial and final state arrays (L*D, B, S), ``width`` a
    direction's output size, ``lens`` None for every step. Returns the last layer's output (T, B, D*width)."""
    nd = len(plans) // num_layers
    new_out = np.empty if lens is None else np.zeros  # every step of every sample is written without lengths
    k_lens = ALL_STEPS if lens is None else lens
    for l in range(num_layers):
        out = new_out((x.shape[0], x.shape[1], nd * width), dtype=np.float32)
        for d in range(nd):
            s = l * nd + d
            plans[s].run(x, *[st[s] for st in starts], k_lens, (d == 1) != reverse, out, d * width,
                         *[st[s] for st in finals])
        x = out
    return x


def scale(frac: int) -> float:
    """2**frac as the float64 that ``to_fixed`` / ``from_fixed`` multiply by."""
    return float(2.0 ** frac)


def acc0(layer: EIELinear, fixed: bool) -> np.ndarray:
    """Where a row's accumulator starts: the layer's rounded int bias (fixed16) or float32 bias."""
    if fixed:
        return layer.quantized_bias().astype(np.int64)
    return layer._bias_f32()


def fuse_blocker(layers, mode: str) -> str:
    """Why a recurrent core's sequence kernel cannot run these layers in ``mode`` ("" when it can): it needs
    plain EIE layers without activations (calibrated, with a product shift below 63, for fixed16) and no
    recorder watching layer calls."""
    for layer in layers:
        if type(layer) is not EIELinear:
            return f"{type(layer).__name__} stands in for an EIE layer"
        if "run_float32" in vars(layer) or "run_fixed16" in vars(layer):
            return f"layer {layer.name!r} has its run methods replaced (a recorder watches its calls)"
        if layer.activation is not None:
            return f"layer {layer.name!r} has an activation"
        if mode == "fixed16":
            if layer.fixed is None:
                return f"layer {layer.name!r} has no fixed-point parameters (calibrate it)"
            if layer.fixed.shift >= 63:
                return f"layer {layer.name!r} has a product shift >= 63"
    if calls_observed():
        return "layer calls are being recorded"
    return ""


class FusedPlan:
    """What one layer/direction's fused run reads of its layers in one mode, built once: subclasses keep
    the CSRs, biases and fixed-point constants. It holds while :meth:`current` does: the same layer
    objects with the same matrix, bias and fixed-point parameters (by identity), still without an
    activation or replaced run methods (``fuse_blocker``'s per-call conditions)."""

    def __init__(self, layers):
        self.layers = tuple(layers)
        self.deps = tuple((layer.matrix, layer.bias, layer.fixed) for layer in self.layers)

    def current(self, layers) -> bool:
        if len(layers) != len(self.layers):
            return False
        for layer, own, (matrix, bias, fixed) in zip(layers, self.layers, self.deps):
            if layer is not own:
                return False
            d = layer.__dict__
            if (d["matrix"] is not matrix or d["bias"] is not bias or d["fixed"] is not fixed
                    or d["activation"] is not None or "run_float32" in d or "run_fixed16" in d):
                return False
        return True


def cached_fused_plans(core, mode: str, layers_of, make):
    """Each layer/direction's fused plan of a recurrent ``core`` in ``mode`` (index ``l * D + d``), kept while
    its layers (``layers_of(l, d)``) and their matrices, biases and fixed-point parameters stay
    (:meth:`FusedPlan.current`), else rebuilt by ``make(l, d)``; None when the core cannot run fused (a
    recorder watches layer calls, or ``core._fuse_blocker(mode)`` names a reason)."""
    if calls_observed():
        return None
    cache = core.__dict__.setdefault("_plans", {})
    plans = cache.get(mode)
    nd = core.num_directions
    if plans is not None and len(plans) == core.num_layers * nd and \
            all(p.current(layers_of(i // nd, i % nd)) for i, p in enumerate(plans)):
        return plans
    if core._fuse_blocker(mode):
        return None
    plans = [make(l, d) for l in range(core.num_layers) for d in range(nd)]
    cache[mode] = plans
    return plans
