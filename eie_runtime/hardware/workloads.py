"""What a sweep runs: workloads named by the user, each with a content key for the result cache.

A workload is one of

- a Table III layer name (``"alex7"``; ``"alex7@3"`` for seed 3), generated
  where it runs, uniform random at the paper's densities;
- a ``.eie`` file with its input: ``("model.eie", x)`` where ``x`` is an
  array or a ``.npy``/``.npz`` path (``"model.eie:x.npy"`` on the command line);
- ``(target, x)`` for anything :func:`~eie_runtime.hardware.simulate` takes:
  an ``EIELinear``, a feed-forward list of them, or a model (torch, ONNX,
  LSTM: its forward pass is traced once, here, and the recorded layer calls
  are what runs);
- a :class:`Workload` (the above with a name of your choosing).

The key hashes what the simulation depends on (the encoded matrices, biases,
fixed-point parameters, activations, inputs; for paper layers the name, seed
and generator source), never names or file paths.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import EIEInputError
from ..layer import EIELinear
from .trace import trace_model


@dataclass
class Workload:
    """One thing to simulate: ``name`` (table rows), ``key`` (cache), ``kind`` and ``payload`` (how to run it).

    ``kind`` is ``"paper"`` (payload: name, seed), ``"chain"`` (payload: list of
    EIELinear, input) or ``"calls"`` (payload: traced ``[(EIELinear, input), ...]``).
    Build them with :func:`resolve_workload`; ``Workload(name, target=..., x=...)``
    names a ``(target, x)`` pair.
    """

    name: str
    key: str = ""
    kind: str = ""
    payload: object = None
    target: object = None
    x: object = None
    cost: float = 1.0  # a rough relative run time, to hand out the biggest workloads first

    def __post_init__(self):
        if not self.kind:  # user-built: Workload("mine", target=model, x=x)
            if self.target is None:
                raise EIEInputError(f"workload {self.name!r} needs a target and an input")
            resolved = resolve_workload((self.target, self.x))
            self.key, self.kind, self.payload, self.cost = resolved.key, resolved.kind, resolved.payload, resolved.cost
            self.target = self.x = None  # the payload holds what runs


def _hash_array(h, a) -> None:
    a = np.ascontiguousarray(a)
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())


def _hash_layer(h, layer: EIELinear) -> None:
    m = layer.matrix
    h.update(f"layer {m.shape} {m.n_pe} {layer.activation} {layer.fixed.to_dict() if layer.fixed else None}".encode())
    for a in (m.entries, m.ptr, m.codebook, layer.bias if layer.bias is not None else np.zeros(0)):
        _hash_array(h, a)


def _paper(spec: str) -> Workload:
    from .. import paper_layers

    name, _, seed = spec.partition("@")
    paper_layers.paper_layer_spec(name)  # raises with the list of names
    try:
        seed = int(seed) if seed else 0
    except ValueError:
        raise EIEInputError(f"paper workload {spec!r}: the seed after '@' must be an integer") from None
    h = hashlib.sha256(b"paper ")
    h.update(f"{name.lower()} {seed}".encode())
    h.update(Path(paper_layers.__file__).read_bytes())  # the generator itself
    label = name.lower() if seed == 0 else f"{name.lower()}@{seed}"
    spec = paper_layers.paper_layer_spec(name)
    # simulated entries, plus generating the layer (a pass over M x K codes)
    cost = spec.m * spec.k * (spec.weight_density * spec.act_density + 0.01)
    return Workload(label, h.hexdigest(), "paper", (name.lower(), seed), cost=cost)


def _load_input(x, where: str):
    if isinstance(x, (str, Path)):
        from ..array_files import load_array_file

        return load_array_file(str(x), where)
    return x


def _from_target(name: str, target, x) -> Workload:
    h = hashlib.sha256()
    if isinstance(target, EIELinear):
        target = [target]
    if isinstance(target, (list, tuple)) and target and all(isinstance(t, EIELinear) for t in target):
        x = np.asarray(x)
        h.update(b"chain ")
        for layer in target:
            _hash_layer(h, layer)
        _hash_array(h, x)
        cost = float(sum(layer.matrix.stored_entries for layer in target)) * max(1, len(np.atleast_2d(x)))
        return Workload(name, h.hexdigest(), "chain", (list(target), x), cost=cost)
    calls = trace_model(target, x)
    if not calls:
        raise EIEInputError(f"workload {name!r}: the model ran no EIE layer during its forward pass")
    h.update(b"calls ")
    cost = 0.0
    for layer, inp in calls:
        _hash_layer(h, layer)
        _hash_array(h, np.asarray(inp))
        cost += layer.matrix.stored_entries * len(np.atleast_2d(inp))
    return Workload(name, h.hexdigest(), "calls", calls, cost=cost)


def resolve_workload(item) -> Workload:
    """One workload from what the user gave (see the module doc)."""
    if isinstance(item, Workload):
        return item
    if isinstance(item, str) and ":" not in item and not item.endswith(".eie"):
        return _paper(item)
    if isinstance(item, str) and ":" in item:  # "model.eie:x.npy" (the command line's form)
        path, _, inp = item.rpartition(":")
        item = (path, inp)
    if _is_pair(item):
        target, x = item
        x = _load_input(x, "workload input")
        if isinstance(target, (str, Path)):
            from ..model_file import load

            return _from_target(Path(target).stem, load(str(target)), x)
        name = getattr(target, "name", None) if isinstance(target, EIELinear) else None
        return _from_target(name or type(target).__name__, target, x)
    raise EIEInputError(f"cannot make a workload of {item!r}: give a paper layer name, (model.eie, input), "
                        "(layer or model, input) or a Workload")


def _is_pair(item) -> bool:
    """(target, x): a tuple whose first item is a model, a layer, or a .eie path (not a tuple of names)."""
    return (isinstance(item, tuple) and len(item) == 2
            and (isinstance(item[0], Path) or not isinstance(item[0], str) or item[0].endswith(".eie")))


def resolve_workloads(items) -> list[Workload]:
    """Workloads from one item or a list of them, with unique names (a repeat gets ``#2``, ``#3``...)."""
    if isinstance(items, (str, Workload)) or _is_pair(items):
        items = [items]
    out, seen = [], {}
    for item in items:
        w = resolve_workload(item)
        n = seen.get(w.name, 0) + 1
        seen[w.name] = n
        if n > 1:
            w = Workload(f"{w.name}#{n}", w.key, w.kind, w.payload, cost=w.cost)
        out.append(w)
    if not out:
        raise EIEInputError("a sweep needs at least one workload")
    return out
