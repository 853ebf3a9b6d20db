"""Deep Compression fine-tuning of torch models (Han et al., ICLR 2016), before EIE encoding.

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
``eie_runtime.torch.finalize`` turns the trained model into EIE modules with
those very masks and codebooks; ``distill_finetune`` trains without labels.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from eie_runtime.errors import EIEInputError

from . import torch_import as ti
from .compress import quantize_matrix
from .lstm import lstm_matrix
from .prune import check_density, prune_mask
from .weight_sharing import check_bits


def _torch():
    import torch
    return torch


def _make_parametrizations():
    """The parametrization classes (built lazily: torch is imported only when fine-tuning)."""
    torch = _torch()
    nn = torch.nn

    class PruneMask(nn.Module):
        """``w * mask``: pruned weights stay 0 and get no gradient."""

        def __init__(self, mask: np.ndarray, group):
            super().__init__()
            self.register_buffer("mask", torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32)))
            self.group = group

        def forward(self, w):
            return w * self.mask

    class SharedWeights(nn.Module):
        """``[0, centroids][codes]``: only the centroids train; each gets its weights' summed gradient."""

        def __init__(self, codes: np.ndarray, centroids, group):
            super().__init__()
            self.register_buffer("codes", torch.from_numpy(np.ascontiguousarray(codes, dtype=np.int64)))
            self.centroids = centroids  # nn.Parameter (2**bits - 1,), shared by a matrix's pieces
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

    return PruneMask, SharedWeights, HeldZero


_CLASSES = None


def _classes():
    global _CLASSES
    if _CLASSES is None:
        _CLASSES = _make_parametrizations()
    return _CLASSES


# ------------------------------------------------------------------ naming
def _lstm_names(mod, l: int, d: int) -> dict:
    """Tensor names of one layer/direction; ``None`` for what the module lacks."""
    if ti.module_kind(mod) == "lstm_cell":
        names = {"ih": "weight_ih", "hh": "weight_hh", "bih": "bias_ih", "bhh": "bias_hh", "hr": None}
        has_bias = mod.bias
    else:
        sfx = f"_l{l}" + ("_reverse" if d else "")
        names = {"ih": "weight_ih" + sfx, "hh": "weight_hh" + sfx, "bih": "bias_ih" + sfx, "bhh": "bias_hh" + sfx,
                 "hr": "weight_hr" + sfx if mod.proj_size > 0 else None}
        has_bias = mod.bias
    if not has_bias:
        names["bih"] = names["bhh"] = None
    return names


def _directions(mod):
    if ti.module_kind(mod) == "lstm_cell":
        return [(0, 0)]
    return [(l, d) for l in range(mod.num_layers) for d in range(2 if mod.bidirectional else 1)]


def _register(mod, name: str, param) -> None:
    from torch.nn.utils import parametrize
    if parametrize.is_parametrized(mod, name):
        parametrize.remove_parametrizations(mod, name, leave_parametrized=True)
    parametrize.register_parametrization(mod, name, param)
    if ti.module_kind(mod) == "lstm" and not getattr(mod, "_eie_flat_hook", False):
        mod.register_forward_hook(_detach_flat_weights)
        mod._eie_flat_hook = True


def _detach_flat_weights(mod, args, output):
    # nn.LSTM caches its (here: computed) weights in _flat_weights; after a
    # training forward those are graph nodes, which copy.deepcopy refuses.
    # Re-caching them without grad keeps the model deep-copyable; the next
    # forward recomputes them with grad.
    torch = _torch()
    with torch.no_grad():
        mod._init_flat_weights()


def _param_of(mod, name: str):
    from torch.nn.utils import parametrize
    if name is None or not parametrize.is_parametrized(mod, name):
        return None
    return mod.parametrizations[name][0]


# --------------------------------------------------------------- apply stages
def _apply_linear(mod, *, mask=None, codes=None, codebook=None):
    PruneMask, SharedWeights, _ = _classes()
    torch = _torch()
    if codes is None:
        _register(mod, "weight", PruneMask(mask, ("linear",)))
    else:
        cent = torch.nn.Parameter(torch.from_numpy(codebook[1:].copy()))
        _register(mod, "weight", SharedWeights(codes, cent, ("linear",)))


def _lstm_direction_weights(mod, l, d):
    return ti.lstm_weights(mod)[l][d] if ti.module_kind(mod) == "lstm_cell" else _one_direction(mod, l, d)


def _one_direction(mod, l, d):
    from .lstm import LSTMDirectionWeights
    n = _lstm_names(mod, l, d)
    g = lambda key: ti._np(getattr(mod, n[key])) if n[key] else None
    return LSTMDirectionWeights(g("ih"), g("hh"), g("bih"), g("bhh"), g("hr"))


def _apply_lstm_direction(mod, l, d, *, mask=None, pmask=None, codes=None, codebook=None, pcodes=None,
                          pcodebook=None):
    PruneMask, SharedWeights, HeldZero = _classes()
    torch = _torch()
    n = _lstm_names(mod, l, d)
    i_size = getattr(mod, n["ih"]).shape[1]
    p_size = getattr(mod, n["hh"]).shape[1]
    cols = {"ih": slice(0, i_size), "hh": slice(i_size, i_size + p_size)}
    group = ("cell", l, d)
    if codes is None:
        for key in ("ih", "hh"):
            _register(mod, n[key], PruneMask(mask[:, cols[key]], group))
        if n["bih"]:  # b_ih + b_hh is the matrix's last column: mask both alike
            _register(mod, n["bih"], PruneMask(mask[:, -1], group))
            _register(mod, n["bhh"], PruneMask(mask[:, -1], group))
        if n["hr"]:
            _register(mod, n["hr"], PruneMask(pmask, ("proj", l, d)))
        return
    cent = torch.nn.Parameter(torch.from_numpy(codebook[1:].copy()))
    for key in ("ih", "hh"):
        _register(mod, n[key], SharedWeights(codes[:, cols[key]], cent, group))
    if n["bih"]:
        _register(mod, n["bih"], SharedWeights(codes[:, -1], cent, group))
        _register(mod, n["bhh"], HeldZero(group))
    if n["hr"]:
        pcent = torch.nn.Parameter(torch.from_numpy(pcodebook[1:].copy()))
        _register(mod, n["hr"], SharedWeights(pcodes, pcent, ("proj", l, d)))


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
    targets = ti.find_targets(model, density=density, bits=4 if bits is None else bits, filter_fn=filter_fn)
    if not targets:
        raise EIEInputError("the model has no nn.Linear / nn.LSTM / nn.LSTMCell to prepare")
    new = copy.deepcopy(model)
    mods = dict(new.named_modules(remove_duplicate=False))
    for t in targets:
        mod = mods[t.name]
        dens = _per_layer(t.density, mod, t.kind)
        bts = None if bits is None else _per_layer(t.bits, mod, t.kind)
        if t.kind == "linear":
            w = ti._np(mod.weight)
            if bits is None:
                _apply_linear(mod, mask=prune_mask(w, dens[0]))
            else:
                codes, cb = quantize_matrix(w, density=dens[0], bits=bts[0], seed=seed)
                _apply_linear(mod, codes=codes, codebook=cb)
            continue
        for l, d in _directions(mod):
            w = _lstm_direction_weights(mod, l, d)
            mat, mask = _lstm_mask(w, dens[l], _lstm_names(mod, l, d)["bih"] is not None)
            pmask = prune_mask(w.w_hr, dens[l]) if w.w_hr is not None else None
            if bits is None:
                _apply_lstm_direction(mod, l, d, mask=mask, pmask=pmask)
            else:
                codes, cb = quantize_matrix(mat, density=dens[l], bits=bts[l], seed=seed, mask=mask)
                pc = pcb = None
                if w.w_hr is not None:
                    pc, pcb = quantize_matrix(w.w_hr, density=dens[l], bits=bts[l], seed=seed, mask=pmask)
                _apply_lstm_direction(mod, l, d, codes=codes, codebook=cb, pcodes=pc, pcodebook=pcb)
    return new


# --------------------------------------------------------------- inspection
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
            cb = _param_of(mod, "weight").codebook()
            return ti.linear_from_codes(ti._np(mod.weight), ti._np(mod.bias), cb, n_pe=n_pe, name=name)
        weights, codebooks = [], []
        dirs = _directions(mod)
        for l in range(max(ll for ll, _ in dirs) + 1):
            weights.append([_lstm_direction_weights(mod, l, d) for ll, d in dirs if ll == l])
            row = []
            for ll, d in dirs:
                if ll != l:
                    continue
                n = _lstm_names(mod, l, d)
                p = _param_of(mod, n["hr"])
                row.append((_param_of(mod, n["ih"]).codebook(), p.codebook() if p is not None else None))
            codebooks.append(row)
        return ti.lstm_from_codes(weights, codebooks, n_pe=n_pe, name=name)


def finetune_state(model) -> dict[str, ModuleState]:
    """Name -> :class:`ModuleState` for every module :func:`prepare_finetune` prepared."""
    PruneMask, SharedWeights, _ = _classes()
    out = {}
    for name, mod in model.named_modules():
        kind = ti.module_kind(mod)
        if kind is None:
            continue
        first = "weight" if kind == "linear" else _lstm_names(mod, 0, 0)["ih"]
        p = _param_of(mod, first)
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
            mask = _param_of(mod, "weight").mask.numpy() > 0
            codes, cb = quantize_matrix(ti._np(mod.weight), density=1.0, bits=b, seed=seed, mask=mask)
            _apply_linear(mod, codes=codes, codebook=cb)
            continue
        for l, d in _directions(mod):
            n = _lstm_names(mod, l, d)
            w = _lstm_direction_weights(mod, l, d)
            mat = lstm_matrix(w)
            mask = np.concatenate([_param_of(mod, n["ih"]).mask.numpy(), _param_of(mod, n["hh"]).mask.numpy()], axis=1)
            col = _param_of(mod, n["bih"]).mask.numpy()[:, None] if n["bih"] else np.zeros((mat.shape[0], 1), np.float32)
            mask = np.concatenate([mask, col], axis=1) > 0
            codes, cb = quantize_matrix(mat, density=1.0, bits=b, seed=seed, mask=mask)
            pc = pcb = None
            if n["hr"]:
                pmask = _param_of(mod, n["hr"]).mask.numpy() > 0
                pc, pcb = quantize_matrix(w.w_hr, density=1.0, bits=b, seed=seed, mask=pmask)
            _apply_lstm_direction(mod, l, d, codes=codes, codebook=cb, pcodes=pc, pcodebook=pcb)
    return new


def set_density(model, density: float) -> None:
    """Prune a pruned-stage model further, in place: each mask keeps the largest ``density`` of its matrix.

    Masks only shrink (pruned weights stay pruned). Use with :func:`density_schedule`.
    """
    density = check_density(density)
    torch = _torch()
    mods = dict(model.named_modules())
    for name, st in finetune_state(model).items():
        if st.shared:
            raise EIEInputError(f"module {name!r} is already shared; prune before share_weights")
        mod = mods[name]
        if st.kind == "linear":
            pm = _param_of(mod, "weight")
            keep = prune_mask(ti._np(mod.weight), density) & (pm.mask.numpy() > 0)
            pm.mask.copy_(torch.from_numpy(keep.astype(np.float32)))
            continue
        for l, d in _directions(mod):
            n = _lstm_names(mod, l, d)
            w = _lstm_direction_weights(mod, l, d)
            mat, keep = _lstm_mask(w, density, n["bih"] is not None)
            i_size, p_size = w.w_ih.shape[1], w.w_hh.shape[1]
            parts = {"ih": keep[:, :i_size], "hh": keep[:, i_size:i_size + p_size], "bih": keep[:, -1], "bhh": keep[:, -1]}
            for key, k in parts.items():
                pm = _param_of(mod, n[key])
                if pm is not None:
                    pm.mask.mul_(torch.from_numpy(k.astype(np.float32)))
            if n["hr"]:
                pm = _param_of(mod, n["hr"])
                pm.mask.mul_(torch.from_numpy(prune_mask(w.w_hr, density).astype(np.float32)))


def density_schedule(step: int, total_steps: int, final_density: float, initial_density: float = 1.0) -> float:
    """Gradual pruning's cubic schedule (Zhu & Gupta, 2017): dense at step 0, ``final_density`` from ``total_steps`` on."""
    final_density = check_density(final_density)
    initial_density = check_density(initial_density)
    if total_steps <= 0:
        return final_density
    frac = min(max(step / total_steps, 0.0), 1.0)
    return final_density + (initial_density - final_density) * (1.0 - frac) ** 3


# -------------------------------------------------------------- distillation
@dataclass
class Agreement:
    """How closely a model's outputs follow a reference's on the same inputs."""

    cosine: float  # mean per-sample cosine similarity of outputs
    max_abs_error: float
    rel_error: float  # ||out - ref|| / ||ref|| over all outputs
    top1: float | None  # fraction of samples with the same argmax (last dim > 1), else None

    def __str__(self) -> str:
        t = f", top-1 agreement {self.top1:.4f}" if self.top1 is not None else ""
        return f"cosine {self.cosine:.5f}, max |err| {self.max_abs_error:.4g}, rel. error {self.rel_error:.4g}{t}"


@dataclass
class DistillReport:
    """Agreement with the dense model before and after distillation, and the loss per epoch."""

    before: Agreement
    after: Agreement
    losses: list[float] = field(default_factory=list)
    inputs: list | None = None

    def __str__(self) -> str:
        return f"before: {self.before}\nafter:  {self.after}"


def call_model(model, item):
    """``model(item)``, ``model(*item)`` for a tuple/list, ``model(**item)`` for a dict."""
    if isinstance(item, dict):
        return model(**item)
    if isinstance(item, (tuple, list)):
        return model(*item)
    return model(item)


def _flat_outputs(out) -> list:
    torch = _torch()
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _flat_outputs(o)]
    if isinstance(out, dict):
        return [t for k in sorted(out) for t in _flat_outputs(out[k])]
    if isinstance(out, torch.nn.utils.rnn.PackedSequence):
        return [out.data]
    raise EIEInputError(f"model output of type {type(out).__name__} is not a tensor or a tuple/dict of tensors")


def agreement(reference, model, inputs: Iterable) -> Agreement:
    """Compare ``model``'s outputs with ``reference``'s on ``inputs`` (each a model input)."""
    torch = _torch()
    cos, top, top_n, max_err, num, den = [], 0, 0, 0.0, 0.0, 0.0
    with torch.no_grad():
        for item in inputs:
            refs, outs = _flat_outputs(call_model(reference, item)), _flat_outputs(call_model(model, item))
            for r, o in zip(refs, outs):
                r, o = r.detach().float(), o.detach().float()
                if r.shape != o.shape:
                    raise EIEInputError(f"outputs differ in shape: {tuple(r.shape)} vs {tuple(o.shape)}")
                r2 = r.reshape(r.shape[0], -1) if r.ndim >= 2 else r.reshape(1, -1)
                o2 = o.reshape(r2.shape)
                cos.append(torch.nn.functional.cosine_similarity(o2, r2, dim=1, eps=1e-12))
                if r.ndim >= 1 and r.shape[-1] > 1:
                    top += int((r.argmax(-1) == o.argmax(-1)).sum())
                    top_n += r.argmax(-1).numel()
                max_err = max(max_err, float((o - r).abs().max()) if r.numel() else 0.0)
                num += float(((o - r) ** 2).sum())
                den += float((r ** 2).sum())
    if not cos:
        raise EIEInputError("no inputs to compare outputs on")
    return Agreement(cosine=float(torch.cat(cos).mean()), max_abs_error=max_err,
                     rel_error=math.sqrt(num / den) if den > 0 else math.sqrt(num),
                     top1=top / top_n if top_n else None)


def distill_finetune(teacher, student, inputs: Iterable, *, epochs: int = 20, lr: float = 1e-3,
                     eval_inputs: Iterable | None = None, progress: bool = True) -> DistillReport:
    """Train a prepared ``student`` (in place) to reproduce ``teacher``'s outputs on unlabeled ``inputs``.

    The loss is the outputs' mean squared error normalised by the teacher's
    mean square, minimised with Adam over the student's trainable parameters
    (the centroids, and any layers left dense). Both run in eval mode (no
    dropout), so the student matches the teacher's inference behaviour.
    """
    torch = _torch()
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise EIEInputError(f"epochs must be an integer >= 0, got {epochs!r}")
    items = list(inputs)
    if not items:
        raise EIEInputError("distillation needs at least one input batch")
    evals = list(eval_inputs) if eval_inputs is not None else items
    teacher_was, student_was = teacher.training, student.training
    teacher.eval()
    student.eval()
    try:
        with torch.no_grad():
            targets = [[t.detach() for t in _flat_outputs(call_model(teacher, it))] for it in items]
        scale = [sum(float((t ** 2).mean()) for t in ts) / len(ts) or 1.0 for ts in targets]
        before = agreement(teacher, student, evals)
        params = [p for p in student.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=lr)
        losses = []
        bar = range(epochs)
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(bar, desc="distill", unit="epoch")
        for _ in bar:
            total = 0.0
            for it, ts, s in zip(items, targets, scale):
                opt.zero_grad()
                outs = _flat_outputs(call_model(student, it))
                loss = sum(torch.nn.functional.mse_loss(o, t) for o, t in zip(outs, ts)) / (len(ts) * s)
                loss.backward()
                opt.step()
                total += float(loss.detach())
            losses.append(total / len(items))
            if progress:
                bar.set_postfix(loss=f"{losses[-1]:.3g}")
        after = agreement(teacher, student, evals)
    finally:
        teacher.train(teacher_was)
        student.train(student_was)
    return DistillReport(before, after, losses, inputs=items)
