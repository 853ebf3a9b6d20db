"""Find, check and take apart the torch modules that EIE compresses.

Floor 3 of the import ladder: this module builds core objects
(:class:`~eie_runtime.layer.EIELinear`, :class:`~eie_runtime.lstm.EIELSTMCore`)
from ``nn.Linear`` / ``nn.LSTM`` / ``nn.LSTMCell`` weights and swaps modules in
a model by name; the ``nn.Module`` wrappers live in the front end
(``eie_runtime.torch``). torch is imported lazily.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from eie_runtime.errors import EIEInputError
from eie_runtime.format import InterleavedCSC
from eie_runtime.layer import EIELinear
from eie_runtime.lstm import EIELSTMCore

from .compress import as_bias, as_weight_matrix, check_n_pe, compress_matrix, quantize_matrix
from .lstm import LSTMDirectionWeights, assemble_lstm, compress_lstm, lstm_matrix
from .prune import check_density
from .weight_sharing import check_bits

DEFAULT_DENSITY = 0.1
DEFAULT_BITS = 4
SUPPORTED_NAMES = ("nn.Linear", "nn.LSTM", "nn.LSTMCell")
# recurrent modules a user may expect to be compressed: refused by name, never skipped silently
UNSUPPORTED_RECURRENT = ("RNN", "GRU", "RNNCell", "GRUCell")


def _nn():
    import torch.nn as nn
    return nn


def module_kind(module) -> str | None:
    """``"linear"``, ``"lstm"``, ``"lstm_cell"`` for modules EIE compresses, else None."""
    nn = _nn()
    if isinstance(module, nn.LSTM):
        return "lstm"
    if isinstance(module, nn.LSTMCell):
        return "lstm_cell"
    if isinstance(module, nn.Linear) and not isinstance(module, nn.LazyLinear):
        return "linear"
    return None


@dataclass
class Target:
    """One module to compress: its first name, every name it is reachable by, its settings."""

    name: str
    names: list[str]
    module: object
    kind: str
    density: object  # float, or a list per layer for LSTMs
    bits: object


def _is_under_attention(name: str, modules: dict) -> bool:
    # nn.MultiheadAttention reads out_proj.weight directly; replacing it would break the attention
    nn = _nn()
    parts = name.split(".")
    return any(isinstance(modules.get(".".join(parts[:i])), nn.MultiheadAttention) for i in range(len(parts)))


def find_targets(model, *, density=DEFAULT_DENSITY, bits=DEFAULT_BITS,
                 filter_fn: Callable | None = None) -> list[Target]:
    """The modules of ``model`` to compress, each with its density and bits.

    ``density`` / ``bits`` are one value or a dict keyed by module name
    (``model.named_modules()`` names; ``""`` is the model itself). Modules
    missing from a dict get the default (0.1 / 4); a ``None`` value leaves that
    module uncompressed. ``filter_fn(module, name) -> bool`` further selects
    among the supported modules (``nn.Linear``, ``nn.LSTM``, ``nn.LSTMCell``).
    Naming a module that does not exist or cannot be compressed is an error.
    """
    nn = _nn()
    if not isinstance(model, nn.Module):
        raise EIEInputError(f"expected a torch.nn.Module, got {type(model).__name__}")
    if filter_fn is not None and not callable(filter_fn):
        raise EIEInputError(f"filter_fn must be callable(module, name) -> bool, got {type(filter_fn).__name__}")
    all_names: dict[int, list[str]] = {}
    modules: dict[str, object] = {}
    for name, mod in model.named_modules(remove_duplicate=False):
        modules.setdefault(name, mod)
        all_names.setdefault(id(mod), []).append(name)
    for what, setting in (("density", density), ("bits", bits)):
        if isinstance(setting, dict):
            for key in setting:
                if key not in modules:
                    cands = [n for n, m in modules.items() if module_kind(m)]
                    raise EIEInputError(f"{what} dict names module {key!r}, which {type(model).__name__} does not have; "
                                        f"compressible modules: {', '.join(repr(c) for c in cands) or 'none'}")
                if setting[key] is not None and module_kind(modules[key]) is None:
                    raise EIEInputError(_unsupported_message(key, modules[key], what))
    targets = []
    seen = set()
    for name, mod in modules.items():
        kind = module_kind(mod)
        if kind is None or id(mod) in seen or _is_under_attention(name, modules):
            continue
        if filter_fn is not None and not filter_fn(mod, name):
            continue
        d = _setting(density, all_names[id(mod)], DEFAULT_DENSITY)
        b = _setting(bits, all_names[id(mod)], DEFAULT_BITS)
        if d is None or b is None:
            continue
        seen.add(id(mod))
        check_module(mod, name)
        targets.append(Target(name, all_names[id(mod)], mod, kind, _check_density_setting(d, mod, kind, name),
                              _check_bits_setting(b, mod, kind, name)))
    return targets


def _unsupported_message(name: str, module, what: str) -> str:
    tname = type(module).__name__
    extra = " (recurrent layers other than LSTM are not supported)" if tname in UNSUPPORTED_RECURRENT else ""
    return (f"{what} dict names module {name!r}, a {tname}, which EIE cannot compress{extra}; "
            f"supported: {', '.join(SUPPORTED_NAMES)}")


def _setting(setting, names: list[str], default):
    if not isinstance(setting, dict):
        return setting
    for n in names:
        if n in setting:
            return setting[n]
    return default


def _check_density_setting(d, mod, kind, name):
    if isinstance(d, (list, tuple)):
        if kind != "lstm" or len(d) != mod.num_layers:
            raise EIEInputError(f"module {name!r}: a list of densities needs an nn.LSTM and one value per layer")
        return [check_density(v) for v in d]
    return check_density(d)


def _check_bits_setting(b, mod, kind, name):
    if isinstance(b, (list, tuple)):
        if kind != "lstm" or len(b) != mod.num_layers:
            raise EIEInputError(f"module {name!r}: a list of bits needs an nn.LSTM and one value per layer")
        return [check_bits(v) for v in b]
    return check_bits(b)


def check_module(module, name: str) -> None:
    """Refuse modules EIE cannot run as they are: not on the CPU, not float32."""
    where = f"module {name!r} ({type(module).__name__})" if name else f"module {type(module).__name__}"
    for pname, p in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False)):
        if p.device.type != "cpu":
            raise EIEInputError(f"{where}: {pname} is on {p.device}; EIE runs on the CPU with float32 weights: "
                                "call model.cpu() (a copy) first")
        if p.is_floating_point() and p.dtype != _float32():
            raise EIEInputError(f"{where}: {pname} is {str(p.dtype).replace('torch.', '')}; EIE compresses float32 "
                                "weights only: call model.float() (a copy) first")
    if module_kind(module) == "lstm":
        if getattr(module, "mode", "LSTM") != "LSTM":
            raise EIEInputError(f"{where}: RNN mode {module.mode!r} is not supported (only LSTM)")


def _float32():
    import torch
    return torch.float32


# ------------------------------------------------------------------ weights
def _np(t) -> np.ndarray | None:
    if t is None:
        return None
    return t.detach().cpu().numpy().astype(np.float32, copy=True)


def linear_parts(module) -> tuple[np.ndarray, np.ndarray | None]:
    """(weight (M, K), bias (M,) or None) of an ``nn.Linear``, as float32 numpy."""
    return _np(module.weight), _np(module.bias)


def lstm_weights(module) -> list[list[LSTMDirectionWeights]]:
    """``weights[layer][direction]`` of an ``nn.LSTM`` or ``nn.LSTMCell``, in torch's layout."""
    if module_kind(module) == "lstm_cell":
        return [[LSTMDirectionWeights(_np(module.weight_ih), _np(module.weight_hh),
                                      _np(module.bias_ih), _np(module.bias_hh))]]
    out = []
    for l in range(module.num_layers):
        row = []
        for sfx in ([""] if not module.bidirectional else ["", "_reverse"]):
            g = lambda n: getattr(module, f"{n}_l{l}{sfx}", None)
            row.append(LSTMDirectionWeights(_np(g("weight_ih")), _np(g("weight_hh")), _np(g("bias_ih")),
                                            _np(g("bias_hh")), _np(g("weight_hr")) if module.proj_size > 0 else None))
        out.append(row)
    return out


def compress_linear_module(module, *, density, bits, n_pe, seed=0, name=None) -> EIELinear:
    """An ``nn.Linear`` pruned, shared and encoded (no activation: torch applies its own)."""
    w, b = linear_parts(module)
    return compress_matrix(w, density=density, bits=bits, n_pe=n_pe, bias=b, seed=seed, name=name)


def compress_lstm_module(module, *, density, bits, n_pe, seed=0, name="lstm") -> EIELSTMCore:
    """An ``nn.LSTM`` / ``nn.LSTMCell`` as one EIE matrix per layer/direction (via ``compress_lstm``)."""
    return compress_lstm(lstm_weights(module), density=density, bits=bits, n_pe=n_pe, seed=seed, name=name)


# ------------------------------------------------- from fixed codes (fine-tuned)
def codes_of(values: np.ndarray, codebook: np.ndarray, what: str) -> np.ndarray:
    """Codebook index of every value (0 for 0.0); every value must be exactly a codebook entry."""
    order = np.argsort(codebook, kind="stable")
    sorted_cb = codebook[order]
    pos = np.clip(np.searchsorted(sorted_cb, values), 0, len(codebook) - 1)
    codes = order[pos].astype(np.uint8)
    codes[values == 0.0] = 0
    if not np.array_equal(codebook[codes], values):
        raise EIEInputError(f"{what}: weights are not all codebook values (was the shared model modified by hand?)")
    return codes


def linear_from_codes(weight: np.ndarray, bias, codebook: np.ndarray, *, n_pe: int, name=None) -> EIELinear:
    """Encode a weight already pruned and shared over ``codebook`` (e.g. after fine-tuning)."""
    n_pe = check_n_pe(n_pe)
    w = as_weight_matrix(weight)
    codes = codes_of(w.astype(np.float32), codebook, f"layer {name!r}")
    b = as_bias(bias, w.shape[0]) if bias is not None else None
    return EIELinear(InterleavedCSC.from_codes(codes, codebook, n_pe, name=name), bias=b, name=name)


def lstm_from_codes(weights: list[list[LSTMDirectionWeights]], codebooks, *, n_pe: int,
                    name: str = "lstm") -> EIELSTMCore:
    """An EIE LSTM from weights already pruned and shared; ``codebooks[l][d] = (cell, proj or None)``.

    The matrix of each layer/direction comes from :func:`~eie_runtime.converters.lstm.lstm_matrix`,
    the layout ``compress_lstm`` uses, so both paths build the same matrices.
    """
    def quantize(mat, l, d, is_proj, lname):
        codebook = codebooks[l][d][1 if is_proj else 0]
        return codes_of(mat, codebook, f"layer {lname!r}"), codebook

    return assemble_lstm(weights, quantize, n_pe=check_n_pe(n_pe), name=name)


def quantize_lstm_direction(w: LSTMDirectionWeights, *, density, bits, seed=0, mask=None, proj_mask=None):
    """Codes and codebooks of one layer/direction exactly as ``compress_lstm`` computes them.

    Returns ``(matrix, codes, codebook, proj_codes, proj_codebook)`` (the last two None without projection).
    """
    mat = lstm_matrix(w)
    codes, cb = quantize_matrix(mat, density=density, bits=bits, seed=seed, mask=mask)
    pcodes = pcb = None
    if w.w_hr is not None:
        pcodes, pcb = quantize_matrix(as_weight_matrix(w.w_hr, "w_hr"), density=density, bits=bits, seed=seed,
                                      mask=proj_mask)
    return mat, codes, cb, pcodes, pcb


# --------------------------------------------------------------- replacement
def replace_modules(model, replacements: dict):
    """Put ``replacements[name]`` at every ``name`` (in place); returns the (possibly new) root.

    A replacement for ``""`` (the model itself) is returned instead of set.
    """
    root = model
    for name, new in replacements.items():
        if name == "":
            root = new
            continue
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, new)
    return root
