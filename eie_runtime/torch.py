"""PyTorch front end: drop-in compressed ``nn.Linear`` / ``nn.LSTM`` / ``nn.LSTMCell``.

>>> import torch, eie_runtime.torch as et
>>> small = et.compress(model, density=0.1, bits=4)           # a copy; model is untouched
>>> y = small(x)                                             # EIE kernels inside, same signature
>>> print(et.summary(small))                                 # per module: shape, density, bits, bytes
>>> et.to_dense(small)                                       # plain torch with the pruned-and-shared weights
>>> fx = et.compress(model, mode="fixed16", calibration=[x1, x2])   # bit-exact 16-bit arithmetic
>>> et.save(small, "model.eie"); small2 = et.load("model.eie", into=model)

Fine-tuning the Deep Compression way (masked gradients, then centroids) is
``prepare_finetune`` / ``share_weights`` / ``finalize``; label-free recovery is
``distill``. EIE modules are inference-only (no gradients), run on the CPU in
float32 (or fixed16), and ignore dropout, as ``model.eval()`` would.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from .tables import format_table
from .converters import torch_import as ti
from .converters.finetune import (Agreement, DistillReport, agreement, call_model, density_schedule, distill_finetune,
                                  finetune_state, prepare_finetune, set_density, share_weights)
from .errors import EIEFormatError, EIEInputError
from .fixed_point import FixedPointParams
from .format import InterleavedCSC
from .layer import EIELinear as CoreLinear
from .layer import MODES
from .lstm import EIELSTMCore
from .model_file import ModelFile, read_model_file, write_model_file

__all__ = ["compress", "EIELinear", "EIELSTM", "EIELSTMCell", "to_dense", "summary", "calibrate", "set_mode",
           "save", "load", "modules_from_file", "prepare_finetune", "share_weights", "set_density",
           "density_schedule", "finalize", "distill", "agreement", "Agreement", "DistillReport",
           "CompressionSummary"]

FILE_KIND = "torch-modules"


# ----------------------------------------------------------------- helpers
def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise EIEInputError(f"mode must be one of {MODES}, got {mode!r}")
    return mode


def _as_array(x, what: str) -> np.ndarray:
    if not isinstance(x, torch.Tensor):
        raise EIEInputError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if x.device.type != "cpu":
        raise EIEInputError(f"{what} is on {x.device}; EIE modules run on the CPU: pass x.cpu()")
    if x.dtype != torch.float32:
        raise EIEInputError(f"{what} is {str(x.dtype).replace('torch.', '')}; EIE modules take float32: pass x.float()")
    return x.detach().contiguous().numpy()


def _keep_torch_threads(forward):
    """Run ``forward`` (any function calling kernels) and restore torch's intra-op thread count afterwards.

    Numba's OpenMP pool and torch share libgomp, and the pool's first parallel
    launch resets the process-wide thread count torch reads: a user who chose
    ``torch.set_num_threads(1)`` would silently get every thread back (and,
    on a loaded machine, torch ops many times slower).
    """
    @functools.wraps(forward)
    def wrapper(*args, **kwargs):
        n = torch.get_num_threads()
        try:
            return forward(*args, **kwargs)
        finally:
            if torch.get_num_threads() != n:
                torch.set_num_threads(n)
    return wrapper


def _layer_tensors(layer: CoreLinear) -> dict:
    m, f = layer.matrix, layer.fixed
    config = [m.shape[0], m.shape[1], m.n_pe, int(layer.bias is not None), int(layer.activation == "relu"),
              int(f is not None), f.in_frac if f else 0, f.w_frac if f else 0, f.out_frac if f else 0]
    out = {"entries": torch.from_numpy(m.entries.copy()), "ptr": torch.from_numpy(m.ptr.copy()),
           "codebook": torch.from_numpy(m.codebook.copy()), "config": torch.tensor(config, dtype=torch.int64)}
    if layer.bias is not None:
        out["bias"] = torch.from_numpy(layer.bias.copy())
    return out


def _layer_from_tensors(get: Callable, name: str) -> CoreLinear:
    """Rebuild (and fully validate) a core layer from state-dict tensors; ``get(key)`` returns a tensor."""
    config = get("config")
    if config.dtype != torch.int64 or config.shape != (9,):
        raise EIEFormatError(f"layer {name!r}: 'config' must be 9 int64 values")
    m, k, n_pe, has_bias, relu, has_fixed, fi, fw, fo = (int(v) for v in config)
    entries = get("entries").numpy()
    ptr = get("ptr").numpy()
    if ptr.dtype != np.int64 or ptr.shape != (n_pe, k + 1):
        raise EIEFormatError(f"layer {name!r}: 'ptr' must be int64 of shape {(n_pe, k + 1)}, got {ptr.dtype} {ptr.shape}")
    matrix = InterleavedCSC((m, k), n_pe, entries.copy(), ptr.copy(), get("codebook").numpy().copy(), name=name)
    bias = get("bias").numpy().copy() if has_bias else None
    fixed = FixedPointParams(fi, fw, fo) if has_fixed else None
    return CoreLinear(matrix, bias=bias, activation="relu" if relu else None, fixed=fixed, name=name)


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


class _EIEModule(nn.Module):
    """What every EIE module shares: mode, state dict of its core layers, model files."""

    mode: str

    def _named_layers(self) -> list[tuple[str, CoreLinear]]:
        raise NotImplementedError

    def _set_layers(self, layers: list[CoreLinear]) -> None:
        raise NotImplementedError

    def _file_config(self) -> dict:
        raise NotImplementedError

    def eie_layers(self) -> list[CoreLinear]:
        """The core layers (``eie_runtime.EIELinear``) this module runs."""
        return [layer for _, layer in self._named_layers()]

    # state dict: the compressed arrays themselves, rebuilt and validated on load
    def _save_to_state_dict(self, destination, prefix, keep_vars):
        for lp, layer in self._named_layers():
            for key, t in _layer_tensors(layer).items():
                destination[prefix + lp + key] = t
        destination[prefix + "mode"] = torch.tensor(MODES.index(self.mode), dtype=torch.int64)

    @_keep_torch_threads
    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        used = set()

        def getter(lp):
            def get(key):
                full = prefix + lp + key
                if full not in state_dict:
                    raise KeyError(full)
                used.add(full)
                return state_dict[full]
            return get

        new_layers = []
        try:
            for lp, old in self._named_layers():
                new = _layer_from_tensors(getter(lp), old.name)
                if new.shape != old.shape:
                    raise EIEFormatError(f"layer {old.name!r} has shape {new.shape} in the state dict, "
                                         f"but this module's is {old.shape}")
                new_layers.append(new)
            mode_key = prefix + "mode"
            if mode_key in state_dict:
                used.add(mode_key)
                index = int(state_dict[mode_key])
                if not 0 <= index < len(MODES):
                    raise EIEFormatError(f"'mode' must be 0 (float32) or 1 (fixed16), got {index}")
                mode = MODES[index]
            else:
                missing_keys.append(mode_key)
                mode = self.mode
        except KeyError as exc:
            missing_keys.append(exc.args[0])
            return
        except (EIEFormatError, EIEInputError, IndexError) as exc:
            error_msgs.append(f"{type(self).__name__} at {prefix or '<root>'!r}: {exc}")
            return
        if strict:
            unexpected_keys.extend(k for k in state_dict if k.startswith(prefix) and k not in used)
        self._set_layers(new_layers)
        self.mode = mode

    # calibration for fixed16
    def _start_recording(self) -> None:
        raise NotImplementedError

    def _finish_recording(self) -> None:
        raise NotImplementedError

    def _eie_file_contents(self) -> dict:
        return _file_contents({"": self})

    def extra_repr(self) -> str:
        nnz = sum(l.matrix.nnz for l in self.eie_layers())
        size = sum(l.shape[0] * l.shape[1] for l in self.eie_layers())
        bits = sorted({l.matrix.bits for l in self.eie_layers()})
        return (f"{self._shape_repr()}, density={nnz / max(1, size):.3f}, bits={bits[0] if len(bits) == 1 else bits}, "
                f"n_pe={self.eie_layers()[0].matrix.n_pe}, mode={self.mode!r}")


# ------------------------------------------------------------------ Linear
class EIELinear(_EIEModule):
    """Drop-in for ``nn.Linear``: ``(*, in_features) -> (*, out_features)``, float32 on the CPU.

    Parameters
    ----------
    layer : eie_runtime.EIELinear
        The compressed layer (``y = W x + b``, no activation).
    mode : "float32" or "fixed16"
    """

    def __init__(self, layer: CoreLinear, mode: str = "float32"):
        super().__init__()
        if not isinstance(layer, CoreLinear):
            raise EIEInputError(f"layer must be an eie_runtime.EIELinear, got {type(layer).__name__}")
        if layer.activation is not None:
            raise EIEInputError("EIELinear modules replace nn.Linear, which has no activation; got activation="
                                f"{layer.activation!r}")
        self.layer = layer
        self.mode = _check_mode(mode)
        self._calib: list | None = None

    @classmethod
    def from_linear(cls, linear: nn.Linear, *, density: float = 0.1, bits: int = 4, n_pe: int = 64,
                    seed: int = 0, name: str | None = None, mode: str = "float32") -> "EIELinear":
        """Prune, share and encode an ``nn.Linear`` (it is not modified)."""
        ti.check_module(linear, name or "")
        return cls(ti.compress_linear_module(linear, density=density, bits=bits, n_pe=n_pe, seed=seed,
                                             name=name or "linear"), mode=mode)

    @property
    def in_features(self) -> int:
        return self.layer.in_features

    @property
    def out_features(self) -> int:
        return self.layer.out_features

    @_keep_torch_threads
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = _as_array(x, f"input of {self.layer.name!r}")
        k, m = self.in_features, self.out_features
        if a.ndim == 0 or a.shape[-1] != k:
            raise EIEInputError(f"layer {self.layer.name!r}: input has shape {tuple(a.shape)}, expected (*, {k})")
        lead = a.shape[:-1]
        rows = a.reshape(-1, k)
        if self._calib is not None:
            self._calib.append(rows.copy())
        if rows.shape[0] == 0:
            y = np.zeros((0, m), dtype=np.float32)
        elif rows.shape[0] == 1:  # one vector: the per-PE parallel kernel
            y = self.layer(rows[0], mode=self.mode)[None]
        else:
            y = self.layer(rows, mode=self.mode)
        return torch.from_numpy(np.ascontiguousarray(y)).reshape(*lead, m)

    def to_dense(self) -> nn.Linear:
        """An ``nn.Linear`` holding the pruned-and-shared weights."""
        lin = nn.Linear(self.in_features, self.out_features, bias=self.layer.bias is not None)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(self.layer.dense()))
            if self.layer.bias is not None:
                lin.bias.copy_(torch.from_numpy(self.layer.bias))
        return lin

    def calibrate(self, samples) -> FixedPointParams:
        """Set fixed16 fractional bits from sample inputs ``(*, in_features)``."""
        a = _as_array(samples, "calibration samples") if isinstance(samples, torch.Tensor) else np.asarray(samples, np.float32)
        return self.layer.calibrate(a.reshape(-1, self.in_features))

    def _named_layers(self):
        return [("", self.layer)]

    def _set_layers(self, layers):
        self.layer = layers[0]

    def _file_config(self) -> dict:
        return {"type": "EIELinear", "mode": self.mode}

    def _shape_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.layer.bias is not None}"

    def _start_recording(self):
        self._calib = []

    def _finish_recording(self):
        rows, self._calib = self._calib, None
        if rows:
            self.layer.calibrate(np.concatenate(rows))


# -------------------------------------------------------------------- LSTM
class _LSTMBase(_EIEModule):
    def __init__(self, core: EIELSTMCore, mode: str):
        super().__init__()
        if not isinstance(core, EIELSTMCore):
            raise EIEInputError(f"core must be an EIELSTMCore, got {type(core).__name__}")
        self.core = core
        self.mode = _check_mode(mode)
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
        mat = self.core.cells[l][d].dense()
        i_size = mat.shape[1] - self.core.out_size - 1
        return mat[:, :i_size], mat[:, i_size:-1], mat[:, -1]


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
        ti.check_module(lstm, name or "")
        core = ti.compress_lstm_module(lstm, density=density, bits=bits, n_pe=n_pe, seed=seed, name=name or "lstm")
        return cls(core, batch_first=lstm.batch_first, mode=mode)

    num_layers = property(lambda self: self.core.num_layers)
    bidirectional = property(lambda self: self.core.num_directions == 2)
    proj_size = property(lambda self: self.core.out_size if self.core.proj else 0)

    @_keep_torch_threads
    def forward(self, input, hx=None):
        packed = isinstance(input, nn.utils.rnn.PackedSequence)
        lens = None
        if packed:
            padded, lens_t = nn.utils.rnn.pad_packed_sequence(input)  # (T, B, I), original batch order
            x = _as_array(padded, "LSTM input")
            lens = lens_t.numpy()
        else:
            x = _as_array(input, "LSTM input")
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
            h0, c0 = (_as_array(t, name) for t, name in zip(hx, ("h0", "c0")))
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
        ti.check_module(cell, name or "")
        return cls(ti.compress_lstm_module(cell, density=density, bits=bits, n_pe=n_pe, seed=seed,
                                           name=name or "lstm_cell"), mode=mode)

    @_keep_torch_threads
    def forward(self, input, hx=None):
        x = _as_array(input, "LSTMCell input")
        if x.ndim not in (1, 2) or x.shape[-1] != self.input_size:
            raise EIEInputError(f"LSTMCell input has shape {tuple(x.shape)}, expected ({self.input_size},) "
                                f"or (batch, {self.input_size})")
        unbatched = x.ndim == 1
        x = x.reshape(-1, self.input_size)
        b, hs = x.shape[0], self.hidden_size
        if hx is None:
            h = np.zeros((b, hs), np.float32)
            c = np.zeros((b, hs), np.float32)
        else:
            if not (isinstance(hx, (tuple, list)) and len(hx) == 2):
                raise EIEInputError("LSTMCell hx must be a tuple (h, c)")
            want = (hs,) if unbatched else (b, hs)
            h, c = (_as_array(t, n) for t, n in zip(hx, ("h", "c")))
            if h.shape != want or c.shape != want:
                raise EIEInputError(f"LSTMCell hx must be two tensors of shape {want}, got {h.shape} and {c.shape}")
            h, c = h.reshape(b, hs), c.reshape(b, hs)
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


# ------------------------------------------------------------ model level
def eie_modules(model: nn.Module) -> dict[str, _EIEModule]:
    """Name -> EIE module, for every EIE module in ``model`` (first name of shared ones)."""
    return {n: m for n, m in model.named_modules() if isinstance(m, _EIEModule)}


def _wrap(target: ti.Target, *, n_pe: int, seed: int, mode: str) -> _EIEModule:
    name = target.name or "model"
    mod = target.module
    if target.kind == "linear":
        return EIELinear.from_linear(mod, density=target.density, bits=target.bits, n_pe=n_pe, seed=seed,
                                     name=name, mode="float32")
    if target.kind == "lstm":
        return EIELSTM.from_lstm(mod, density=target.density, bits=target.bits, n_pe=n_pe, seed=seed,
                                 name=name, mode="float32")
    return EIELSTMCell.from_lstm_cell(mod, density=target.density, bits=target.bits, n_pe=n_pe, seed=seed,
                                      name=name, mode="float32")


@_keep_torch_threads
def compress(model: nn.Module, *, density=0.1, bits=4, n_pe: int = 64, mode: str = "float32",
             filter_fn: Callable | None = None, calibration: Iterable | None = None, seed: int = 0,
             progress: bool = False) -> nn.Module:
    """A copy of ``model`` with its ``nn.Linear``, ``nn.LSTM`` and ``nn.LSTMCell`` modules compressed.

    Parameters
    ----------
    model : nn.Module
        float32, on the CPU; left untouched.
    density, bits : float / int, or dict keyed by module name
        Fraction of weights kept (magnitude pruning) and codebook bits (1..4).
        Dicts may name any subset: others get 0.1 / 4; ``None`` leaves a module dense.
        An LSTM's entry may be a list with one value per layer.
    n_pe : int
        PEs the matrices are interleaved for (the paper's 64).
    mode : "float32" or "fixed16"
    filter_fn : callable(module, name) -> bool, optional
        Chooses which supported modules to compress (torchao's convention).
    calibration : iterable of model inputs, optional
        Sets fixed16 fractional bits (required for ``mode="fixed16"``). Each
        item is a tensor, a tuple of positional arguments, or a dict of keyword arguments.
    seed : int
        Seed of the weight-sharing k-means.

    Returns
    -------
    nn.Module
        The compressed copy (an EIE module itself if ``model`` was a single supported module).

    Examples
    --------
    >>> small = compress(model, density={"fc1": 0.05}, bits=4, filter_fn=lambda m, n: "head" not in n)
    >>> print(summary(small)); y = small(x)
    """
    _check_mode(mode)
    if mode == "fixed16" and calibration is None:
        raise EIEInputError("mode='fixed16' needs calibration=<iterable of sample inputs> to choose fractional bits")
    targets = ti.find_targets(model, density=density, bits=bits, filter_fn=filter_fn)
    new = copy.deepcopy(model)
    new_modules = dict(new.named_modules(remove_duplicate=False))
    replacements = {}
    it = targets
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(targets, desc="compress", unit="module")
    for t in it:
        t = ti.Target(t.name, t.names, new_modules[t.name], t.kind, t.density, t.bits)
        wrapped = _wrap(t, n_pe=n_pe, seed=seed, mode=mode)
        for n in t.names:
            replacements[n] = wrapped
    new = ti.replace_modules(new, replacements)
    if calibration is not None:
        calibrate(new, calibration)
    set_mode(new, mode)
    return new


@_keep_torch_threads
def calibrate(model: nn.Module, samples: Iterable) -> None:
    """Choose fixed16 fractional bits of every EIE module from sample model inputs.

    The model runs in float32 on each sample; every EIE layer calibrates on the
    inputs it saw (an LSTM's matrices on their ``[x_t; h_{t-1}; 1]`` vectors).
    """
    mods = list(eie_modules(model).values())
    if not mods:
        raise EIEInputError("the model has no EIE modules to calibrate")
    modes = [m.mode for m in mods]
    for m in mods:
        m.mode = "float32"
        m._start_recording()
    n = 0
    try:
        with torch.no_grad():
            for item in samples:
                call_model(model, item)
                n += 1
    finally:
        for m, mode in zip(mods, modes):
            m._finish_recording()
            m.mode = mode
    if n == 0:
        raise EIEInputError("calibration samples are empty")


def set_mode(model: nn.Module, mode: str) -> nn.Module:
    """Switch every EIE module of ``model`` to ``mode`` (fixed16 needs calibration first)."""
    _check_mode(mode)
    for name, m in eie_modules(model).items():
        if mode == "fixed16":
            missing = [l.name for l in m.eie_layers() if l.fixed is None]
            if missing:
                raise EIEInputError(f"module {name!r}: layers {missing} have no fixed-point parameters; "
                                    "run eie_runtime.torch.calibrate(model, samples) first")
        m.mode = mode
    return model


@_keep_torch_threads
def to_dense(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every EIE module replaced by its plain torch equivalent."""
    new = copy.deepcopy(model)
    if isinstance(new, _EIEModule):
        return new.to_dense()
    repl = {}
    dense_of = {}
    for name, m in new.named_modules(remove_duplicate=False):
        if isinstance(m, _EIEModule):
            repl[name] = dense_of.setdefault(id(m), m.to_dense())
    return ti.replace_modules(new, repl)


# ----------------------------------------------------------------- summary
@dataclass
class CompressionSummary:
    """Per EIE module: shape, density, bits, bytes before and after. ``print`` it for a table."""

    rows: list[dict]

    @property
    def dense_bytes(self) -> int:
        return sum(r["dense bytes"] for r in self.rows)

    @property
    def compressed_bytes(self) -> int:
        return sum(r["EIE bytes"] for r in self.rows)

    def __str__(self) -> str:
        rows = [dict(r, density=f"{r['density']:.3f}", ratio=f"{r['ratio']:.1f}x") for r in self.rows]
        if len(rows) > 1:
            d, c = self.dense_bytes, self.compressed_bytes
            rows.append({"module": "total", "type": "", "matrices": "", "density": "", "bits": "",
                         "dense bytes": d, "EIE bytes": c, "ratio": f"{d / max(1, c):.1f}x"})
        return format_table(rows)


def summary(model: nn.Module) -> CompressionSummary:
    """What ``compress`` did to each module. Dense bytes count float32 weights and biases;
    EIE bytes count 1-byte entries (padding included), 16-bit pointers, the codebook and the bias."""
    rows = []
    for name, m in eie_modules(model).items():
        layers = m.eie_layers()
        nnz = sum(l.matrix.nnz for l in layers)
        size = sum(l.shape[0] * l.shape[1] for l in layers)
        dense = sum(4 * (l.shape[0] * l.shape[1] + (l.out_features if l.bias is not None else 0)) for l in layers)
        packed = sum(l.matrix.nbytes + (4 * l.out_features if l.bias is not None else 0) for l in layers)
        bits = sorted({l.matrix.bits for l in layers})
        shapes = ", ".join(f"{l.shape[0]}x{l.shape[1]}" for l in layers)
        rows.append({"module": name or "<model>", "type": type(m).__name__, "matrices": shapes,
                     "density": nnz / max(1, size), "bits": bits[0] if len(bits) == 1 else bits,
                     "dense bytes": dense, "EIE bytes": packed, "ratio": dense / max(1, packed)})
    return CompressionSummary(rows)


# ----------------------------------------------------------- model files
def _file_contents(mods: dict) -> dict:
    layers, entries = [], []
    for name, m in mods.items():
        own = m.eie_layers()
        entries.append({"name": name, "first_layer": len(layers), "n_layers": len(own), **m._file_config()})
        layers.extend(own)
    return {"layers": layers, "kind": FILE_KIND, "meta": {"modules": entries}}


@_keep_torch_threads
def save(model: nn.Module, path) -> None:
    """Save every EIE module of ``model`` (or one EIE module) to a ``.eie`` file, atomically.

    Only the compressed layers are stored; the rest of the model (convolutions,
    activations) stays the user's: rebuild it and ``load(path, into=model)``.
    """
    mods = {"": model} if isinstance(model, _EIEModule) else eie_modules(model)
    if not mods:
        raise EIEInputError("the model has no EIE modules to save; compress it first")
    write_model_file(path, **_file_contents(mods))


@_keep_torch_threads
def modules_from_file(mf: ModelFile):
    """The EIE modules of a ``torch-modules`` file: one module if saved from one, else ``{name: module}``.

    This is the ``eie_runtime.file_kinds`` entry point that lets ``eie_runtime.load`` open these files.
    """
    entries = mf.meta.get("modules")
    if not isinstance(entries, list):
        raise EIEFormatError("torch-modules file: meta 'modules' must be a list")
    out = {}
    for e in entries:
        try:
            name, first, count, typ = e["name"], int(e["first_layer"]), int(e["n_layers"]), e["type"]
            mode = _check_mode(e.get("mode", "float32"))
        except (KeyError, TypeError, ValueError) as exc:
            raise EIEFormatError(f"torch-modules file: bad module entry {e!r} ({exc})") from None
        if first < 0 or count < 1 or first + count > len(mf.layers):
            raise EIEFormatError(f"module {name!r}: layers {first}..{first + count - 1} are not in the file "
                                 f"({len(mf.layers)} layers)")
        layers = mf.layers[first:first + count]
        try:
            if typ == "EIELinear":
                mod = EIELinear(layers[0], mode="float32")
            elif typ in ("EIELSTM", "EIELSTMCell"):
                nl, nd = (int(e["num_layers"]), int(e["num_directions"])) if typ == "EIELSTM" else (1, 1)
                has_proj = bool(e.get("proj", False))
                if count != nl * nd * (2 if has_proj else 1):
                    raise EIEFormatError(f"module {name!r}: {count} layers for {nl} layers x {nd} directions")
                cells = [layers[l * nd:(l + 1) * nd] for l in range(nl)]
                proj = [layers[nl * nd + l * nd:nl * nd + (l + 1) * nd] for l in range(nl)] if has_proj else None
                core = EIELSTMCore(cells, int(e["hidden_size"]), proj=proj)
                mod = (EIELSTM(core, batch_first=bool(e.get("batch_first", False)))
                       if typ == "EIELSTM" else EIELSTMCell(core))
            else:
                raise EIEFormatError(f"module {name!r}: unknown type {typ!r}")
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, EIEFormatError):
                raise
            raise EIEFormatError(f"module {name!r}: {exc}") from None
        if mode == "fixed16":
            set_mode(mod, "fixed16")
        out[name] = mod
    if list(out) == [""]:
        return out[""]
    return out


@_keep_torch_threads
def load(path, into: nn.Module | None = None):
    """Load a file written by :func:`save`.

    Without ``into``: the EIE module (if one was saved) or ``{name: module}``.
    With ``into`` (the original dense model, or any model with modules at those
    names): a copy of ``into`` with those modules replaced by the loaded ones.
    """
    mf = read_model_file(path)
    if mf.kind != FILE_KIND:
        raise EIEFormatError(f"{path}: holds a {mf.kind!r} model, not torch modules ({FILE_KIND!r})")
    mods = modules_from_file(mf)
    if into is None:
        return mods
    if isinstance(mods, _EIEModule):
        return mods
    new = copy.deepcopy(into)
    known = dict(new.named_modules(remove_duplicate=False))
    repl = {}
    for name, m in mods.items():
        if name not in known:
            raise EIEInputError(f"{path}: module {name!r} is not in the given {type(into).__name__}")
        for other, mod in known.items():  # every alias of that module
            if mod is known[name]:
                repl[other] = m
    return ti.replace_modules(new, repl)


# ------------------------------------------------------------- fine-tuning
@_keep_torch_threads
def finalize(model: nn.Module, *, bits=None, n_pe: int = 64, mode: str = "float32",
             calibration: Iterable | None = None, seed: int = 0) -> nn.Module:
    """Turn a model from :func:`prepare_finetune` (after training) into EIE modules.

    Masks and codebooks are kept exactly as trained; modules that were only
    pruned (no ``bits`` at prepare time) are shared now with ``bits`` (default 4)
    over their kept weights. The result equals the prepared model's output.
    """
    _check_mode(mode)
    if mode == "fixed16" and calibration is None:
        raise EIEInputError("mode='fixed16' needs calibration=<iterable of sample inputs>")
    states = finetune_state(model)
    if not states:
        raise EIEInputError("the model has no modules prepared by prepare_finetune")
    shared = share_weights(model, bits=bits, seed=seed) if any(not s.shared for s in states.values()) else model
    new = copy.deepcopy(shared)
    states = finetune_state(new)
    modules = dict(new.named_modules(remove_duplicate=False))
    repl = {}
    for name, st in states.items():
        mod = modules[name]
        core = st.to_core(mod, n_pe=n_pe, name=name or "model")
        if st.kind == "linear":
            wrapped = EIELinear(core)
        elif st.kind == "lstm_cell":
            wrapped = EIELSTMCell(core)
        else:
            wrapped = EIELSTM(core, batch_first=mod.batch_first)
        for n, m in modules.items():
            if m is mod:
                repl[n] = wrapped
    new = ti.replace_modules(new, repl)
    if calibration is not None:
        calibrate(new, calibration)
    return set_mode(new, mode)


@_keep_torch_threads
def distill(model: nn.Module, inputs: Iterable, *, density=0.1, bits=4, n_pe: int = 64, epochs: int = 20,
            lr: float = 1e-3, filter_fn: Callable | None = None, eval_inputs: Iterable | None = None,
            mode: str = "float32", seed: int = 0, progress: bool = True) -> tuple[nn.Module, DistillReport]:
    """Compress ``model`` and recover its behaviour without labels (knowledge distillation).

    The pruned-and-shared copy learns to reproduce the dense model's outputs on
    ``inputs`` (any iterable of model inputs), masks and centroid sharing kept
    throughout (only the codebooks train, each centroid's gradient the sum of
    its weights'). Returns the EIE model and a report of output agreement
    (cosine similarity, max-abs error, argmax agreement) before vs after, on
    ``eval_inputs`` (default: ``inputs``).
    """
    prepared = prepare_finetune(model, density=density, bits=bits, filter_fn=filter_fn, seed=seed)
    report = distill_finetune(model, prepared, inputs, epochs=epochs, lr=lr, eval_inputs=eval_inputs,
                              progress=progress)
    calib = list(eval_inputs if eval_inputs is not None else report.inputs) if mode == "fixed16" else None
    report.inputs = None
    return finalize(prepared, n_pe=n_pe, mode=mode, calibration=calib, seed=seed), report
