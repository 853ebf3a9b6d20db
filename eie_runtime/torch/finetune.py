"""Deep Compression fine-tuning of torch models (Han et al., ICLR 2016), then EIE modules from the result.

Two stages, each a plain torch model a user trains with their own loop:

1. **pruned**: ``prepare_finetune(model, density=d, bits=None)`` keeps every
   pruned weight at zero through a ``torch.nn.utils.parametrize`` mask
   (``w = w_orig * mask``), so its gradient is masked and optimizers, weight
   decay and momentum cannot revive it. ``set_density`` + ``density_schedule``
   prune gradually between steps.
2. **shared**: ``share_weights`` (or ``prepare_finetune(..., stage="shared")``
   directly) replaces each matrix by ``codebook[codes]`` with only the
   centroids trainable, so autograd gives each centroid the sum of its
   weights' gradients (Deep Compression's centroid fine-tuning); index 0 stays 0.

``prepare_finetune(model, density=d, bits=4)`` starts at stage 1 (the weights
themselves retrain under the mask) and remembers ``bits`` / ``init`` for
``share_weights`` and ``finalize``: the strong path is the default one. Going
straight to stage 2 trains only ``2**bits - 1`` numbers per matrix and is much
weaker at low density (measured in docs/torch.md).

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

from ..converters.compress import check_input_rms, importance, quantize_matrix
from ..converters.from_codes import linear_from_codes, lstm_from_codes
from ..converters.lstm import check_lstm_bias, lstm_matrix
from ..converters.prune import check_density, prune_mask
from ..converters.weight_sharing import check_bits, check_init
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


def _lstm_mask(w, density, shared_bias):
    mat = lstm_matrix(w)
    if not shared_bias:
        mat[:, -1] = 0.0  # no bias, or a dense one: the column holds no entries
    mask = prune_mask(mat, density)
    if not shared_bias:
        mask[:, -1] = False
    return mat, mask


def _lstm_bias_mode(mod, l, d) -> str:
    """``"dense"`` if a prepared layer/direction has biases left unparametrized, else ``"shared"``."""
    n = lstm_names(mod, l, d)
    return "dense" if n["bih"] is not None and param_of(mod, n["bih"]) is None else "shared"


STAGES = ("pruned", "shared")


def _check_rms(input_rms, targets) -> dict:
    """``input_rms`` checked against the prepared modules: Linear names only, one value per input column."""
    if input_rms is None:
        return {}
    if not isinstance(input_rms, dict):
        raise EIEInputError(f"input_rms must be a dict {{Linear module name: array}}, got {type(input_rms).__name__}")
    kinds = {t.name: t for t in targets}
    out = {}
    for name, r in input_rms.items():
        if name not in kinds:
            raise EIEInputError(f"input_rms names {name!r}, which is not a module being prepared "
                                f"(those are: {', '.join(repr(n) for n in kinds) or 'none'})")
        if kinds[name].kind != "linear":
            raise EIEInputError(f"input_rms: module {name!r} is an {kinds[name].kind}; activation-aware pruning "
                                "covers nn.Linear only")
        out[name] = check_input_rms(r, kinds[name].module.in_features, f"input_rms[{name!r}]")
    return out


def prepare_finetune(model, *, density=0.1, bits=4, stage: str = "pruned", init: str = "linear",
                     lstm_bias: str = "shared", filter_fn: Callable | None = None, seed: int = 0,
                     input_rms: dict | None = None):
    """A trainable copy of ``model`` whose Linear/LSTM/LSTMCell weights are pruned (stage 1) or shared (stage 2).

    Parameters
    ----------
    model : nn.Module
        float32 on the CPU; left untouched.
    density : float or dict by module name
        Fraction of each matrix kept (magnitude pruning), as in ``eie_runtime.torch.compress``.
        Start at 1.0 and lower it with :func:`set_density` for gradual pruning.
    bits : int, dict, or None
        Codebook bits the weights will be shared in (``None``: 4). Remembered
        for :func:`share_weights` and :func:`finalize`.
    stage : "pruned" (default) or "shared"
        ``"pruned"``: masked weights that train freely (pruned ones stay 0);
        train, then :func:`share_weights` (and train the centroids) or
        :func:`finalize` directly. ``"shared"``: straight to ``codebook[codes]``
        with only the centroids trainable -- the weak path at low density,
        kept for a model that was already retrained pruned.
    init : "linear", "density" / "quantile", "random"
        k-means codebook initialisation used when the weights are shared.
    lstm_bias : "shared" or "dense"
        Whether an LSTM's bias column is pruned and shared with its gate weights
        (the paper's NT-LSTM) or kept exact (trains freely).
    filter_fn : callable(module, name) -> bool, optional
    seed : int
        Seed of the k-means (same quantization as ``compress`` with this seed).
    input_rms : dict, optional
        ``{Linear module name: (in_features,) root mean square of its inputs}``
        (:func:`eie_runtime.torch.input_rms`). Those modules are pruned by
        ``|w_ij| * input_rms[j]`` (activation-aware, here and in
        :func:`set_density`) and shared by a k-means weighted by
        ``input_rms[j]**2`` (``converters.compress.quantize_matrix``). Others:
        magnitude pruning, unweighted k-means.

    Examples
    --------
    >>> ft = prepare_finetune(model, density=0.1, bits=4)         # 1. prune, retrain the weights
    >>> train(ft); ft = share_weights(ft)                           # 2. share (4 bits), retrain centroids
    >>> train(ft); small = eie_runtime.torch.finalize(ft)
    """
    if stage not in STAGES:
        raise EIEInputError(f"stage must be one of {STAGES}, got {stage!r}")
    check_init(init)
    check_lstm_bias(lstm_bias)
    targets = find_targets(model, density=density, bits=4 if bits is None else bits, filter_fn=filter_fn)
    for t in targets:
        if t.kind in ("gru", "gru_cell"):
            raise EIEInputError(f"module {t.name!r}: fine-tuning nn.GRU / nn.GRUCell is not supported yet; compress "
                                "it with eie_runtime.torch.compress, or leave it out with density={name: None}")
    if not targets:
        raise EIEInputError("the model has no nn.Linear / nn.LSTM / nn.LSTMCell to prepare")
    rms = _check_rms(input_rms, targets)
    new = copy.deepcopy(model)
    mods = dict(new.named_modules(remove_duplicate=False))
    pruned = stage == "pruned"
    for t in targets:
        mod = mods[t.name]
        dens = _per_layer(t.density, mod, t.kind)
        bts = _per_layer(t.bits, mod, t.kind)
        if t.kind == "linear":
            w = to_numpy(mod.weight)
            r = rms.get(t.name)
            if pruned:
                apply_linear(mod, mask=prune_mask(importance(w, r), dens[0]),
                             plan={"bits": bts[0], "init": init, "seed": seed, "input_rms": r})
            else:
                codes, cb = quantize_matrix(w, density=dens[0], bits=bts[0], seed=seed, init=init, input_rms=r)
                apply_linear(mod, codes=codes, codebook=cb)
            continue
        for l, d in directions(mod):
            w = direction_weights(mod, l, d)
            shared_bias = lstm_bias == "shared" and lstm_names(mod, l, d)["bih"] is not None
            mat, mask = _lstm_mask(w, dens[l], shared_bias)
            pmask = prune_mask(w.w_hr, dens[l]) if w.w_hr is not None else None
            if pruned:
                apply_lstm_direction(mod, l, d, mask=mask, pmask=pmask, shared_bias=lstm_bias == "shared",
                                     plan={"bits": bts[l], "init": init, "seed": seed})
            else:
                codes, cb = quantize_matrix(mat, density=dens[l], bits=bts[l], seed=seed, mask=mask, init=init)
                pc = pcb = None
                if w.w_hr is not None:
                    pc, pcb = quantize_matrix(w.w_hr, density=dens[l], bits=bts[l], seed=seed, mask=pmask, init=init)
                apply_lstm_direction(mod, l, d, codes=codes, codebook=cb, pcodes=pc, pcodebook=pcb,
                                     shared_bias=lstm_bias == "shared")
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
        return lstm_from_codes(weights, codebooks, n_pe=n_pe, name=name, bias=_lstm_bias_mode(mod, 0, 0))


def finetune_state(model) -> dict[str, ModuleState]:
    """Name -> :class:`ModuleState` for every module :func:`prepare_finetune` prepared."""
    out = {}
    for name, mod in model.named_modules():
        kind = module_kind(mod)
        if kind is None or kind in ("gru", "gru_cell"):  # GRUs are never prepared for fine-tuning
            continue
        first = "weight" if kind == "linear" else lstm_names(mod, 0, 0)["ih"]
        p = param_of(mod, first)
        if isinstance(p, (PruneMask, SharedWeights)):
            out[name] = ModuleState(kind, isinstance(p, SharedWeights))
    return out


def share_weights(model, *, bits=None, init: str | None = None, seed: int | None = None):
    """A copy of a pruned-stage model with each matrix's kept weights shared in ``2**bits - 1`` centroids.

    The masks stay as they are. ``bits`` (one value or a dict by module name)
    ``init`` and ``seed`` default to what :func:`prepare_finetune` was given
    (4 bits, linear, 0). Modules already shared are left as they are.
    """
    if init is not None:
        check_init(init)
    new = copy.deepcopy(model)
    mods = dict(new.named_modules())
    for name, st in finetune_state(new).items():
        if st.shared:
            continue
        mod = mods[name]
        first = param_of(mod, "weight" if st.kind == "linear" else lstm_names(mod, 0, 0)["ih"])
        plan = getattr(first, "plan", {}) or {}
        b = bits.get(name, plan.get("bits", 4)) if isinstance(bits, dict) else (plan.get("bits", 4) if bits is None else bits)
        ini = init if init is not None else plan.get("init", "linear")
        sd = seed if seed is not None else plan.get("seed", 0)
        if st.kind == "linear":
            b = check_bits(b)
            mask = param_of(mod, "weight").mask.numpy() > 0
            codes, cb = quantize_matrix(to_numpy(mod.weight), density=1.0, bits=b, seed=sd, mask=mask, init=ini,
                                        input_rms=plan.get("input_rms"))
            apply_linear(mod, codes=codes, codebook=cb)
            continue
        per_layer = _per_layer(b, mod, st.kind)
        for l, d in directions(mod):
            bl = check_bits(per_layer[l])
            n = lstm_names(mod, l, d)
            shared_bias = _lstm_bias_mode(mod, l, d) == "shared"
            w = direction_weights(mod, l, d)
            mat = lstm_matrix(w)
            mask = np.concatenate([param_of(mod, n["ih"]).mask.numpy(), param_of(mod, n["hh"]).mask.numpy()], axis=1)
            if n["bih"] and shared_bias:
                col = param_of(mod, n["bih"]).mask.numpy()[:, None]
            else:
                col = np.zeros((mat.shape[0], 1), np.float32)
            mask = np.concatenate([mask, col], axis=1) > 0
            codes, cb = quantize_matrix(mat, density=1.0, bits=bl, seed=sd, mask=mask, init=ini)
            pc = pcb = None
            if n["hr"]:
                pmask = param_of(mod, n["hr"]).mask.numpy() > 0
                pc, pcb = quantize_matrix(w.w_hr, density=1.0, bits=bl, seed=sd, mask=pmask, init=ini)
            apply_lstm_direction(mod, l, d, codes=codes, codebook=cb, pcodes=pc, pcodebook=pcb,
                                 shared_bias=shared_bias)
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
            crit = importance(to_numpy(mod.weight), pm.plan.get("input_rms"))
            keep = prune_mask(crit, density) & (pm.mask.numpy() > 0)
            pm.mask.copy_(torch.from_numpy(keep.astype(np.float32)))
            continue
        for l, d in directions(mod):
            n = lstm_names(mod, l, d)
            w = direction_weights(mod, l, d)
            mat, keep = _lstm_mask(w, density, _lstm_bias_mode(mod, l, d) == "shared" and n["bih"] is not None)
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
             calibration: Iterable | None = None, seed: int | None = None, init: str | None = None) -> nn.Module:
    """Turn a model from :func:`prepare_finetune` (after training) into EIE modules.

    Masks and codebooks are kept exactly as trained; modules still in the
    pruned stage are shared now over their kept weights, with ``bits`` /
    ``init`` / ``seed`` (default: what ``prepare_finetune`` was given). The result equals
    the shared model's output.
    """
    check_mode(mode)
    if mode == "fixed16" and calibration is None:
        raise EIEInputError("mode='fixed16' needs calibration=<iterable of sample inputs>")
    states = finetune_state(model)
    if not states:
        raise EIEInputError("the model has no modules prepared by prepare_finetune")
    shared = share_weights(model, bits=bits, seed=seed, init=init) if any(not s.shared for s in states.values()) else model
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

