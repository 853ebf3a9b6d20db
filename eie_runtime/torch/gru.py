"""``EIEGRU`` and ``EIEGRUCell``: drop-in ``nn.GRU`` / ``nn.GRUCell`` on EIE's kernels.

Each layer/direction is three EIE matrices (input ``[x_t; 1]``, the hidden
part of the r and z gates, the candidate's ``[h; 1]``), run by the core's
:class:`~eie_runtime.gru.EIEGRUCore` with torch's ``linear_before_reset``
semantics: ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import EIEInputError
from ..gru import EIEGRUCore
from .base import EIEModule, as_array, cell_arrays, check_mode
from .lstm import _Recorder, _repack
from .targets import check_module
from .threads import keep_torch_threads
from .weights import compress_gru_module


class _GRUBase(EIEModule):
    """What EIEGRU and EIEGRUCell share: the core, its layers by state-dict prefix, calibration."""

    def __init__(self, core: EIEGRUCore, mode: str):
        super().__init__()
        if not isinstance(core, EIEGRUCore):
            raise EIEInputError(f"core must be an EIEGRUCore, got {type(core).__name__}")
        if not core.linear_before_reset:
            raise EIEInputError("torch's GRU is linear_before_reset; this core is not (an ONNX default GRU)")
        self.core = core
        self.mode = check_mode(mode)
        self._recorders = None

    @property
    def input_size(self) -> int:
        return self.core.input_size

    @property
    def hidden_size(self) -> int:
        return self.core.hidden_size

    def _named_layers(self):
        sfx = ("", "_reverse")
        return [(f"{which}_l{l}{sfx[d]}.", m) for l, dirs in enumerate(self.core.cells) for d, mats in enumerate(dirs)
                for which, m in zip(("x", "hrz", "hn"), mats)]

    def _set_layers(self, layers):
        nl, nd = self.core.num_layers, self.core.num_directions
        cells = [[tuple(layers[(l * nd + d) * 3:(l * nd + d) * 3 + 3]) for d in range(nd)] for l in range(nl)]
        self.core = EIEGRUCore(cells, self.core.hidden_size, linear_before_reset=True)

    def _start_recording(self):
        self._recorders = [[tuple(_Recorder(m) for m in mats) for mats in dirs] for dirs in self.core.cells]
        self.core.cells = self._recorders

    def _finish_recording(self):
        recs = self._recorders
        self._recorders = None
        self.core.cells = [[tuple(r.layer for r in mats) for mats in dirs] for dirs in recs]
        for rec in [r for dirs in recs for mats in dirs for r in mats]:
            if rec.inputs:
                rec.layer.calibrate(np.concatenate(rec.inputs))

    def _run_mode(self) -> str:
        return "float32" if self._recorders is not None else self.mode

    def _dense(self, l: int, d: int):
        """(w_ih, w_hh, b_ih, b_hh) in torch's layout from the EIE matrices (r, z biases all in b_ih)."""
        m_x, m_hrz, m_hn = self.core.cells[l][d]
        w_x, w_hrz, w_hn = m_x.dense(), m_hrz.dense(), m_hn.dense()
        h = self.hidden_size
        b_ih = w_x[:, -1] + (m_x.bias if m_x.bias is not None else 0)
        if m_hrz.bias is not None:
            b_ih[:2 * h] += m_hrz.bias
        b_hn = w_hn[:, -1] + (m_hn.bias if m_hn.bias is not None else 0)
        b_hh = np.concatenate([np.zeros(2 * h, np.float32), b_hn]).astype(np.float32)
        return w_x[:, :-1], np.concatenate([w_hrz, w_hn[:, :-1]]), b_ih.astype(np.float32), b_hh


class EIEGRU(_GRUBase):
    """Drop-in for ``nn.GRU`` (inference): ``(input, h0) -> (output, h_n)``.

    Supports ``batch_first``, several layers, ``bidirectional``, unbatched 2-D
    input and ``PackedSequence`` input.
    """

    def __init__(self, core: EIEGRUCore, *, batch_first: bool = False, mode: str = "float32"):
        super().__init__(core, mode)
        self.batch_first = bool(batch_first)

    @classmethod
    def from_gru(cls, gru: nn.GRU, *, density=0.1, bits=4, n_pe: int = 64, seed: int = 0,
                 name: str | None = None, mode: str = "float32", init: str = "linear",
                 bias: str = "shared") -> "EIEGRU":
        """Prune, share and encode an ``nn.GRU`` (it is not modified); ``init``, ``bias`` as in ``compress_gru``."""
        check_module(gru, name or "")
        core = compress_gru_module(gru, density=density, bits=bits, n_pe=n_pe, seed=seed, name=name or "gru",
                                   init=init, bias=bias)
        return cls(core, batch_first=gru.batch_first, mode=mode)

    num_layers = property(lambda self: self.core.num_layers)
    bidirectional = property(lambda self: self.core.num_directions == 2)

    @keep_torch_threads
    def forward(self, input, hx=None):
        packed = isinstance(input, nn.utils.rnn.PackedSequence)
        lens = None
        if packed:
            padded, lens_t = nn.utils.rnn.pad_packed_sequence(input)
            x = as_array(padded, "GRU input")
            lens = lens_t.numpy()
        else:
            x = as_array(input, "GRU input")
            if x.ndim not in (2, 3):
                raise EIEInputError(f"GRU input must be 2-D (unbatched) or 3-D, got shape {tuple(x.shape)}")
        unbatched = x.ndim == 2
        if unbatched:
            x = x[:, None, :]
        elif self.batch_first and not packed:
            x = x.transpose(1, 0, 2)
        h0 = None
        if hx is not None:
            h0 = as_array(hx, "h0")
            if unbatched:
                h0 = h0[:, None, :]
        y, h_n = self.core.forward(np.ascontiguousarray(x), h0, seq_lens=lens, mode=self._run_mode())
        h_n = torch.from_numpy(h_n)
        if unbatched:
            return torch.from_numpy(y[:, 0]), h_n[:, 0]
        if packed:
            return _repack(torch.from_numpy(y), input, lens_t), h_n
        if self.batch_first:
            y = y.transpose(1, 0, 2)
        return torch.from_numpy(np.ascontiguousarray(y)), h_n

    def to_dense(self) -> nn.GRU:
        """An ``nn.GRU`` with the pruned-and-shared weights."""
        core = self.core
        gru = nn.GRU(self.input_size, self.hidden_size, num_layers=core.num_layers, bias=True,
                     batch_first=self.batch_first, bidirectional=self.bidirectional)
        sfx = ("", "_reverse")
        with torch.no_grad():
            for l in range(core.num_layers):
                for d in range(core.num_directions):
                    for n, a in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), self._dense(l, d)):
                        getattr(gru, f"{n}_l{l}{sfx[d]}").copy_(torch.from_numpy(a))
        return gru

    def _file_config(self) -> dict:
        return {"type": "EIEGRU", "mode": self.mode, "batch_first": self.batch_first,
                "num_layers": self.core.num_layers, "num_directions": self.core.num_directions,
                "hidden_size": self.hidden_size}

    def _shape_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        if self.batch_first:
            s += ", batch_first=True"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s


class EIEGRUCell(_GRUBase):
    """Drop-in for ``nn.GRUCell``: ``(input, h) -> h'``, batched or unbatched."""

    def __init__(self, core: EIEGRUCore, *, mode: str = "float32"):
        if core.num_layers != 1 or core.num_directions != 1:
            raise EIEInputError("an EIEGRUCell needs a one-layer, one-direction core")
        super().__init__(core, mode)

    @classmethod
    def from_gru_cell(cls, cell: nn.GRUCell, *, density=0.1, bits=4, n_pe: int = 64, seed: int = 0,
                      name: str | None = None, mode: str = "float32", init: str = "linear",
                      bias: str = "shared") -> "EIEGRUCell":
        """Prune, share and encode an ``nn.GRUCell`` (it is not modified); ``init``, ``bias`` as in ``compress_gru``."""
        check_module(cell, name or "")
        return cls(compress_gru_module(cell, density=density, bits=bits, n_pe=n_pe, seed=seed,
                                       name=name or "gru_cell", init=init, bias=bias), mode=mode)

    @keep_torch_threads
    def forward(self, input, hx=None):
        x, (h,), unbatched = cell_arrays("GRUCell", input, None if hx is None else (hx,), ("h",),
                                         self.input_size, self.hidden_size)
        h = torch.from_numpy(self.core.step(0, 0, x, h, mode=self._run_mode()))
        return h[0] if unbatched else h

    def to_dense(self) -> nn.GRUCell:
        """An ``nn.GRUCell`` with the pruned-and-shared weights."""
        cell = nn.GRUCell(self.input_size, self.hidden_size, bias=True)
        with torch.no_grad():
            for n, a in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), self._dense(0, 0)):
                getattr(cell, n).copy_(torch.from_numpy(a))
        return cell

    def _file_config(self) -> dict:
        return {"type": "EIEGRUCell", "mode": self.mode, "hidden_size": self.hidden_size}

    def _shape_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"
