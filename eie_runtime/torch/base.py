"""What every EIE torch module shares: modes, float32 CPU inputs, its state dict and its ``.eie`` entry.

A module's state dict holds its core layers' compressed arrays (rebuilt and
fully validated on load); a ``.eie`` file of torch modules (kind
``torch-modules``) lists each module's type and settings in its metadata.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from ..errors import EIEFormatError, EIEInputError
from ..fixed_point import FixedPointParams
from ..format import InterleavedCSC
from ..layer import EIELinear as CoreLinear
from ..layer import MODES
from .threads import keep_torch_threads

FILE_KIND = "torch-modules"


def check_mode(mode: str) -> str:
    """``mode`` if it is one of ``MODES`` (float32, fixed16), else an ``EIEInputError``."""
    if mode not in MODES:
        raise EIEInputError(f"mode must be one of {MODES}, got {mode!r}")
    return mode


def as_array(x, what: str) -> np.ndarray:
    """A float32 CPU tensor's data as numpy (no copy); anything else is refused saying what to pass."""
    if not isinstance(x, torch.Tensor):
        raise EIEInputError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if x.device.type != "cpu":
        raise EIEInputError(f"{what} is on {x.device}; EIE modules run on the CPU: pass x.cpu()")
    if x.dtype != torch.float32:
        raise EIEInputError(f"{what} is {str(x.dtype).replace('torch.', '')}; EIE modules take float32: pass x.float()")
    return x.detach().contiguous().numpy()


def _layer_tensors(layer: CoreLinear) -> dict:
    """A core layer as state-dict tensors: its compressed arrays and a ``config`` vector."""
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



def cell_arrays(cell: str, input, states, names: tuple, input_size: int, hidden_size: int):
    """A recurrent cell's call as arrays: the input as (batch, input_size), each state named in ``names``
    as (batch, hidden_size) (zeros where ``states`` is None), and whether the call was unbatched."""
    x = as_array(input, f"{cell} input")
    if x.ndim not in (1, 2) or x.shape[-1] != input_size:
        raise EIEInputError(f"{cell} input has shape {tuple(x.shape)}, expected ({input_size},) "
                            f"or (batch, {input_size})")
    unbatched = x.ndim == 1
    x = x.reshape(-1, input_size)
    b = x.shape[0]
    if states is None:
        return x, [np.zeros((b, hidden_size), np.float32) for _ in names], unbatched
    want = (hidden_size,) if unbatched else (b, hidden_size)
    arrays = [as_array(t, n) for t, n in zip(states, names)]
    for a, n in zip(arrays, names):
        if a.shape != want:
            raise EIEInputError(f"{cell} {n} must have shape {want}, got {tuple(a.shape)}")
    return x, [a.reshape(b, hidden_size) for a in arrays], unbatched


class EIEModule(nn.Module):
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

    @keep_torch_threads
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
        return file_contents({"": self})

    def extra_repr(self) -> str:
        nnz = sum(l.matrix.nnz for l in self.eie_layers())
        size = sum(l.shape[0] * l.shape[1] for l in self.eie_layers())
        bits = sorted({l.matrix.bits for l in self.eie_layers()})
        return (f"{self._shape_repr()}, density={nnz / max(1, size):.3f}, bits={bits[0] if len(bits) == 1 else bits}, "
                f"n_pe={self.eie_layers()[0].matrix.n_pe}, mode={self.mode!r}")



def file_contents(mods: dict[str, EIEModule]) -> dict:
    """``write_model_file`` arguments for ``{name: module}``: their core layers in order, each module's entry."""
    layers, entries = [], []
    for name, m in mods.items():
        own = m.eie_layers()
        entries.append({"name": name, "first_layer": len(layers), "n_layers": len(own), **m._file_config()})
        layers.extend(own)
    return {"layers": layers, "kind": FILE_KIND, "meta": {"modules": entries}}
