"""Label-free recovery: train a pruned-and-shared copy to reproduce the dense model's outputs.

``agreement`` measures how closely one model's outputs follow another's;
``distill_finetune`` trains a prepared model against a teacher (one stage);
``distill`` runs the whole Deep Compression pipeline against the teacher:
gradual pruning with masked retraining, sharing, centroid retraining,
finalize into EIE modules, with the agreement after each stage.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..errors import EIEInputError
from .finetune import density_schedule, finalize, prepare_finetune, set_density, share_weights
from .model import call_model
from .targets import find_targets
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
    """Agreement with the dense model after each stage, and the loss per epoch.

    ``stages`` is a list of ``(stage name, Agreement)`` in order: for
    :func:`distill` ``compressed`` (pruned and shared, no training), ``pruned``
    (after gradual pruning and masked retraining), ``shared`` (k-means just
    applied), ``centroids`` (after centroid retraining) and ``eie`` (the
    finalized EIE modules, in the chosen mode). ``before`` / ``after`` are the
    first and the last.
    """

    stages: list = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    inputs: list | None = None
    seconds: dict = field(default_factory=dict)  # stage -> wall seconds of its training

    @property
    def before(self) -> Agreement:
        return self.stages[0][1]

    @property
    def after(self) -> Agreement:
        return self.stages[-1][1]

    def __getitem__(self, stage: str) -> Agreement:
        for name, a in self.stages:
            if name == stage:
                return a
        raise KeyError(stage)

    def __str__(self) -> str:
        width = max(len(n) for n, _ in self.stages)
        return "\n".join(f"{n + ':':<{width + 1}} {a}" for n, a in self.stages)


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


def _norm_mse(outs, targets, scale) -> torch.Tensor:
    return sum(torch.nn.functional.mse_loss(o, t) for o, t in zip(outs, targets)) / (len(targets) * scale)


class _Taps:
    """Forward hooks recording the outputs of named submodules (intermediate activations)."""

    def __init__(self, model, names):
        mods = dict(model.named_modules())
        self.out: dict = {}
        self.handles = [mods[n].register_forward_hook(self._hook(n)) for n in names if n in mods]

    def _hook(self, name):
        def hook(mod, args, output):
            self.out[name] = _flat_outputs(output)
        return hook

    def close(self):
        for h in self.handles:
            h.remove()


def distill_finetune(teacher, student, inputs: Iterable, *, epochs: int = 20, lr: float = 1e-3,
                     eval_inputs: Iterable | None = None, progress: bool = True, on_step: Callable | None = None,
                     layer_loss: float = 0.0, layers: Iterable[str] | None = None, stage: str = "trained",
                     report: DistillReport | None = None, desc: str = "distill") -> DistillReport:
    """Train ``student`` (in place) to reproduce ``teacher``'s outputs on unlabeled ``inputs``.

    Trains every parameter of ``student`` that requires a gradient: the
    weights under their masks in the pruned stage, the centroids in the shared
    stage, and any layers left dense. The loss is the outputs' mean squared
    error normalised by the teacher's mean square, plus ``layer_loss`` times the
    same measure on the outputs of the submodules named ``layers`` (default:
    the compressed ones; names shared by teacher and student), minimised with
    Adam under a cosine learning-rate decay. Both run in eval mode (no
    dropout). ``on_step(step, total_steps)`` runs before each step (e.g.
    gradual pruning). The agreement after training is appended to ``report``
    (a new one if None) as ``stage``.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise EIEInputError(f"epochs must be an integer >= 0, got {epochs!r}")
    items = list(inputs)
    if not items:
        raise EIEInputError("distillation needs at least one input batch")
    evals = list(eval_inputs) if eval_inputs is not None else items
    report = report if report is not None else DistillReport(stages=[("before", agreement(teacher, student, evals))])
    teacher_was, student_was = teacher.training, student.training
    teacher.eval()
    student.eval()
    taps_t = taps_s = None
    if layer_loss:
        from .finetune import finetune_state
        names = list(layers) if layers is not None else [n for n in finetune_state(student) if n]
        taps_t, taps_s = _Taps(teacher, names), _Taps(student, names)
    t0 = time.perf_counter()
    try:
        targets = None
        if not layer_loss:  # outputs only: the teacher runs once
            with torch.no_grad():
                targets = [[t.detach() for t in _flat_outputs(call_model(teacher, it))] for it in items]
        params = [p for p in student.parameters() if p.requires_grad]
        if not params:
            raise EIEInputError("the student has no trainable parameters")
        opt = torch.optim.Adam(params, lr=lr)
        total = epochs * len(items)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, total))
        bar = None
        if progress:  # one bar over all steps: long epochs (a transformer's) still show movement
            from tqdm.auto import tqdm
            bar = tqdm(total=total, desc=desc, unit="step")
        step = 0
        for epoch in range(epochs):
            epoch_loss = 0.0
            for i, it in enumerate(items):
                if on_step is not None:
                    on_step(step, total)
                if targets is not None:
                    ts = targets[i]
                else:
                    with torch.no_grad():
                        ts = [t.detach() for t in _flat_outputs(call_model(teacher, it))]
                    inner_t = {k: [t.detach() for t in v] for k, v in taps_t.out.items()}
                scale = sum(float((t ** 2).mean()) for t in ts) / len(ts) or 1.0
                opt.zero_grad()
                with parametrize.cached():  # each shared/masked weight built once per step (RNN loops reuse it)
                    outs = _flat_outputs(call_model(student, it))
                loss = _norm_mse(outs, ts, scale)
                if layer_loss:
                    extra = [_norm_mse(taps_s.out[k], v, sum(float((t ** 2).mean()) for t in v) / len(v) or 1.0)
                             for k, v in inner_t.items() if k in taps_s.out]
                    if extra:
                        loss = loss + layer_loss * sum(extra) / len(extra)
                loss.backward()
                opt.step()
                sched.step()
                epoch_loss += float(loss.detach())
                step += 1
                if bar is not None:
                    bar.update(1)
            report.losses.append(epoch_loss / len(items))
            if bar is not None:
                bar.set_postfix(epoch=epoch + 1, loss=f"{report.losses[-1]:.3g}")
        if bar is not None:
            bar.close()
        report.seconds[stage] = time.perf_counter() - t0
        report.stages.append((stage, agreement(teacher, student, evals)))
    finally:
        for taps in (taps_t, taps_s):
            if taps is not None:
                taps.close()
        teacher.train(teacher_was)
        student.train(student_was)
    report.inputs = items
    return report


def input_rms(model: nn.Module, inputs: Iterable, names: Iterable[str] | None = None,
              max_batches: int | None = 32) -> dict:
    """``{name: (in_features,) float64}``: the root mean square of each input column of ``model``'s
    ``nn.Linear`` modules (all of them, or those in ``names``) over ``inputs`` (model inputs).

    At most ``max_batches`` inputs are run, evenly spaced over ``inputs`` (a
    length-sorted list would otherwise give only its shortest items). Feed the
    result to ``prepare_finetune(input_rms=...)`` for activation-aware pruning
    and weighted sharing; :func:`distill` does this itself (``prune_by="activation"``).
    """
    items = list(inputs)
    if not items:
        raise EIEInputError("input_rms needs at least one input")
    if max_batches is not None and len(items) > max_batches:
        items = [items[round(i * (len(items) - 1) / (max_batches - 1))] for i in range(max_batches)] \
            if max_batches > 1 else items[:1]
    mods = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    if names is not None:
        names = list(names)
        missing = [n for n in names if n not in mods]
        if missing:
            raise EIEInputError(f"input_rms: {missing} are not nn.Linear modules of the model")
        mods = {n: mods[n] for n in names}
    sums = {n: torch.zeros(m.in_features, dtype=torch.float64) for n, m in mods.items()}
    counts = dict.fromkeys(mods, 0)

    def hook(name):
        def pre(mod, args):
            x = args[0].detach().reshape(-1, args[0].shape[-1]).double()
            sums[name] += (x * x).sum(0)
            counts[name] += x.shape[0]
        return pre
    handles = [m.register_forward_pre_hook(hook(n)) for n, m in mods.items()]
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            for it in items:
                call_model(model, it)
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return {n: (sums[n] / max(counts[n], 1)).sqrt().numpy() for n in mods if counts[n]}


PRUNE_BY = ("activation", "magnitude")


def pruning_step(model, density: float, ramp_steps: int, every: int = 0) -> Callable:
    """An ``on_step`` that prunes ``model`` (pruned stage) gradually to ``density``.

    Cubic schedule (:func:`density_schedule`) over ``ramp_steps`` steps, the
    masks updated every ``every`` steps (default: about 40 updates in all).
    """
    every = every or max(1, ramp_steps // 40)

    def on_step(step, total):
        if step <= ramp_steps and step % every == 0:
            set_density(model, density_schedule(step, ramp_steps, density))
    return on_step


@keep_torch_threads
def distill(model: nn.Module, inputs: Iterable, *, density=0.1, bits=4, n_pe: int = 64, epochs: int = 20,
            share_epochs: int | None = None, lr: float = 1e-3, share_lr: float | None = None, ramp: float = 0.5,
            init: str = "linear", lstm_bias: str = "shared", layer_loss: float = 0.0, prune_by: str = "activation",
            filter_fn: Callable | None = None, eval_inputs: Iterable | None = None, mode: str = "float32",
            seed: int = 0, progress: bool = True) -> tuple[nn.Module, DistillReport]:
    """Compress ``model`` the Deep Compression way and recover its behaviour without labels.

    The whole pipeline, with the dense model as the teacher on unlabeled
    ``inputs`` (any iterable of model inputs):

    1. **prune**: gradual magnitude pruning from dense to ``density`` (cubic
       schedule over the first ``ramp`` of ``epochs``) with masked retraining
       of the surviving weights, ``epochs`` passes in all at ``lr``;
    2. **share**: k-means sharing of each matrix's kept weights into
       ``2**bits - 1`` centroids (``init``);
    3. **centroids**: centroid retraining, ``share_epochs`` passes (default
       ``epochs // 2``) at ``share_lr`` (default ``lr / 2``);
    4. **finalize** into EIE modules (``mode``; fixed16 calibrated on ``eval_inputs``).

    ``prune_by="activation"`` (default) ranks each ``nn.Linear`` weight by
    ``|w_ij| * rms(x_j)`` over ``inputs`` (Wanda's criterion) when pruning and
    weighs its k-means by ``rms(x_j)**2`` (:func:`input_rms`); ``"magnitude"``
    is Deep Compression's ``|w_ij|`` and plain k-means. LSTMs are pruned by
    magnitude either way. ``layer_loss`` > 0 adds the compressed modules' own
    outputs (intermediate activations) to the loss with that weight. ``epochs=0`` skips retraining
    (then only the centroids train). The report lists the agreement (cosine,
    max-abs error, argmax agreement) with the dense model on ``eval_inputs``
    (default: ``inputs``) after each stage; each stage shows a tqdm bar.
    Stages are open for a custom loop: :func:`prepare_finetune`,
    :func:`pruning_step`, :func:`distill_finetune`, :func:`share_weights`,
    :func:`finalize`.
    """
    share_epochs = max(1, epochs // 2) if share_epochs is None else share_epochs
    share_lr = lr / 2 if share_lr is None else share_lr
    items = list(inputs)
    if not items:
        raise EIEInputError("distillation needs at least one input batch")
    evals = list(eval_inputs) if eval_inputs is not None else items
    if prune_by not in PRUNE_BY:
        raise EIEInputError(f"prune_by must be one of {PRUNE_BY}, got {prune_by!r}")
    kw = dict(progress=progress, layer_loss=layer_loss, eval_inputs=evals)
    rms = None
    if prune_by == "activation":
        linear = [t.name for t in find_targets(model, density=density, bits=bits, filter_fn=filter_fn)
                  if t.kind == "linear"]
        rms = input_rms(model, items, linear) if linear else None
    start = prepare_finetune(model, density=density, bits=bits, init=init, lstm_bias=lstm_bias,
                             filter_fn=filter_fn, seed=seed, input_rms=rms)
    report = DistillReport(stages=[("compressed", agreement(model, share_weights(start), evals))])
    if epochs:
        pruned = prepare_finetune(model, density=1.0, bits=bits, init=init, lstm_bias=lstm_bias,
                                  filter_fn=filter_fn, seed=seed, input_rms=rms)
        ramp_steps = int(ramp * epochs * len(items))
        dens = density
        if not isinstance(density, (int, float)):
            raise EIEInputError("distill with epochs > 0 prunes gradually to one density; "
                                "pass a number (or epochs=0 with a dict)")
        distill_finetune(model, pruned, items, epochs=epochs, lr=lr, on_step=pruning_step(pruned, dens, ramp_steps),
                         stage="pruned", report=report, desc="distill: prune + retrain", **kw)
        set_density(pruned, dens)
    else:
        pruned = start
    shared = share_weights(pruned)
    report.stages.append(("shared", agreement(model, shared, evals)))
    distill_finetune(model, shared, items, epochs=share_epochs, lr=share_lr, stage="centroids", report=report,
                     desc="distill: centroids", **kw)
    calib = evals if mode == "fixed16" else None
    small = finalize(shared, n_pe=n_pe, mode=mode, calibration=calib)
    report.stages.append(("eie", agreement(model, small, evals)))
    report.inputs = None
    return small, report
