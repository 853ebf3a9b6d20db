"""LSTM on EIE layers, shared by the torch and ONNX front ends (numpy only).

Following the paper (Section II; Table III's NT-LSTM is 2400 x 1201 =
4 gates x 600 by input 600 + hidden 600 + 1), each layer/direction's input,
recurrent and bias weights form one EIE matrix over ``[x_t; h_{t-1}; 1]``, so
a time step is one sparse M x V plus the gate non-linearities. Gate rows are
in torch's order (i, f, g, o); the ONNX importer permutes ONNX's (i, o, f, c).
With ``proj_size`` P > 0 (torch's LSTMP), ``h_t = W_hr (o * tanh(c_t))`` is a
second EIE layer of shape (P, H).
"""

from __future__ import annotations

import numpy as np

from .errors import EIEFormatError, EIEInputError
from .kernels import recurrent as _rk
from .kernels import recurrent_calls as _rc
from .kernels import recurrent_lanes as _lanes
from .layer import MODES, EIELinear
from .recurrent_plan import (LANES_MIN_BATCH, FusedPlan, acc0, cached_csr, cached_fused_plans, folded_bias,
                             fuse_blocker, lane_chunk, run_fused_layers, scale)

# an empty CSR: "no projection" for the sequence kernels
_NO_ROWS = np.zeros(1, np.int64)
_NO_COLS = np.zeros(0, np.uint32)
_NO_VALS = np.zeros(0, np.float32)
_NO_WQ = np.zeros(0, np.int16)
_NO_INT2 = np.zeros((0, 1), np.int64)


def _sigmoid(x):
    # split by sign so exp never overflows (the graph executor's Sigmoid)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def _as_float32(x, what: str) -> np.ndarray:
    try:
        x = np.asarray(x)
    except Exception as exc:  # ragged lists, tensors that require grad
        raise EIEInputError(f"{what} could not be converted to an array: {exc}") from None
    if x.dtype.kind not in "fiub":
        raise EIEInputError(f"{what} must hold real numbers (float, int or bool), got dtype {x.dtype}")
    return x.astype(np.float32, copy=False)


class EIELSTMCore:
    """A (multi-layer, optionally bidirectional) LSTM whose matrices are EIE layers.

    Parameters
    ----------
    cells : list[list[EIELinear]]
        ``cells[layer][direction]``: shape (4H, I_l + P_or_H + 1) over
        ``[x_t; h_{t-1}; 1]``, rows in gate order i, f, g, o.
    hidden_size : int
    proj : list[list[EIELinear]] or None
        ``proj[layer][direction]`` of shape (P, H) when ``proj_size > 0``.
    """

    def __init__(self, cells, hidden_size: int, proj=None):
        self.cells = [list(c) for c in cells]
        self.hidden_size = int(hidden_size)
        self.proj = [list(p) for p in proj] if proj else None
        self.num_layers = len(self.cells)
        if self.num_layers == 0:
            raise EIEFormatError("an LSTM needs at least one layer")
        self.num_directions = len(self.cells[0])
        if self.num_directions not in (1, 2) or any(len(c) != self.num_directions for c in self.cells):
            raise EIEFormatError("every LSTM layer needs the same number of directions (1 or 2)")
        h = self.hidden_size
        self.out_size = self.proj[0][0].out_features if self.proj else h
        for l, dirs in enumerate(self.cells):
            in_size = self.input_size if l == 0 else self.num_directions * self.out_size
            for d, cell in enumerate(dirs):
                want = (4 * h, in_size + self.out_size + 1)
                if cell.shape != want:
                    raise EIEFormatError(f"LSTM layer {l} direction {d}: matrix shape {cell.shape}, expected {want}")
                if self.proj and self.proj[l][d].shape != (self.out_size, h):
                    raise EIEFormatError(f"LSTM layer {l} direction {d}: projection shape {self.proj[l][d].shape}, expected {(self.out_size, h)}")

    @property
    def input_size(self) -> int:
        return self.cells[0][0].in_features - self.out_size - 1

    def layers(self) -> list[EIELinear]:
        """Every EIE layer, in (layer, direction) order, projections after cells."""
        out = [c for dirs in self.cells for c in dirs]
        if self.proj:
            out += [p for dirs in self.proj for p in dirs]
        return out

    # ------------------------------------------------------------------ run
    def step(self, l: int, d: int, x_t, h, c, mode: str = "float32"):
        """One time step of layer ``l``, direction ``d``: (B, I), (B, P), (B, H) -> h', c'.

        Each matrix product is one EIE layer call (what the simulator traces); the gate
        non-linearities are ``kernels.recurrent.lstm_update``, the same code the sequence kernel runs.
        """
        hs = self.hidden_size
        z = np.concatenate([x_t, h, np.ones((x_t.shape[0], 1), dtype=np.float32)], axis=1)
        gates = np.ascontiguousarray(self.cells[l][d](z, mode=mode), dtype=np.float32)
        c = np.ascontiguousarray(c, dtype=np.float32)
        h_new = np.empty((gates.shape[0], hs), dtype=np.float32)
        c_new = np.empty_like(h_new)
        _rk.lstm_update(gates, c, h_new, c_new)
        if self.proj:
            h_new = self.proj[l][d](h_new, mode=mode)
        return h_new.astype(np.float32, copy=False), c_new

    def forward(self, x, h0=None, c0=None, seq_lens=None, mode: str = "float32", fused: bool | None = None):
        """Run the sequence ``x`` (T, B, I), time-major.

        ``h0`` (L*D, B, P), ``c0`` (L*D, B, H) default to zeros. ``seq_lens``
        (B,) stops each sample's recurrence at its length: later outputs are 0
        and the final states are those at the sample's last step (ONNX's rule;
        the reverse direction starts at the sample's last step).

        ``fused`` (default: whenever it can) runs each layer/direction as one
        sequence-kernel call (``kernels/recurrent.py``); ``False`` runs step by
        step, one EIE layer call per matrix and step. Both give the same
        results, fixed16 bit for bit; while a simulator trace records layer
        calls (``layer.calls_observed()``), the step path runs.

        Returns ``(y (T, B, D*P), h_n (L*D, B, P), c_n (L*D, B, H))``.
        """
        if mode not in MODES:
            raise EIEInputError(f"mode must be one of {MODES}, got {mode!r}")
        x = _as_float32(x, "LSTM input")
        if x.ndim != 3 or x.shape[2] != self.input_size:
            raise EIEInputError(f"LSTM input has shape {x.shape}, expected (seq_len, batch, {self.input_size})")
        t_len, batch, _ = x.shape
        n_states = self.num_layers * self.num_directions
        h0 = self._state(h0, (n_states, batch, self.out_size), "h0")
        c0 = self._state(c0, (n_states, batch, self.hidden_size), "c0")
        lens = None if seq_lens is None else seq_lengths(seq_lens, batch, t_len)
        return self.run_checked(np.ascontiguousarray(x), h0, c0, lens, mode, fused)

    def run_checked(self, x, h0, c0, lens, mode: str, fused: bool | None = None, reverse: bool = False):
        """``forward`` on inputs a front end has checked: ``x`` (T, B, I) C-contiguous float32, ``h0``/``c0``
        C-contiguous float32 of their shapes or None (zeros), ``lens`` (B,) int64 in [0, T] or None (every
        step), ``mode`` in MODES. ``reverse`` runs every direction backwards in time (a one-direction core
        as ONNX's ``direction="reverse"``: each sample from its last step)."""
        t_len, batch, _ = x.shape
        nd, hs, ps = self.num_directions, self.hidden_size, self.out_size
        n_states = self.num_layers * nd
        if h0 is None:
            h0 = np.zeros((n_states, batch, ps), dtype=np.float32)
        if c0 is None:
            c0 = np.zeros((n_states, batch, hs), dtype=np.float32)
        plans = None if fused is False else self._fused_plans(mode)
        if fused and plans is None:
            raise EIEInputError("this LSTM cannot run fused: " + self._fuse_blocker(mode))
        if mode == "fixed16" and not np.isfinite(x).all():
            raise EIEInputError("fixed16 mode refuses NaN or Inf inputs")
        h_n = np.empty_like(h0)
        c_n = np.empty_like(c0)
        if plans is not None:
            y = run_fused_layers(plans, x, lens, reverse, self.num_layers, ps, (h0, c0), (h_n, c_n))
            return y, h_n, c_n
        if lens is None:
            lens = np.full(batch, t_len, dtype=np.int64)
        layer_in = x
        for l in range(self.num_layers):
            out = np.zeros((t_len, batch, nd * ps), dtype=np.float32)
            for d in range(nd):
                s = l * nd + d
                h, c = h0[s].copy(), c0[s].copy()
                steps = range(t_len - 1, -1, -1) if (d == 1) != reverse else range(t_len)
                for t in steps:
                    live = t < lens  # samples whose sequence covers step t
                    if not live.any():
                        continue
                    h_new, c_new = self.step(l, d, layer_in[t], h, c, mode)
                    h = np.where(live[:, None], h_new, h)
                    c = np.where(live[:, None], c_new, c)
                    out[t, :, d * ps:(d + 1) * ps] = np.where(live[:, None], h_new, 0.0)
                h_n[s], c_n[s] = h, c
            layer_in = out
        return layer_in, h_n, c_n

    # ------------------------------------------------------------------ fused
    def _fuse_blocker(self, mode: str) -> str:
        return fuse_blocker(self.layers(), mode)

    def can_fuse(self, mode: str = "float32") -> bool:
        """Whether ``forward`` can run the sequence kernel (real EIE layers without activations,
        calibrated for fixed16, and no trace recording layer calls)."""
        return not self._fuse_blocker(mode)

    def _dir_layers(self, l, d):
        return (self.cells[l][d], self.proj[l][d]) if self.proj else (self.cells[l][d],)

    def _fused_plans(self, mode: str):
        """Each layer/direction's :class:`_LSTMPlan` in ``mode``, or None (``recurrent_plan.cached_fused_plans``)."""
        return cached_fused_plans(self, mode, self._dir_layers, lambda l, d: _LSTMPlan(self, l, d, mode))

    @staticmethod
    def _state(s, shape, name):
        if s is None:
            return None
        s = _as_float32(s, f"LSTM {name}")
        if s.shape != shape:
            raise EIEInputError(f"LSTM {name} has shape {s.shape}, expected {shape}")
        return np.ascontiguousarray(s)


class _LSTMPlan(FusedPlan):
    """One LSTM layer/direction's arrays for its fused run in one mode (see :class:`FusedPlan`)."""

    def __init__(self, core, l, d, mode):
        super().__init__(core._dir_layers(l, d))
        cell = core.cells[l][d]
        proj = core.proj[l][d] if core.proj else None
        in_size, ps = cell.in_features - core.out_size - 1, core.out_size
        self.fixed16 = mode == "fixed16"
        xcsr = cached_csr(core, ("x", l, d), cell, 0, in_size)
        pcsr = cached_csr(core, ("p", l, d), proj, 0, proj.in_features) if proj is not None else None
        if self.fixed16:
            fc = cell.fixed
            hcsr = cached_csr(core, ("h1", l, d), cell, in_size, in_size + ps + 1)  # with the bias column
            if pcsr is not None:
                pf = proj.fixed
                p_args = (pcsr.ptr, pcsr.cols, pcsr.wq(pf.w_frac), acc0(proj, True)[:, None], scale(pf.in_frac),
                          pf.shift, scale(-pf.out_frac))
            else:
                p_args = (_NO_ROWS, _NO_COLS, _NO_WQ, _NO_INT2, 1.0, 0, 1.0)
            self.args = (xcsr.ptr, xcsr.cols, xcsr.wq(fc.w_frac), scale(fc.in_frac), acc0(cell, True), hcsr.ptr,
                         hcsr.cols, hcsr.wq(fc.w_frac), scale(fc.in_frac), fc.shift, scale(-fc.out_frac), *p_args)
            return
        if pcsr is not None:
            self.p_args = (pcsr.ptr, pcsr.cols, pcsr.vals, proj._bias_f32())
        else:
            self.p_args = (_NO_ROWS, _NO_COLS, _NO_VALS, _NO_VALS)
        hcsr = cached_csr(core, ("h", l, d), cell, in_size, in_size + ps)
        bias = folded_bias(core, ("b", l, d), cell, in_size + ps)
        self.args = (xcsr.ptr, xcsr.cols, xcsr.vals, bias, hcsr.ptr, hcsr.cols, hcsr.vals, *self.p_args)
        self._cell, self._key = cell, ("all", l, d)
        self._owner = core

    def run(self, x, h0, c0, lens, reverse, out, y_off, h_n, c_n):
        """Layer input ``x`` (T, B, K) -> ``out[:, :, y_off:y_off+P]``, ``h_n``, ``c_n``; ``lens`` empty: all steps."""
        if self.fixed16:
            _rc.lstm_fixed16(x, *self.args, h0, c0, lens, reverse, out, y_off, h_n, c_n)
            return
        batch = x.shape[1]
        if batch < LANES_MIN_BATCH:  # few samples: one after another, the input product first
            _rc.lstm_f32(x, *self.args, h0, c0, lens, reverse, out, y_off, h_n, c_n)
            return
        # 16 samples side by side, the whole [x; h; 1] product per step
        cell = self._cell
        wcsr = cached_csr(self._owner, self._key, cell, 0, cell.in_features)
        for s0 in range(0, batch, _lanes.LANES):
            n, xt, (h0c, c0c), lensc = lane_chunk(x, (h0, c0), lens, s0)
            h_nc, c_nc = np.empty_like(h0c), np.empty_like(c0c)
            _lanes.lstm_sequence_f32_batch(xt, wcsr.ptr, wcsr.cols, wcsr.vals, cell._bias_f32(), *self.p_args,
                                           h0c, c0c, lensc, reverse, out[:, s0:s0 + n], y_off, h_nc, c_nc)
            h_n[s0:s0 + n], c_n[s0:s0 + n] = h_nc[:n], c_nc[:n]


def seq_lengths(seq_lens, batch: int, t_len: int) -> np.ndarray:
    """``seq_lens`` checked as (batch,) integers in [0, t_len] (int64); all ``t_len`` when None."""
    if seq_lens is None:
        return np.full(batch, t_len, dtype=np.int64)
    raw = np.asarray(seq_lens)
    if raw.dtype.kind not in "iub" and not (raw.dtype.kind == "f" and np.all(np.mod(raw, 1) == 0)):
        raise EIEInputError(f"seq_lens must be integers, got {raw!r}")
    lens = raw.astype(np.int64)
    if lens.shape != (batch,) or (lens < 0).any() or (lens > t_len).any():
        raise EIEInputError(f"seq_lens must be (batch,) = ({batch},) integers in [0, {t_len}], got {raw!r}")
    return np.ascontiguousarray(lens)
