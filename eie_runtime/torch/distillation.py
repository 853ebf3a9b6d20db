"""Label-free recovery: train a pruned-and-shared copy to reproduce the dense model's outputs.

``agreement`` measures how closely one model's outputs follow another's;
``distill_finetune`` trains a prepared model against a teacher; ``distill``
does both ends: prepare, train, finalize into EIE modules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
from torch import nn

from ..errors import EIEInputError
from .finetune import finalize, prepare_finetune
from .model import call_model
from .threads import keep_torch_threads


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



def _flat_outputs(out) -> list:
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


@keep_torch_threads
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
