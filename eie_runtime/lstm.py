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
from .layer import EIELinear


def _sigmoid(x):
    # split by sign so exp never overflows
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
        """One time step of layer ``l``, direction ``d``: (B, I), (B, P), (B, H) -> h', c'."""
        hs = self.hidden_size
        z = np.concatenate([x_t, h, np.ones((x_t.shape[0], 1), dtype=np.float32)], axis=1)
        gates = self.cells[l][d](z, mode=mode)
        i = _sigmoid(gates[:, :hs])
        f = _sigmoid(gates[:, hs:2 * hs])
        g = np.tanh(gates[:, 2 * hs:3 * hs])
        o = _sigmoid(gates[:, 3 * hs:])
        c_new = f * c + i * g
        h_new = o * np.tanh(c_new)
        if self.proj:
            h_new = self.proj[l][d](h_new, mode=mode)
        return h_new.astype(np.float32), c_new.astype(np.float32)

    def forward(self, x, h0=None, c0=None, seq_lens=None, mode: str = "float32"):
        """Run the sequence ``x`` (T, B, I), time-major.

        ``h0`` (L*D, B, P), ``c0`` (L*D, B, H) default to zeros. ``seq_lens``
        (B,) stops each sample's recurrence at its length: later outputs are 0
        and the final states are those at the sample's last step (ONNX's rule;
        the reverse direction starts at the sample's last step).

        Returns ``(y (T, B, D*P), h_n (L*D, B, P), c_n (L*D, B, H))``.
        """
        x = _as_float32(x, "LSTM input")
        if x.ndim != 3 or x.shape[2] != self.input_size:
            raise EIEInputError(f"LSTM input has shape {x.shape}, expected (seq_len, batch, {self.input_size})")
        t_len, batch, _ = x.shape
        nd, hs, ps = self.num_directions, self.hidden_size, self.out_size
        n_states = self.num_layers * nd
        h0 = self._state(h0, (n_states, batch, ps), "h0")
        c0 = self._state(c0, (n_states, batch, hs), "c0")
        if seq_lens is None:
            lens = np.full(batch, t_len, dtype=np.int64)
        else:
            lens = np.asarray(seq_lens).astype(np.int64)
            if lens.shape != (batch,) or (lens < 0).any() or (lens > t_len).any():
                raise EIEInputError(f"seq_lens must be (batch,) = ({batch},) integers in [0, {t_len}], got {np.asarray(seq_lens)!r}")
        h_n = np.empty_like(h0)
        c_n = np.empty_like(c0)
        layer_in = x
        for l in range(self.num_layers):
            out = np.zeros((t_len, batch, nd * ps), dtype=np.float32)
            for d in range(nd):
                s = l * nd + d
                h, c = h0[s].copy(), c0[s].copy()
                steps = range(t_len) if d == 0 else range(t_len - 1, -1, -1)
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

    @staticmethod
    def _state(s, shape, name):
        if s is None:
            return np.zeros(shape, dtype=np.float32)
        s = _as_float32(s, f"LSTM {name}")
        if s.shape != shape:
            raise EIEInputError(f"LSTM {name} has shape {s.shape}, expected {shape}")
        return s
