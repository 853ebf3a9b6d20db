"""The model-level API: compress a torch model, calibrate it, switch modes, go back to dense, summarize."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from torch import nn

from ..converters.compress import compress_matrix
from ..converters.lstm import check_lstm_bias, compress_lstm
from ..converters.weight_sharing import check_init
from ..errors import EIEInputError
from ..tables import format_table
from .base import EIEModule, check_mode
from .linear import EIELinear
from .gru import EIEGRU, EIEGRUCell
from .lstm import EIELSTM, EIELSTMCell
from .targets import Target, check_module, find_targets, replace_modules
from .threads import keep_torch_threads
from .weights import compress_gru_module, linear_parts, lstm_weights


def call_model(model, item):
    """``model(item)``, ``model(*item)`` for a tuple/list, ``model(**item)`` for a dict."""
    if isinstance(item, dict):
        return model(**item)
    if isinstance(item, (tuple, list)):
        return model(*item)
    return model(item)


def eie_modules(model: nn.Module) -> dict[str, EIEModule]:
    """Name -> EIE module, for every EIE module in ``model`` (first name of shared ones)."""
    return {n: m for n, m in model.named_modules() if isinstance(m, EIEModule)}


def _wrap(target: Target, *, n_pe: int, seed: int, mode: str, init: str = "linear",
          lstm_bias: str = "shared") -> EIEModule:
    name = target.name or "model"
    mod = target.module
    check_module(mod, name)
    if target.kind == "linear":
        w, b = linear_parts(mod)
        return EIELinear(compress_matrix(w, density=target.density, bits=target.bits, n_pe=n_pe, bias=b, seed=seed,
                                         init=init, name=name), mode="float32")
    if target.kind in ("gru", "gru_cell"):
        gcore = compress_gru_module(mod, density=target.density, bits=target.bits, n_pe=n_pe, seed=seed, name=name,
                                    init=init, bias=lstm_bias)
        return EIEGRU(gcore, batch_first=mod.batch_first) if target.kind == "gru" else EIEGRUCell(gcore)
    core = compress_lstm(lstm_weights(mod), density=target.density, bits=target.bits, n_pe=n_pe, seed=seed,
                         name=name, init=init, bias=lstm_bias)
    if target.kind == "lstm":
        return EIELSTM(core, batch_first=mod.batch_first, mode="float32")
    return EIELSTMCell(core, mode="float32")


@keep_torch_threads
def compress(model: nn.Module, *, density=0.1, bits=4, n_pe: int = 64, mode: str = "float32",
             filter_fn: Callable | None = None, calibration: Iterable | None = None, seed: int = 0,
             init: str = "linear", lstm_bias: str = "shared", progress: bool = False) -> nn.Module:
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
    init : "linear", "density" (alias "quantile") or "random"
        Codebook initialisation of the k-means (``converters.weight_sharing.INITS``).
        ``"density"`` gives lower weight error on matrices with outliers and is
        the better choice when the model is not retrained afterwards; see
        docs/torch.md, "Choices that decide quality".
    lstm_bias : "shared" or "dense"
        ``"shared"`` (the paper's NT-LSTM): the bias column is pruned and shared
        with the gate weights. ``"dense"``: the bias stays exact, as the cell
        layer's float32 bias. GRUs follow the same choice for their two bias
        columns (``converters.gru.compress_gru(bias=...)``).

    Returns
    -------
    nn.Module
        The compressed copy (an EIE module itself if ``model`` was a single supported module).

    Examples
    --------
    >>> small = compress(model, density={"fc1": 0.05}, bits=4, filter_fn=lambda m, n: "head" not in n)
    >>> print(summary(small)); y = small(x)
    """
    check_mode(mode)
    check_init(init)
    check_lstm_bias(lstm_bias)
    if isinstance(model, (torch.jit.ScriptModule, torch.jit.ScriptFunction)) or not isinstance(model, nn.Module):
        # a TorchScript module's submodules are RecursiveScriptModules, never nn.Linear: nothing would be compressed
        raise EIEInputError(f"compress() takes a plain torch.nn.Module, got {type(model).__name__}: pass the "
                            "model before torch.jit.script/trace (or the nn.Module you scripted) and script the "
                            "compressed copy if you need TorchScript")
    if mode == "fixed16" and calibration is None:
        raise EIEInputError("mode='fixed16' needs calibration=<iterable of sample inputs> to choose fractional bits")
    targets = find_targets(model, density=density, bits=bits, filter_fn=filter_fn)
    new = copy.deepcopy(model)
    new_modules = dict(new.named_modules(remove_duplicate=False))
    replacements = {}
    it = targets
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(targets, desc="compress", unit="module")
    for t in it:
        t = Target(t.name, t.names, new_modules[t.name], t.kind, t.density, t.bits)
        wrapped = _wrap(t, n_pe=n_pe, seed=seed, mode=mode, init=init, lstm_bias=lstm_bias)
        for n in t.names:
            replacements[n] = wrapped
    new = replace_modules(new, replacements)
    if calibration is not None:
        calibrate(new, calibration)
    set_mode(new, mode)
    return new


@keep_torch_threads
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
    check_mode(mode)
    for name, m in eie_modules(model).items():
        if mode == "fixed16":
            missing = [l.name for l in m.eie_layers() if l.fixed is None]
            if missing:
                raise EIEInputError(f"module {name!r}: layers {missing} have no fixed-point parameters; "
                                    "run eie_runtime.torch.calibrate(model, samples) first")
        m.mode = mode
    return model


@keep_torch_threads
def to_dense(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every EIE module replaced by its plain torch equivalent."""
    new = copy.deepcopy(model)
    if isinstance(new, EIEModule):
        return new.to_dense()
    repl = {}
    dense_of = {}
    for name, m in new.named_modules(remove_duplicate=False):
        if isinstance(m, EIEModule):
            repl[name] = dense_of.setdefault(id(m), m.to_dense())
    return replace_modules(new, repl)


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

