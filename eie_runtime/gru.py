"""GRU on EIE layers, shared by the torch and ONNX front ends (numpy only).

API (for front ends)::

    from eie_runtime.gru import EIEGRUCore
    from eie_runtime.converters.gru import GRUDirectionWeights, compress_gru
    core = compress_gru([[GRUDirectionWeights(w_ih, w_hh, b_ih, b_hh), ...], ...],   # [layer][direction]
                        density=0.1, bits=4, n_pe=64, linear_before_reset=True)
    y, h_n = core.forward(x, h0=None, seq_lens=None, mode="float32")
    # x (T, B, I) time-major; h0 (L*D, B, H); y (T, B, D*H); h_n (L*D, B, H)
    h_next = core.step(l, d, x_t, h, mode)                   # one cell step, (B, I), (B, H) -> (B, H)

Weights arrive in torch's layout and gate order (r, z, n): ``w_ih`` (3H, I),
``w_hh`` (3H, H); the ONNX importer permutes ONNX's (z, r, h) first.

Each layer/direction is three EIE matrices (``cells[l][d] = (w_x, w_hrz, w_hn)``):

- ``w_x`` (3H, I + 1) over ``[x_t; 1]``, rows r, z, n: every input product,
  with the biases that add to them (``b_ir + b_hr``, ``b_iz + b_hz``, and for
  the candidate ``b_in``, plus ``b_hn`` when not ``linear_before_reset``);
- ``w_hrz`` (2H, H) over ``h_{t-1}``: the hidden part of r and z;
- ``w_hn`` (H, H + 1) over ``[h_{t-1}; 1]`` (``linear_before_reset``, torch's
  GRU: ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``) or over
  ``[r * h_{t-1}; 1]`` (ONNX's default: ``n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)``),
  its last column ``b_hn`` in the first case and empty in the second.

``h_t = (1 - z) * n + z * h_{t-1}``. Only ``w_hrz`` and ``w_hn`` depend on the
recurrence, so the sequence kernel (``kernels/recurrent.py``) runs ``w_x`` for
every step as one batched product first. Like the LSTM's, ``forward`` runs a
layer/direction in one compiled call (``fused``) or step by step, one EIE
layer call per matrix (what the simulator traces); fixed16 bit for bit alike.
"""

from __future__ import annotations

import numpy as np

from .errors import EIEFormatError, EIEInputError
from .kernels import recurrent as _rk
from .kernels import recurrent_calls as _rc
from .kernels import recurrent_lanes as _lanes
from .layer import MODES, EIELinear
from .lstm import _as_float32, seq_lengths
from .recurrent_plan import (LANES_MIN_BATCH, FusedPlan, acc0, cached_csr, cached_fused_plans, folded_bias,
                             fuse_blocker, lane_chunk, run_fused_layers, scale)


class EIEGRUCore:
    """A (multi-layer, optionally bidirectional) GRU whose matrices are EIE layers.

    Parameters
    ----------
    cells : list[list[tuple[EIELinear, EIELinear, EIELinear]]]
        ``cells[layer][direction] = (w_x, w_hrz, w_hn)``, shapes (3H, I_l + 1), (2H, H), (H, H + 1).
    hidden_size : int
    linear_before_reset : bool
        torch's GRU (True) or ONNX's default (False); see the module docstring.
    """

    def __init__(self, cells, hidden_size: int, linear_before_reset: bool = True):
        self.cells = [[tuple(c) for c in dirs] for dirs in cells]
        self.hidden_size = int(hidden_size)
        self.linear_before_reset = bool(linear_before_reset)
        self.num_layers = len(self.cells)
        if self.num_layers == 0:
            raise EIEFormatError("a GRU needs at least one layer")
        self.num_directions = len(self.cells[0])
        if self.num_directions not in (1, 2) or any(len(c) != self.num_directions for c in self.cells):
            raise EIEFormatError("every GRU layer needs the same number of directions (1 or 2)")
        h = self.hidden_size
        for l, dirs in enumerate(self.cells):
            for d, mats in enumerate(dirs):
                if len(mats) != 3:
                    raise EIEFormatError(f"GRU layer {l} direction {d}: expected 3 matrices (w_x, w_hrz, w_hn)")
                in_size = self.input_size if l == 0 else self.num_directions * h
                for what, m, want in zip(("w_x", "w_hrz", "w_hn"), mats,
                                         ((3 * h, in_size + 1), (2 * h, h), (h, h + 1))):
                    if not hasattr(m, "shape") or m.shape != want:
                        raise EIEFormatError(f"GRU layer {l} direction {d}: {what} shape "
                                             f"{getattr(m, 'shape', None)}, expected {want}")

    @property
    def input_size(self) -> int:
        return self.cells[0][0][0].in_features - 1

    out_size = property(lambda self: self.hidden_size)

    def layers(self) -> list[EIELinear]:
        """Every EIE layer, in (layer, direction, matrix) order."""
        return [m for dirs in self.cells for mats in dirs for m in mats]

    # ------------------------------------------------------------------ run
    def step(self, l: int, d: int, x_t, h, mode: str = "float32"):
        """One time step of layer ``l``, direction ``d``: (B, I), (B, H) -> h'."""
        w_x, w_hrz, w_hn = self.cells[l][d]
        ones = np.ones((x_t.shape[0], 1), dtype=np.float32)
        gx = np.ascontiguousarray(w_x(np.concatenate([x_t, ones], axis=1), mode=mode), dtype=np.float32)
        return self._hidden_step(l, d, gx, np.ascontiguousarray(h, dtype=np.float32), mode)

    def _hidden_step(self, l, d, gx, h, mode):
        _, w_hrz, w_hn = self.cells[l][d]
        hs = self.hidden_size
        ones = np.ones((h.shape[0], 1), dtype=np.float32)
        hrz = np.ascontiguousarray(w_hrz(h, mode=mode), dtype=np.float32)
        if self.linear_before_reset:
            v = h
        else:
            rz = np.empty_like(hrz)
            _rk.gru_gates(gx, hrz, rz)
            v = rz[:, :hs] * h
        hn = np.ascontiguousarray(w_hn(np.concatenate([v, ones], axis=1), mode=mode), dtype=np.float32)
        out = np.empty_like(h)
        _rk.gru_update(gx, hrz, hn, h, self.linear_before_reset, out)
        return out

    def forward(self, x, h0=None, seq_lens=None, mode: str = "float32", fused: bool | None = None):
        """Run the sequence ``x`` (T, B, I), time-major; ``h0`` (L*D, B, H) defaults to zeros.

        ``seq_lens`` (B,) stops each sample's recurrence at its length (later
        outputs 0, final state from its last step; the reverse direction starts
        there). ``fused`` as for ``EIELSTMCore.forward``. Returns ``(y (T, B, D*H), h_n (L*D, B, H))``.
        """
        if mode not in MODES:
            raise EIEInputError(f"mode must be one of {MODES}, got {mode!r}")
        x = _as_float32(x, "GRU input")
        if x.ndim != 3 or x.shape[2] != self.input_size:
            raise EIEInputError(f"GRU input has shape {x.shape}, expected (seq_len, batch, {self.input_size})")
        t_len, batch, _ = x.shape
        h0 = self._state(h0, (self.num_layers * self.num_directions, batch, self.hidden_size))
        lens = None if seq_lens is None else seq_lengths(seq_lens, batch, t_len)
        return self.run_checked(np.ascontiguousarray(x), h0, lens, mode, fused)

    def run_checked(self, x, h0, lens, mode: str, fused: bool | None = None, reverse: bool = False):
        """``forward`` on checked inputs (as ``EIELSTMCore.run_checked``: ``x`` C-contiguous float32, ``h0``
        C-contiguous or None, ``lens`` int64 or None; ``reverse`` runs every direction backwards)."""
        if mode == "fixed16" and not np.isfinite(x).all():
            raise EIEInputError("fixed16 mode refuses NaN or Inf inputs")
        t_len, batch, _ = x.shape
        nd, hs = self.num_directions, self.hidden_size
        if h0 is None:
            h0 = np.zeros((self.num_layers * nd, batch, hs), dtype=np.float32)
        plans = None if fused is False else self._fused_plans(mode)
        if fused and plans is None:
            raise EIEInputError("this GRU cannot run fused: " + self._fuse_blocker(mode))
        h_n = np.empty_like(h0)
        if plans is not None:
            return run_fused_layers(plans, x, lens, reverse, self.num_layers, hs, (h0,), (h_n,)), h_n
        if lens is None:
            lens = np.full(batch, t_len, dtype=np.int64)
        layer_in = x
        for l in range(self.num_layers):
            out = np.zeros((t_len, batch, nd * hs), dtype=np.float32)
            for d in range(nd):
                s = l * nd + d
                h = h0[s].copy()
                steps = range(t_len - 1, -1, -1) if (d == 1) != reverse else range(t_len)
                for t in steps:
                    live = t < lens
                    if not live.any():
                        continue
                    h_new = self.step(l, d, layer_in[t], h, mode)
                    h = np.where(live[:, None], h_new, h)
                    out[t, :, d * hs:(d + 1) * hs] = np.where(live[:, None], h_new, 0.0)
                h_n[s] = h
            layer_in = out
        return layer_in, h_n

    # ------------------------------------------------------------------ fused
    def _fuse_blocker(self, mode: str) -> str:
        return fuse_blocker(self.layers(), mode)

    def can_fuse(self, mode: str = "float32") -> bool:
        """Whether ``forward`` can run the sequence kernel (see ``EIELSTMCore.can_fuse``)."""
        return not self._fuse_blocker(mode)

    def _fused_plans(self, mode: str):
        """Each layer/direction's :class:`_GRUPlan` in ``mode``, or None (``recurrent_plan.cached_fused_plans``)."""
        return cached_fused_plans(self, mode, lambda l, d: self.cells[l][d], lambda l, d: _GRUPlan(self, l, d, mode))

    @staticmethod
    def _state(s, shape):
        if s is None:
            return None
        s = _as_float32(s, "GRU h0")
        if s.shape != shape:
            raise EIEInputError(f"GRU h0 has shape {s.shape}, expected {shape}")
        return np.ascontiguousarray(s)


class _GRUPlan(FusedPlan):
    """One GRU layer/direction's arrays for its fused run in one mode (see ``recurrent_plan.FusedPlan``)."""

    def __init__(self, core, l, d, mode):
        super().__init__(core.cells[l][d])
        w_x, w_hrz, w_hn = core.cells[l][d]
        self.lbr = core.linear_before_reset
        self.fixed16 = mode == "fixed16"
        k = w_x.in_features - 1
        xcsr = cached_csr(core, ("x", l, d), w_x, 0, k + 1)  # with the bias column
        args = []
        for key, layer in (("rz", w_hrz), ("n", w_hn)):
            csr = cached_csr(core, (key, l, d), layer, 0, layer.in_features)
            if self.fixed16:
                f = layer.fixed
                args += [csr.ptr, csr.cols, csr.wq(f.w_frac), acc0(layer, True)[:, None], scale(f.in_frac), f.shift,
                         scale(-f.out_frac)]
            else:
                args += [csr.ptr, csr.cols, csr.vals, acc0(layer, False)]
        self.h_args = tuple(args)
        if self.fixed16:
            f = w_x.fixed
            self.x_args = (xcsr.ptr, xcsr.cols, xcsr.wq(f.w_frac), acc0(w_x, True), scale(f.in_frac), f.shift,
                           scale(-f.out_frac))
            return
        self.lanes_args = (xcsr.ptr, xcsr.cols, xcsr.vals, w_x._bias_f32())
        xin = cached_csr(core, ("xi", l, d), w_x, 0, k)
        self.x_args = (xin.ptr, xin.cols, xin.vals, folded_bias(core, ("xb", l, d), w_x, k))

    def run(self, x, h0, lens, reverse, out, y_off, h_n):
        """Layer input ``x`` (T, B, K) -> ``out[:, :, y_off:y_off+H]`` and ``h_n``; ``lens`` empty: all steps."""
        if self.fixed16:
            _rc.gru_fixed16(self.lbr, x, *self.x_args, *self.h_args, h0, lens, reverse, out, y_off, h_n)
            return
        batch = x.shape[1]
        if batch < LANES_MIN_BATCH:  # few samples: the input layer's product for every step first
            _rc.gru_f32(self.lbr, x, *self.x_args, *self.h_args, h0, lens, reverse, out, y_off, h_n)
            return
        # 16 samples side by side, the input layer's product inside each step
        for s0 in range(0, batch, _lanes.LANES):
            n, xt, (h0c,), lensc = lane_chunk(x, (h0,), lens, s0)
            h_nc = np.empty_like(h0c)
            _lanes.gru_sequence_f32_batch(self.lbr, xt, *self.lanes_args, *self.h_args, h0c, lensc, reverse,
                                          out[:, s0:s0 + n], y_off, h_nc)
            h_n[s0:s0 + n] = h_nc[:n]
