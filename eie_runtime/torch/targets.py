"""Which torch modules EIE compresses, with what settings, and how they are swapped in a model by name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..converters.prune import check_density
from ..converters.weight_sharing import check_bits
from ..errors import EIEInputError

DEFAULT_DENSITY = 0.1
DEFAULT_BITS = 4
SUPPORTED_NAMES = ("nn.Linear", "nn.LSTM", "nn.LSTMCell", "nn.GRU", "nn.GRUCell")
# recurrent modules a user may expect to be compressed: refused by name, never skipped silently
UNSUPPORTED_RECURRENT = ("RNN", "RNNCell")
RECURRENT_KINDS = ("lstm", "lstm_cell", "gru", "gru_cell")


def module_kind(module) -> str | None:
    """``"linear"``, ``"lstm"``, ``"lstm_cell"``, ``"gru"``, ``"gru_cell"`` for modules EIE compresses, else None."""
    if isinstance(module, nn.LSTM):
        return "lstm"
    if isinstance(module, nn.LSTMCell):
        return "lstm_cell"
    if isinstance(module, nn.GRU):
        return "gru"
    if isinstance(module, nn.GRUCell):
        return "gru_cell"
    if isinstance(module, nn.Linear) and not isinstance(module, nn.LazyLinear):
        return "linear"
    return None


@dataclass
class Target:
    """One module to compress: its first name, every name it is reachable by, its settings."""

    name: str
    names: list[str]
    module: nn.Module
    kind: str
    density: object  # float, or a list per layer for LSTMs
    bits: object


def _is_under_attention(name: str, modules: dict) -> bool:
    # nn.MultiheadAttention reads out_proj.weight directly; replacing it would break the attention
    parts = name.split(".")
    return any(isinstance(modules.get(".".join(parts[:i])), nn.MultiheadAttention) for i in range(len(parts)))


def find_targets(model, *, density=DEFAULT_DENSITY, bits=DEFAULT_BITS,
                 filter_fn: Callable | None = None) -> list[Target]:
    """The modules of ``model`` to compress, each with its density and bits.

    ``density`` / ``bits`` are one value or a dict keyed by module name
    (``model.named_modules()`` names; ``""`` is the model itself). Modules
    missing from a dict get the default (0.1 / 4); a ``None`` value leaves that
    module uncompressed. ``filter_fn(module, name) -> bool`` further selects
    among the supported modules (``nn.Linear``, ``nn.LSTM``, ``nn.LSTMCell``, ``nn.GRU``, ``nn.GRUCell``).
    Naming a module that does not exist or cannot be compressed is an error.
    """
    if not isinstance(model, nn.Module):
        raise EIEInputError(f"expected a torch.nn.Module, got {type(model).__name__}")
    if filter_fn is not None and not callable(filter_fn):
        raise EIEInputError(f"filter_fn must be callable(module, name) -> bool, got {type(filter_fn).__name__}")
    all_names: dict[int, list[str]] = {}
    modules: dict[str, nn.Module] = {}
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
    extra = " (plain RNNs are not supported: LSTM and GRU are)" if tname in UNSUPPORTED_RECURRENT else ""
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
        if kind not in ("lstm", "gru") or len(d) != mod.num_layers:
            raise EIEInputError(f"module {name!r}: a list of densities needs an nn.LSTM or nn.GRU and one value per layer")
        return [check_density(v) for v in d]
    return check_density(d)


def _check_bits_setting(b, mod, kind, name):
    if isinstance(b, (list, tuple)):
        if kind not in ("lstm", "gru") or len(b) != mod.num_layers:
            raise EIEInputError(f"module {name!r}: a list of bits needs an nn.LSTM or nn.GRU and one value per layer")
        return [check_bits(v) for v in b]
    return check_bits(b)


def check_module(module, name: str) -> None:
    """Refuse modules EIE cannot run as they are: not on the CPU, not float32."""
    where = f"module {name!r} ({type(module).__name__})" if name else f"module {type(module).__name__}"
    for pname, p in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False)):
        if p.device.type != "cpu":
            raise EIEInputError(f"{where}: {pname} is on {p.device}; EIE runs on the CPU with float32 weights: "
                                "call model.cpu() (a copy) first")
        if p.is_floating_point() and p.dtype != torch.float32:
            raise EIEInputError(f"{where}: {pname} is {str(p.dtype).replace('torch.', '')}; EIE compresses float32 "
                                "weights only: call model.float() (a copy) first")
    kind = module_kind(module)
    if kind in ("lstm", "gru"):
        want = kind.upper()
        if getattr(module, "mode", want) != want:
            raise EIEInputError(f"{where}: RNN mode {module.mode!r} is not supported (an {type(module).__name__} "
                                f"must run {want})")


def replace_modules(model: nn.Module, replacements: dict) -> nn.Module:
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
