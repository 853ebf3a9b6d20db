"""The ``torch.nn.utils.parametrize`` pieces fine-tuning puts on Linear/LSTM weights, and how they are put there.

Pruned stage: ``w * mask`` (pruned weights stay 0 and get no gradient).
Shared stage: ``[0, centroids][codes]`` with only the centroids trainable.
An LSTM layer/direction is one matrix over ``[x_t; h_{t-1}; 1]``: its
``weight_ih``, ``weight_hh`` and bias column share one mask or one codebook
(a ``group``), with ``bias_hh`` held at zero once shared.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from .targets import module_kind


class PruneMask(nn.Module):
    """``w * mask``: pruned weights stay 0 and get no gradient."""

    def __init__(self, mask: np.ndarray, group, plan: dict | None = None):
        super().__init__()
        self.register_buffer("mask", torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32)))
        self.group = group
        self.plan = dict(plan or {})  # what sharing will use later: bits, init (prepare_finetune's choices)

    def forward(self, w):
        return w * self.mask


class SharedWeights(nn.Module):
    """``[0, centroids][codes]``: only the centroids train; each gets its weights' summed gradient."""

    def __init__(self, codes: np.ndarray, centroids: nn.Parameter, group):
        super().__init__()
        self.register_buffer("codes", torch.from_numpy(np.ascontiguousarray(codes, dtype=np.int64)))
        self.centroids = centroids  # (2**bits - 1,), shared by a matrix's pieces
        self.group = group

    def forward(self, w):
        table = torch.cat([self.centroids.new_zeros(1), self.centroids])
        return table[self.codes]

    def codebook(self) -> np.ndarray:
        return np.concatenate(([0.0], self.centroids.detach().cpu().numpy())).astype(np.float32)


class HeldZero(nn.Module):
    """A tensor held at 0 (an LSTM's ``bias_hh`` once the bias lives in the shared matrix)."""

    def __init__(self, group):
        super().__init__()
        self.group = group

    def forward(self, w):
        return torch.zeros_like(w)


def lstm_names(mod, l: int, d: int) -> dict:
    """Tensor names of one layer/direction (keys ih, hh, bih, bhh, hr); ``None`` for what the module lacks."""
    if module_kind(mod) == "lstm_cell":
        names = {"ih": "weight_ih", "hh": "weight_hh", "bih": "bias_ih", "bhh": "bias_hh", "hr": None}
    else:
        sfx = f"_l{l}" + ("_reverse" if d else "")
        names = {"ih": "weight_ih" + sfx, "hh": "weight_hh" + sfx, "bih": "bias_ih" + sfx, "bhh": "bias_hh" + sfx,
                 "hr": "weight_hr" + sfx if mod.proj_size > 0 else None}
    if not mod.bias:
        names["bih"] = names["bhh"] = None
    return names


def bias_shared(mod, l: int, d: int) -> bool:
    """Whether a prepared layer/direction's bias column is pruned and shared (``lstm_bias="shared"``)."""
    n = lstm_names(mod, l, d)
    return n["bih"] is not None and param_of(mod, n["bih"]) is not None


def param_of(mod, name: str | None):
    """The parametrization on ``mod.<name>`` (PruneMask, SharedWeights, HeldZero), or None."""
    if name is None or not parametrize.is_parametrized(mod, name):
        return None
    return mod.parametrizations[name][0]


def _register(mod, name: str, param: nn.Module) -> None:
    if parametrize.is_parametrized(mod, name):
        # a deep copy shares its original's parametrized class, and removing a
        # parametrization deletes the property from that class: give this module
        # its own copy of the class first, so the original keeps its weights
        cls = mod.__class__
        mod.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))
        parametrize.remove_parametrizations(mod, name, leave_parametrized=True)
    parametrize.register_parametrization(mod, name, param)
    if module_kind(mod) == "lstm" and not getattr(mod, "_eie_flat_hook", False):
        mod.register_forward_hook(_detach_flat_weights)
        mod._eie_flat_hook = True


def _detach_flat_weights(mod, args, output):
    # nn.LSTM caches its (here: computed) weights in _flat_weights; after a
    # training forward those are graph nodes, which copy.deepcopy refuses.
    # Re-caching them without grad keeps the model deep-copyable; the next
    # forward recomputes them with grad.
    with torch.no_grad():
        mod._init_flat_weights()


def _centroids(codebook: np.ndarray) -> nn.Parameter:
    return nn.Parameter(torch.from_numpy(codebook[1:].copy()))  # index 0 is 0.0, not trained


def apply_linear(mod: nn.Linear, *, mask=None, codes=None, codebook=None, plan: dict | None = None) -> None:
    """Put the pruned stage (``mask``) or the shared stage (``codes``, ``codebook``) on an ``nn.Linear``."""
    if codes is None:
        _register(mod, "weight", PruneMask(mask, ("linear",), plan))
    else:
        _register(mod, "weight", SharedWeights(codes, _centroids(codebook), ("linear",)))


def apply_lstm_direction(mod, l, d, *, mask=None, pmask=None, codes=None, codebook=None, pcodes=None,
                         pcodebook=None, shared_bias: bool = True, plan: dict | None = None) -> None:
    """Put the pruned stage (``mask``, ``pmask``) or the shared stage (codes and codebooks) on one
    layer/direction; ``mask`` / ``codes`` cover its ``[W_ih | W_hh | bias]`` matrix, ``p*`` its ``W_hr``.

    ``shared_bias=False`` (``lstm_bias="dense"``) leaves both biases unparametrized: they train freely
    and become the cell layer's exact float32 bias."""
    n = lstm_names(mod, l, d)
    if not shared_bias:
        n = dict(n, bih=None, bhh=None)
    i_size = getattr(mod, n["ih"]).shape[1]
    p_size = getattr(mod, n["hh"]).shape[1]
    cols = {"ih": slice(0, i_size), "hh": slice(i_size, i_size + p_size)}
    group = ("cell", l, d)
    if codes is None:
        for key in ("ih", "hh"):
            _register(mod, n[key], PruneMask(mask[:, cols[key]], group, plan))
        if n["bih"]:  # b_ih + b_hh is the matrix's last column: mask both alike
            _register(mod, n["bih"], PruneMask(mask[:, -1], group, plan))
            _register(mod, n["bhh"], PruneMask(mask[:, -1], group, plan))
        if n["hr"]:
            _register(mod, n["hr"], PruneMask(pmask, ("proj", l, d), plan))
        return
    cent = _centroids(codebook)
    for key in ("ih", "hh"):
        _register(mod, n[key], SharedWeights(codes[:, cols[key]], cent, group))
    if n["bih"]:
        _register(mod, n["bih"], SharedWeights(codes[:, -1], cent, group))
        _register(mod, n["bhh"], HeldZero(group))
    if n["hr"]:
        _register(mod, n["hr"], SharedWeights(pcodes, _centroids(pcodebook), ("proj", l, d)))
