"""``.eie`` files of torch modules (kind ``torch-modules``): save, load, and the loader ``eie_runtime.load`` uses.

Only the compressed layers are stored, with each module's type and settings in
the file's metadata; the rest of a model stays the user's code.
"""

from __future__ import annotations

import copy

from torch import nn

from ..errors import EIEFormatError, EIEInputError
from ..gru import EIEGRUCore
from ..lstm import EIELSTMCore
from ..model_file import ModelFile, read_model_file, write_model_file
from .base import FILE_KIND, EIEModule, check_mode, file_contents
from .gru import EIEGRU, EIEGRUCell
from .linear import EIELinear
from .lstm import EIELSTM, EIELSTMCell
from .model import eie_modules, set_mode
from .targets import replace_modules
from .threads import keep_torch_threads


@keep_torch_threads
def save(model: nn.Module, path) -> None:
    """Save every EIE module of ``model`` (or one EIE module) to a ``.eie`` file, atomically.

    Only the compressed layers are stored; the rest of the model (convolutions,
    activations) stays the user's: rebuild it and ``load(path, into=model)``.
    """
    mods = {"": model} if isinstance(model, EIEModule) else eie_modules(model)
    if not mods:
        raise EIEInputError("the model has no EIE modules to save; compress it first")
    write_model_file(path, **file_contents(mods))


def _count(entry: dict, key: str) -> int:
    """A module entry's integer field: a JSON integer (not a bool, a float, Infinity or a list) in [0, 2**31)."""
    v = entry[key]
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 1 << 31:
        raise ValueError(f"{key!r} must be an integer in [0, 2**31), got {_short(v)}")
    return v


def _short(v) -> str:
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


@keep_torch_threads
def modules_from_file(mf: ModelFile):
    """The EIE modules of a ``torch-modules`` file: one module if saved from one, else ``{name: module}``.

    This is the ``eie_runtime.file_kinds`` entry point that lets ``eie_runtime.load`` open these files.
    """
    entries = mf.meta.get("modules")
    if not isinstance(entries, list):
        raise EIEFormatError("torch-modules file: meta 'modules' must be a list")
    out = {}
    for e in entries:
        try:
            if not isinstance(e, dict):
                raise TypeError("not an object")
            name, first, count, typ = e["name"], _count(e, "first_layer"), _count(e, "n_layers"), e["type"]
            if not isinstance(name, str) or not isinstance(typ, str):
                raise TypeError("'name' and 'type' must be strings")
            if name in out:
                raise ValueError(f"a second module named {name!r}")
            mode = check_mode(e.get("mode", "float32"))
        except (KeyError, TypeError, ValueError) as exc:
            raise EIEFormatError(f"torch-modules file: bad module entry {_short(e)} ({exc})") from None
        if first < 0 or count < 1 or first + count > len(mf.layers):
            raise EIEFormatError(f"module {name!r}: layers {first}..{first + count - 1} are not in the file "
                                 f"({len(mf.layers)} layers)")
        layers = mf.layers[first:first + count]
        try:
            if typ == "EIELinear":
                mod = EIELinear(layers[0], mode="float32")
            elif typ in ("EIELSTM", "EIELSTMCell"):
                nl, nd = (_count(e, "num_layers"), _count(e, "num_directions")) if typ == "EIELSTM" else (1, 1)
                has_proj = bool(e.get("proj", False))
                if count != nl * nd * (2 if has_proj else 1):
                    raise EIEFormatError(f"module {name!r}: {count} layers for {nl} layers x {nd} directions")
                cells = [layers[l * nd:(l + 1) * nd] for l in range(nl)]
                proj = [layers[nl * nd + l * nd:nl * nd + (l + 1) * nd] for l in range(nl)] if has_proj else None
                core = EIELSTMCore(cells, _count(e, "hidden_size"), proj=proj)
                mod = (EIELSTM(core, batch_first=bool(e.get("batch_first", False)))
                       if typ == "EIELSTM" else EIELSTMCell(core))
            elif typ in ("EIEGRU", "EIEGRUCell"):
                nl, nd = (_count(e, "num_layers"), _count(e, "num_directions")) if typ == "EIEGRU" else (1, 1)
                if count != nl * nd * 3:
                    raise EIEFormatError(f"module {name!r}: {count} layers for {nl} GRU layers x {nd} directions x 3")
                cells = [[tuple(layers[(l * nd + d) * 3:(l * nd + d) * 3 + 3]) for d in range(nd)] for l in range(nl)]
                core = EIEGRUCore(cells, _count(e, "hidden_size"))
                mod = EIEGRU(core, batch_first=bool(e.get("batch_first", False))) if typ == "EIEGRU" else EIEGRUCell(core)
            else:
                raise EIEFormatError(f"module {name!r}: unknown type {typ!r}")
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, EIEFormatError):
                raise
            raise EIEFormatError(f"module {name!r}: {exc}") from None
        if mode == "fixed16":
            set_mode(mod, "fixed16")
        out[name] = mod
    if list(out) == [""]:
        return out[""]
    return out


@keep_torch_threads
def load(path, into: nn.Module | None = None):
    """Load a file written by :func:`save`.

    Without ``into``: the EIE module (if one was saved) or ``{name: module}``.
    With ``into`` (the original dense model, or any model with modules at those
    names): a copy of ``into`` with those modules replaced by the loaded ones.
    """
    mf = read_model_file(path)
    if mf.kind != FILE_KIND:
        raise EIEFormatError(f"{path}: holds a {mf.kind!r} model, not torch modules ({FILE_KIND!r})")
    mods = modules_from_file(mf)
    if into is None:
        return mods
    if isinstance(mods, EIEModule):
        return mods
    new = copy.deepcopy(into)
    known = dict(new.named_modules(remove_duplicate=False))
    repl = {}
    for name, m in mods.items():
        if name not in known:
            raise EIEInputError(f"{path}: module {name!r} is not in the given {type(into).__name__}")
        for other, mod in known.items():  # every alias of that module
            if mod is known[name]:
                repl[other] = m
    return replace_modules(new, repl)

