"""``EIELSTM`` and ``EIELSTMCell``: drop-in ``nn.LSTM`` / ``nn.LSTMCell`` on EIE's kernels.

Each layer/direction is one EIE matrix over ``[x_t; h_{t-1}; 1]`` (the paper's
NT-LSTM layout), run by the core's :class:`~eie_runtime.lstm.EIELSTMCore`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import EIEInputError
from ..layer import EIELinear as CoreLinear
from ..lstm import EIELSTMCore
from .base import EIEModule, as_array, cell_arrays, check_mode
from .targets import check_module
from .threads import keep_torch_threads
from .weights import compress_lstm_module


class _Recorder:
    """Stands in for a core layer during calibration: keeps every input, then runs the layer."""

    def __init__(self, layer: CoreLinear):
        self.layer = layer
        self.inputs: list[np.ndarray] = []

    def __getattr__(self, name):  # shape, in_features, ... as the layer's
        return getattr(self.layer, name)

    def __call__(self, x, mode="float32"):
        self.inputs.append(np.asarray(x, dtype=np.float32).reshape(-1, self.layer.in_features).copy())
        return self.layer(x, mode="float32")


class _LSTMBase(EIEModule):
    """What EIELSTM and EIELSTMCell share: the core, its layers by state-dict prefix, calibration."""

    def __init__(self, core: EIELSTMCore, mode: str):
        super().__init__()
        if not isinstance(core, EIELSTMCore):
            raise EIEInputError(f"core must be an EIELSTMCore, got {type(core).__name__}")
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
        out = [(f"cell_l{l}{sfx[d]}.", c) for l, dirs in enumerate(self.core.cells) for d, c in enumerate(dirs)]
        if self.core.proj:
            out += [(f"proj_l{l}{sfx[d]}.", p) for l, dirs in enumerate(self.core.proj) for d, p in enumerate(dirs)]
        return out

    def _set_layers(self, layers):
        nl, nd = self.core.num_layers, self.core.num_directions
        cells = [layers[l * nd:(l + 1) * nd] for l in range(nl)]
        rest = layers[nl * nd:]
        proj = [rest[l * nd:(l + 1) * nd] for l in range(nl)] if rest else None
        self.core = EIELSTMCore(cells, self.core.hidden_size, proj=proj)

    def _start_recording(self):
        core = self.core
        self._recorders = ([[_Recorder(c) for c in dirs] for dirs in core.cells],
                           [[_Recorder(p) for p in dirs] for dirs in core.proj] if core.proj else None)
        core.cells, core.proj = self._recorders

    def _finish_recording(self):
        cells, proj = self._recorders
        self._recorders = None
        self.core.cells = [[r.layer for r in dirs] for dirs in cells]
        self.core.proj = [[r.layer for r in dirs] for dirs in proj] if proj else None
        for rec in [r for dirs in cells for r in dirs] + ([r for dirs in proj for r in dirs] if proj else []):
            if rec.inputs:
                rec.layer.calibrate(np.concatenate(rec.inputs))

    def _run_mode(self) -> str:
        # while recording, the recorders run float32 whatever the mode
        return "float32" if self._recorders is not None else self.mode

    def _cell_dense(self, l: int, d: int):
        """(w_ih, w_hh, bias) of one layer/direction from its EIE matrix (bias = last column)."""
        cell = self.core.cells[l][d]
        mat = cell.dense()
        i_size = mat.shape[1] - self.core.out_size - 1
        bias = mat[:, -1] if cell.bias is None else mat[:, -1] + cell.bias  # lstm_bias="dense": the layer's bias
        return mat[:, :i_size], mat[:, i_size:-1], bias


class EIELSTM(_LSTMBase):
    """Drop-in for ``nn.LSTM`` (inference): ``(input, (h0, c0)) -> (output, (h_n, c_n))``.

    Supports ``batch_first``, several layers, ``bidirectional``, ``proj_size``,
    unbatched 2-D input and ``PackedSequence`` input. Each layer/direction is
    one EIE matrix over ``[x_t; h_{t-1}; 1]`` (the paper's NT-LSTM layout).
    """

    def __init__(self, core: EIELSTMCore, *, batch_first: bool = False, mode: str = "float32"):
        super().__init__(core, mode)
        self.batch_first = bool(batch_first)

    @classmethod
    def from_lstm(cls, lstm: nn.LSTM, *, density=0.1, bits=4, n_pe: int = 64, seed: int = 0,
                  name: str | None = None, mode: str = "float32") -> "EIELSTM":
        """Prune, share and encode an ``nn.LSTM`` (it is not modified)."""
        check_module(lstm, name or "")
        core = compress_lstm_module(lstm, density=density, bits=bits, n_pe=n_pe, seed=seed, name=name or "lstm")
        return cls(core, batch_first=lstm.batch_first, mode=mode)

    num_layers = property(lambda self: self.core.num_layers)
    bidirectional = property(lambda self: self.core.num_directions == 2)
    proj_size = property(lambda self: self.core.out_size if self.core.proj else 0)

    @keep_torch_threads
    def forward(self, input, hx=None):
        packed = isinstance(input, nn.utils.rnn.PackedSequence)
        lens = None
        if packed:
            padded, lens_t = nn.utils.rnn.pad_packed_sequence(input)  # (T, B, I), original batch order
            x = as_array(padded, "LSTM input")
            lens = lens_t.numpy()
        else:
            x = as_array(input, "LSTM input")
            if x.ndim not in (2, 3):
                raise EIEInputError(f"LSTM input must be 2-D (unbatched) or 3-D, got shape {tuple(x.shape)}")
        unbatched = x.ndim == 2
        if unbatched:
            x = x[:, None, :]
        elif self.batch_first and not packed:
            x = x.transpose(1, 0, 2)
        h0 = c0 = None
        if hx is not None:
            if not (isinstance(hx, (tuple, list)) and len(hx) == 2):
                raise EIEInputError("LSTM hx must be a tuple (h0, c0)")
            h0, c0 = (as_array(t, name) for t, name in zip(hx, ("h0", "c0")))
            if unbatched:
                h0, c0 = h0[:, None, :], c0[:, None, :]
        y, h_n, c_n = self.core.forward(np.ascontiguousarray(x), h0, c0, seq_lens=lens, mode=self._run_mode())
        h_n, c_n = torch.from_numpy(h_n), torch.from_numpy(c_n)
        if unbatched:
            return torch.from_numpy(y[:, 0]), (h_n[:, 0], c_n[:, 0])
        if packed:
            out = _repack(torch.from_numpy(y), input, lens_t)
            return out, (h_n, c_n)
        if self.batch_first:
            y = y.transpose(1, 0, 2)
        return torch.from_numpy(np.ascontiguousarray(y)), (h_n, c_n)

    def to_dense(self) -> nn.LSTM:
        """An ``nn.LSTM`` with the pruned-and-shared weights (bias in ``bias_ih``, ``bias_hh`` = 0)."""
        core = self.core
        lstm = nn.LSTM(self.input_size, self.hidden_size, num_layers=core.num_layers, bias=True,
                       batch_first=self.batch_first, bidirectional=self.bidirectional, proj_size=self.proj_size)
        sfx = ("", "_reverse")
        with torch.no_grad():
            for l in range(core.num_layers):
                for d in range(core.num_directions):
                    w_ih, w_hh, b = self._cell_dense(l, d)
                    getattr(lstm, f"weight_ih_l{l}{sfx[d]}").copy_(torch.from_numpy(w_ih))
                    getattr(lstm, f"weight_hh_l{l}{sfx[d]}").copy_(torch.from_numpy(w_hh))
                    getattr(lstm, f"bias_ih_l{l}{sfx[d]}").copy_(torch.from_numpy(b))
                    getattr(lstm, f"bias_hh_l{l}{sfx[d]}").zero_()
                    if core.proj:
                        getattr(lstm, f"weight_hr_l{l}{sfx[d]}").copy_(torch.from_numpy(core.proj[l][d].dense()))
        return lstm

    def _file_config(self) -> dict:
        return {"type": "EIELSTM", "mode": self.mode, "batch_first": self.batch_first,
                "num_layers": self.core.num_layers, "num_directions": self.core.num_directions,
                "hidden_size": self.hidden_size, "proj": self.core.proj is not None}

    def _shape_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        if self.batch_first:
            s += ", batch_first=True"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        return s


def _repack(y: torch.Tensor, like, lens: torch.Tensor):
    """Pack padded outputs (T, B, H), batch in original order, with ``like``'s sorting."""
    order = like.sorted_indices
    if order is not None:
        y, lens = y.index_select(1, order), lens.index_select(0, order)
    data = nn.utils.rnn.pack_padded_sequence(y, lens, enforce_sorted=True).data
    return nn.utils.rnn.PackedSequence(data, like.batch_sizes, like.sorted_indices, like.unsorted_indices)


class EIELSTMCell(_LSTMBase):
    """Drop-in for ``nn.LSTMCell``: ``(input, (h, c)) -> (h', c')``, batched or unbatched."""

    def __init__(self, core: EIELSTMCore, *, mode: str = "float32"):
        if core.num_layers != 1 or core.num_directions != 1 or core.proj:
            raise EIEInputError("an EIELSTMCell needs a one-layer, one-direction core without projection")
        super().__init__(core, mode)

    @classmethod
    def from_lstm_cell(cls, cell: nn.LSTMCell, *, density=0.1, bits=4, n_pe: int = 64, seed: int = 0,
                       name: str | None = None, mode: str = "float32") -> "EIELSTMCell":
        """Prune, share and encode an ``nn.LSTMCell`` (it is not modified)."""
        check_module(cell, name or "")
        return cls(compress_lstm_module(cell, density=density, bits=bits, n_pe=n_pe, seed=seed,
                                        name=name or "lstm_cell"), mode=mode)

    @keep_torch_threads
    def forward(self, input, hx=None):
        if hx is not None and not (isinstance(hx, (tuple, list)) and len(hx) == 2):
            raise EIEInputError("LSTMCell hx must be a tuple (h, c)")
        x, (h, c), unbatched = cell_arrays("LSTMCell", input, hx, ("h", "c"), self.input_size, self.hidden_size)
        h, c = self.core.step(0, 0, x, h, c, mode=self._run_mode())
        h, c = torch.from_numpy(h), torch.from_numpy(c)
        return (h[0], c[0]) if unbatched else (h, c)

    def to_dense(self) -> nn.LSTMCell:
        """An ``nn.LSTMCell`` with the pruned-and-shared weights (bias in ``bias_ih``, ``bias_hh`` = 0)."""
        cell = nn.LSTMCell(self.input_size, self.hidden_size, bias=True)
        w_ih, w_hh, b = self._cell_dense(0, 0)
        with torch.no_grad():
            cell.weight_ih.copy_(torch.from_numpy(w_ih))
            cell.weight_hh.copy_(torch.from_numpy(w_hh))
            cell.bias_ih.copy_(torch.from_numpy(b))
            cell.bias_hh.zero_()
        return cell

    def _file_config(self) -> dict:
        return {"type": "EIELSTMCell", "mode": self.mode, "hidden_size": self.hidden_size}

    def _shape_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"

