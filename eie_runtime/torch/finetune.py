"""Deep Compression fine-tuning of torch models (Han et al., ICLR 2016), then EIE modules from the result.

Two stages, each a plain torch model a user trains with their own loop:

1. **pruned**: ``prepare_finetune(model, density=d, bits=None)`` keeps every
   pruned weight at zero through a ``torch.nn.utils.parametrize`` mask
   (``w = w_orig * mask``), so its gradient is masked and optimizers, weight
   decay and momentum cannot revive it. ``set_density`` + ``density_schedule``
   prune gradually between steps.
2. **shared**: ``share_weights`` (or ``prepare_finetune(..., bits=4)``
   directly) replaces each matrix by ``codebook[codes]`` with only the
   centroids trainable, so autograd gives each centroid the sum of its
   weights' gradients (Deep Compression's centroid fine-tuning); index 0 stays 0.

An LSTM layer/direction is pruned and shared as one matrix over
``[x_t; h_{t-1}; 1]`` (exactly the matrix ``compress_lstm`` builds), its bias
column living in ``bias_ih`` with ``bias_hh`` held at zero once shared.
:func:`finalize` turns the trained model into EIE modules with those very
masks and codebooks.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from ..converters.compress import quantize_matrix
from ..converters.from_codes import linear_from_codes, lstm_from_codes
from ..converters.lstm import lstm_matrix
from ..converters.prune import check_density, prune_mask
from ..converters.weight_sharing import check_bits
from ..errors import EIEInputError
from .base import check_mode
from .linear import EIELinear
from .lstm import EIELSTM, EIELSTMCell
from .model import calibrate, set_mode
from .parametrizations import PruneMask, SharedWeights, apply_linear, apply_lstm_direction, lstm_names, param_of
from .targets import find_targets, module_kind, replace_modules
from .threads import keep_torch_threads
from .weights import direction_weights, directions, to_numpy


def _per_layer(setting, mod, kind):
    if kind != "lstm":
        return [setting]
    return list(setting) if isinstance(setting, (list, tuple)) else [setting] * mod.num_layers


def _lstm_mask(w, density, has_bias):
    mat = lstm_matrix(w)
    mask = prune_mask(mat, density)
    if not has_bias:
        mask[:, -1] = False  # no bias to hold the column: keep it pruned
    return mat, mask


def prepare_finetune(model, *, density=0.1, bits=4, filter_fn: Callable | None = None, seed: int = 0):
    """A trainable copy of ``model`` whose Linear/LSTM/LSTMCell weights are pruned (and shared).

    Parameters
    ----------
    model : nn.Module
        float32 on the CPU; left untouched.
    density : float or dict by module name
        Fraction of each matrix kept (magnitude pruning), as in ``eie_runtime.torch.compress``.
    bits : int, dict, or None
        Codebook bits: the copy's matrices are ``codebook[codes]`` with
        trainable centroids. ``None``: prune only (masked weights train freely;
        call :func:`share_weights` after retraining).
    filter_fn : callable(module, name) -> bool, optional
    seed : int
        Seed of the k-means (same quantization as ``compress`` with this seed).

    Examples
    --------
    >>> ft = prepare_finetune(model, density=0.1, bits=None)      # 1. prune, retrain
    >>> train(ft); ft = share_weights(ft, bits=4)                   # 2. share, retrain centroids
    >>> train(ft); small = eie_runtime.torch.finalize(ft)
    """
    targets = find_targets(model, density=density, bits=4 if bits is None else bits, filter_fn=filter_fn)
    if not targets:
        raise EIEInputError("the model has no nn.Linear / nn.LSTM / nn.LSTMCell to prepare")
    new = copy.deepcopy(model)
    mods = dict(new.named_modules(remove_duplicate=False))
    for t in targets:
        mod = mods[t.name]
        dens = _per_layer(t.density, mod, t.kind)
        bts = None if bits is None else _per_layer(t.bits, mod, t.kind)
        if t.kind == "linear":
            w = to_numpy(mod.weight)
            if bits is None:
                apply_linear(mod, mask=prune_mask(w, dens[0]))
            else:
                codes, cb = quantize_matrix(w, density=dens[0], bits=bts[0], seed=seed)
                apply_linear(mod, codes=codes, codebook=cb)
            continue
        for l, d in directions(mod):
            w = direction_weights(mod, l, d)
            mat, mask = _lstm_mask(w, dens[l], lstm_names(mod, l, d)["bih"] is not None)
            pmask = prune_mask(w.w_hr, dens[l]) if w.w_hr is not None else None
            if bits is None:
                apply_lstm_direction(mod, l, d, mask=mask, pmask=pmask)
            else:
                codes, cb = quantize_matrix(mat, density=dens[l], bits=bts[l], seed=seed, mask=mask)
                pc = pcb = None
                if w.w_hr is not None:
                    pc, pcb = quantize_matrix(w.w_hr, density=dens[l], bits=bts[l], seed=seed, mask=pmask)
                apply_lstm_direction(mod, l, d, codes=codes, codebook=cb, pcodes=pc, pcodebook=pcb)
    return new


@dataclass
class ModuleState:
    """What :func:`prepare_finetune` put on one module."""

    kind: str  # linear / lstm / lstm_cell
    shared: bool  # codebook stage (else: pruned only)

    def to_core(self, mod, *, n_pe: int, name: str):
        """The core EIE object with exactly this module's masks and codebooks (shared stage only)."""
        if not self.shared:
            raise EIEInputError(f"module {name!r} is pruned but not shared yet: call share_weights first")
        if self.kind == "linear":
            cb = param_of(mod, "weight").codebook()
            return linear_from_codes(to_numpy(mod.weight), to_numpy(mod.bias), cb, n_pe=n_pe, name=name)
        weights, codebooks = [], []
        dirs = directions(mod)
        for l in range(max(ll for ll, _ in dirs) + 1):
            weights.append([direction_weights(mod, l, d) for ll, d in dirs if ll == l])
            row = []
            for ll, d in dirs:
                if ll != l:
                    continue
                n = lstm_names(mod, l, d)
                p = param_of(mod, n["hr"])
                row.append((param_of(mod, n["ih"]).codebook(), p.codebook() if p is not None else None))
            codebooks.append(row)
        return lstm_from_codes(weights, codebooks, n_pe=n_pe, name=name)


def finetune_state(model) -> dict[str, ModuleState]:
    """Name -> :class:`ModuleState` for every module :func:`prepare_finetune` prepared."""
    out = {}
    for name, mod in model.named_modules():
        kind = module_kind(mod)
        if kind is None:
            continue
        first = "weight" if kind == "linear" else lstm_names(mod, 0, 0)["ih"]
        p = param_of(mod, first)
        if isinstance(p, (PruneMask, SharedWeights)):
            out[name] = ModuleState(kind, isinstance(p, SharedWeights))
    return out


def share_weights(model, *, bits=None, seed: int = 0):
    """A copy of a pruned-stage model with each matrix's kept weights shared in ``2**bits - 1`` centroids.

    The masks stay as they are; ``bits`` is one value or a dict by module name (default 4).
    Modules already shared are left as they are.
    """
    new = copy.deepcopy(model)
    mods = dict(new.named_modules())
    for name, st in finetune_state(new).items():
        if st.shared:
            continue
        mod = mods[name]
        b = bits.get(name, 4) if isinstance(bits, dict) else (4 if bits is None else bits)
        b = check_bits(b)
        if st.kind == "linear":
            mask = param_of(mod, "weight").mask.numpy() > 0
            codes, cb = quantize_matrix(to_numpy(mod.weight), density=1.0, bits=b, seed=seed, mask=mask)
            apply_linear(mod, codes=codes, codebook=cb)
            continue
        for l, d in directions(mod):
            n = lstm_names(mod, l, d)
            w = direction_weights(mod, l, d)
            mat = lstm_matrix(w)
            mask = np.concatenate([param_of(mod, n["ih"]).mask.numpy(), param_of(mod, n["hh"]).mask.numpy()], axis=1)
            col = param_of(mod, n["bih"]).mask.numpy()[:, None] if n["bih"] else np.zeros((mat.shape[0], 1), np.float32)
            mask = np.concatenate([mask, col], axis=1) > 0
            codes, cb = quantize_matrix(mat, density=1.0, bits=b, seed=seed, mask=mask)
            pc = pcb = None
            if n["hr"]:
                pmask = param_of(mod, n["hr"]).mask.numpy() > 0
                pc, pcb = quantize_matrix(w.w_hr, density=1.0, bits=b, seed=seed, mask=pmask)
            apply_lstm_direction(mod, l, d, codes=codes, codebook=cb, pcodes=pc, pcodebook=pcb)
    return new


def set_density(model, density: float) -> None:
    """Prune a pruned-stage model further, in place: each mask keeps the largest ``density`` of its matrix.

    Masks only shrink (pruned weights stay pruned). Use with :func:`density_schedule`.
    """
    density = check_density(density)
    mods = dict(model.named_modules())
    for name, st in finetune_state(model).items():
        if st.shared:
            raise EIEInputError(f"module {name!r} is already shared; prune before share_weights")
        mod = mods[name]
        if st.kind == "linear":
            pm = param_of(mod, "weight")
            keep = prune_mask(to_numpy(mod.weight), density) & (pm.mask.numpy() > 0)
            pm.mask.copy_(torch.from_numpy(keep.astype(np.float32)))
            continue
        for l, d in directions(mod):
            n = lstm_names(mod, l, d)
            w = direction_weights(mod, l, d)
            mat, keep = _lstm_mask(w, density, n["bih"] is not None)
            i_size, p_size = w.w_ih.shape[1], w.w_hh.shape[1]
            parts = {"ih": keep[:, :i_size], "hh": keep[:, i_size:i_size + p_size], "bih": keep[:, -1], "bhh": keep[:, -1]}
            for key, k in parts.items():
                pm = param_of(mod, n[key])
                if pm is not None:
                    pm.mask.mul_(torch.from_numpy(k.astype(np.float32)))
            if n["hr"]:
                pm = param_of(mod, n["hr"])
                pm.mask.mul_(torch.from_numpy(prune_mask(w.w_hr, density).astype(np.float32)))


def density_schedule(step: int, total_steps: int, final_density: float, initial_density: float = 1.0) -> float:
    """Gradual pruning's cubic schedule (Zhu & Gupta, 2017): dense at step 0, ``final_density`` from ``total_steps`` on."""
    final_density = check_density(final_density)
    initial_density = check_density(initial_density)
    if total_steps <= 0:
        return final_density
    frac = min(max(step / total_steps, 0.0), 1.0)
    return final_density + (initial_density - final_density) * (1.0 - frac) ** 3


@keep_torch_threads
def finalize(model: nn.Module, *, bits=None, n_pe: int = 64, mode: str = "float32",
             calibration: Iterable | None = None, seed: int = 0) -> nn.Module:
    """Turn a model from :func:`prepare_finetune` (after training) into EIE modules.

    Masks and codebooks are kept exactly as trained; modules that were only
    pruned (no ``bits`` at prepare time) are shared now with ``bits`` (default 4)
    over their kept weights. The result equals the prepared model's output.
    """
    check_mode(mode)
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
    new = replace_modules(new, repl)
    if calibration is not None:
        calibrate(new, calibration)
    return set_mode(new, mode)

