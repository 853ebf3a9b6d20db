"""Weights of ``nn.Linear`` / ``nn.LSTM`` / ``nn.LSTMCell`` / ``nn.GRU`` / ``nn.GRUCell`` as numpy, and their compression into core layers."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..converters.compress import compress_matrix
from ..converters.gru import GRUDirectionWeights, compress_gru
from ..converters.lstm import LSTMDirectionWeights, compress_lstm
from ..gru import EIEGRUCore
from ..layer import EIELinear as CoreLinear
from ..lstm import EIELSTMCore
from .targets import module_kind


def to_numpy(t: torch.Tensor | None) -> np.ndarray | None:
    """A float32 numpy copy of ``t`` (None stays None)."""
    if t is None:
        return None
    return t.detach().cpu().numpy().astype(np.float32, copy=True)


def linear_parts(module: nn.Linear) -> tuple[np.ndarray, np.ndarray | None]:
    """(weight (M, K), bias (M,) or None) of an ``nn.Linear``, as float32 numpy."""
    return to_numpy(module.weight), to_numpy(module.bias)


def directions(module) -> list[tuple[int, int]]:
    """``(layer, direction)`` of every matrix of an ``nn.LSTM`` / ``nn.LSTMCell``."""
    if module_kind(module) in ("lstm_cell", "gru_cell"):
        return [(0, 0)]
    return [(l, d) for l in range(module.num_layers) for d in range(2 if module.bidirectional else 1)]


def direction_weights(module, layer: int, direction: int) -> LSTMDirectionWeights:
    """One layer/direction of an ``nn.LSTM`` (or the ``nn.LSTMCell``), in torch's layout, as read now.

    Reading goes through any parametrization, so a fine-tuning model yields its masked or shared values.
    """
    if module_kind(module) == "lstm_cell":
        return LSTMDirectionWeights(to_numpy(module.weight_ih), to_numpy(module.weight_hh),
                                    to_numpy(module.bias_ih), to_numpy(module.bias_hh))
    sfx = f"_l{layer}" + ("_reverse" if direction else "")
    get = lambda n: to_numpy(getattr(module, n + sfx, None))  # biases are absent with bias=False
    return LSTMDirectionWeights(get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh"),
                                get("weight_hr") if module.proj_size > 0 else None)


def lstm_weights(module) -> list[list[LSTMDirectionWeights]]:
    """``weights[layer][direction]`` of an ``nn.LSTM`` or ``nn.LSTMCell``, in torch's layout."""
    out: list[list[LSTMDirectionWeights]] = []
    for l, d in directions(module):
        if d == 0:
            out.append([])
        out[l].append(direction_weights(module, l, d))
    return out


def compress_linear_module(module: nn.Linear, *, density, bits, n_pe, seed=0, name=None, init="linear") -> CoreLinear:
    """An ``nn.Linear`` pruned, shared and encoded (no activation: torch applies its own)."""
    w, b = linear_parts(module)
    return compress_matrix(w, density=density, bits=bits, n_pe=n_pe, bias=b, seed=seed, name=name, init=init)


def compress_lstm_module(module, *, density, bits, n_pe, seed=0, name="lstm", init="linear",
                         bias="shared") -> EIELSTMCore:
    """An ``nn.LSTM`` / ``nn.LSTMCell`` as one EIE matrix per layer/direction (via ``compress_lstm``)."""
    return compress_lstm(lstm_weights(module), density=density, bits=bits, n_pe=n_pe, seed=seed, name=name,
                         init=init, bias=bias)


def gru_weights(module) -> list[list[GRUDirectionWeights]]:
    """``weights[layer][direction]`` of an ``nn.GRU`` or ``nn.GRUCell``, in torch's layout (gates r, z, n)."""
    if module_kind(module) == "gru_cell":
        return [[GRUDirectionWeights(to_numpy(module.weight_ih), to_numpy(module.weight_hh),
                                     to_numpy(module.bias_ih), to_numpy(module.bias_hh))]]
    out: list[list[GRUDirectionWeights]] = []
    for l, d in directions(module):
        if d == 0:
            out.append([])
        sfx = f"_l{l}" + ("_reverse" if d else "")
        get = lambda n: to_numpy(getattr(module, n + sfx, None))  # noqa: E731 (biases are absent with bias=False)
        out[l].append(GRUDirectionWeights(get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh")))
    return out


def compress_gru_module(module, *, density, bits, n_pe, seed=0, name="gru", init="linear",
                        bias="shared") -> EIEGRUCore:
    """An ``nn.GRU`` / ``nn.GRUCell`` as three EIE matrices per layer/direction (via ``compress_gru``)."""
    return compress_gru(gru_weights(module), density=density, bits=bits, n_pe=n_pe, seed=seed, name=name, init=init,
                        bias=bias)
