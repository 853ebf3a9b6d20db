"""The ``.eie`` model file: safetensors tensors plus a JSON header (DESIGN.md).

No pickle. Layout:

- safetensors ``__metadata__`` key ``"eie"`` holds the JSON header::

      {"format": "eie-runtime", "version": 1, "kind": "layer" | "layers" | ...,
       "layers": [{"name", "shape": [M, K], "n_pe", "bits", "activation",
                   "has_bias", "fixed": {"in_frac", "w_frac", "out_frac"} | null}],
       "meta": {...front-end specific...}}

- tensors ``layers.{i}.entries`` (uint8), ``layers.{i}.ptr`` (int32 or int64,
  shape (n_pe, K + 1)), ``layers.{i}.codebook`` (float32, 2**bits),
  ``layers.{i}.bias`` (float32, M; only when ``has_bias``), and any front-end
  tensors under ``extra.{name}``.

Loading parses and bounds the header before safetensors allocates anything,
then validates every field a kernel will trust; every failure is an
:class:`EIEFormatError` naming the layer and field. Saves are atomic.
"""

from __future__ import annotations

import importlib
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import atomic_write_bytes
from .errors import EIEFormatError
from .fixed_point import FixedPointParams
from .format import InterleavedCSC
from .layer import ACTIVATIONS, EIELinear

FORMAT_NAME = "eie-runtime"
FORMAT_VERSION = 1

#: Resource limits checked before anything is allocated. Raise them by
#: assigning, e.g. ``eie_runtime.model_file.LIMITS["max_dim"] = 1 << 28``.
LIMITS = {
    "max_header_bytes": 64 << 20,  # JSON header of the safetensors file
    "max_layers": 4096,
    "max_dim": 1 << 24,  # M or K of one layer (16.7M; the paper's largest is 25088)
    "max_pe": 4096,
    "max_entries": 1 << 32,  # stored entries of one layer
}

#: Loaders for header kinds the core does not build itself: kind -> "module:function".
#: The function takes a :class:`ModelFile` and returns the object ``load`` gives back.
KIND_LOADERS = {
    "graph": "eie_runtime.graph:model_from_file",
}


@dataclass
class ModelFile:
    """The decoded, validated contents of a ``.eie`` file."""

    kind: str
    layers: list[EIELinear]
    meta: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)  # name -> np.ndarray


# ---------------------------------------------------------------------- write
def _layer_header(layer: EIELinear) -> dict:
    m = layer.matrix
    return {
        "name": layer.name,
        "shape": [int(m.shape[0]), int(m.shape[1])],
        "n_pe": int(m.n_pe),
        "bits": int(m.bits),
        "activation": layer.activation,
        "has_bias": layer.bias is not None,
        "fixed": layer.fixed.to_dict() if layer.fixed is not None else None,
    }


def encode_model_file(layers, *, kind: str, meta: dict | None = None, extra: dict | None = None) -> bytes:
    """Serialize layers (+ front-end metadata and tensors) into ``.eie`` bytes."""
    from safetensors.numpy import save as st_save

    tensors = {}
    headers = []
    for i, layer in enumerate(layers):
        if not isinstance(layer, EIELinear):
            raise EIEFormatError(f"layer {i} is a {type(layer).__name__}, not an EIELinear")
        m = layer.matrix
        ptr = m.ptr.astype(np.int32) if m.ptr.size and m.ptr[-1, -1] < 2**31 else m.ptr
        tensors[f"layers.{i}.entries"] = m.entries
        tensors[f"layers.{i}.ptr"] = np.ascontiguousarray(ptr)
        tensors[f"layers.{i}.codebook"] = m.codebook
        if layer.bias is not None:
            tensors[f"layers.{i}.bias"] = layer.bias
        headers.append(_layer_header(layer))
    for name, arr in (extra or {}).items():
        tensors[f"extra.{name}"] = np.ascontiguousarray(arr)
    header = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "kind": kind,
              "layers": headers, "meta": meta or {}}
    return st_save(tensors, metadata={"eie": json.dumps(header)})


def write_model_file(path, layers, *, kind: str, meta: dict | None = None, extra: dict | None = None) -> None:
    atomic_write_bytes(path, encode_model_file(layers, kind=kind, meta=meta, extra=extra))


def save(obj, path) -> None:
    """Save a layer, an ordered list of layers, or a front-end model to ``path`` atomically.

    Front-end objects (graph models, torch modules' compressed layers) provide
    ``_eie_file_contents() -> dict(layers=..., kind=..., meta=..., extra=...)``.
    """
    if isinstance(obj, EIELinear):
        write_model_file(path, [obj], kind="layer")
    elif isinstance(obj, (list, tuple)) and all(isinstance(o, EIELinear) for o in obj):
        write_model_file(path, list(obj), kind="layers")
    elif hasattr(obj, "_eie_file_contents"):
        write_model_file(path, **obj._eie_file_contents())
    else:
        raise EIEFormatError(f"cannot save a {type(obj).__name__}: expected an EIELinear, a list of them, "
                             "or a model from eie_runtime's torch/ONNX front ends")


# ----------------------------------------------------------------------- read
def _read_header(data: bytes, source: str) -> dict:
    if len(data) < 8:
        raise EIEFormatError(f"{source}: file is {len(data)} bytes, too short for a safetensors header")
    (n,) = struct.unpack("<Q", data[:8])
    if n > LIMITS["max_header_bytes"]:
        raise EIEFormatError(f"{source}: header declares {n} bytes, over the limit of "
                             f"{LIMITS['max_header_bytes']} (LIMITS['max_header_bytes'])")
    if 8 + n > len(data):
        raise EIEFormatError(f"{source}: header declares {n} bytes but the file has only {len(data) - 8} after it (truncated?)")
    try:
        st_header = json.loads(data[8:8 + n])
        raw = st_header["__metadata__"]["eie"]
        header = json.loads(raw)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise EIEFormatError(f"{source}: not an eie-runtime model file (header: {exc.__class__.__name__}: {exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise EIEFormatError(f"{source}: header field 'format' must be {FORMAT_NAME!r}")
    version = header.get("version")
    if version != FORMAT_VERSION:
        raise EIEFormatError(f"{source}: format version {version!r} is not supported (this build reads version {FORMAT_VERSION})")
    if not isinstance(header.get("kind"), str):
        raise EIEFormatError(f"{source}: header field 'kind' must be a string")
    if not isinstance(header.get("layers"), list):
        raise EIEFormatError(f"{source}: header field 'layers' must be a list")
    if len(header["layers"]) > LIMITS["max_layers"]:
        raise EIEFormatError(f"{source}: {len(header['layers'])} layers, over LIMITS['max_layers'] = {LIMITS['max_layers']}")
    if not isinstance(header.get("meta", {}), dict):
        raise EIEFormatError(f"{source}: header field 'meta' must be an object")
    return header


def _int_field(h: dict, key: str, where: str, lo: int, hi: int) -> int:
    v = h.get(key)
    if isinstance(v, bool) or not isinstance(v, int):
        raise EIEFormatError(f"{where}: field {key!r} must be an integer, got {v!r}")
    if not lo <= v <= hi:
        raise EIEFormatError(f"{where}: field {key!r} = {v} is outside [{lo}, {hi}]")
    return v


def _tensor(tensors: dict, key: str, where: str, dtypes, shape=None) -> np.ndarray:
    if key not in tensors:
        raise EIEFormatError(f"{where}: tensor {key!r} is missing")
    t = tensors[key]
    if t.dtype not in dtypes:
        raise EIEFormatError(f"{where}: tensor {key!r} has dtype {t.dtype}, expected {' or '.join(str(np.dtype(d)) for d in dtypes)}")
    if shape is not None and t.shape != shape:
        raise EIEFormatError(f"{where}: tensor {key!r} has shape {t.shape}, expected {shape}")
    return t


def _build_layer(i: int, h, tensors: dict) -> EIELinear:
    where = f"layer {i}"
    if not isinstance(h, dict):
        raise EIEFormatError(f"{where}: header entry must be an object")
    name = h.get("name")
    if name is not None and not isinstance(name, str):
        raise EIEFormatError(f"{where}: field 'name' must be a string or null")
    if name:
        where = f"layer {i} ({name!r})"
    shape = h.get("shape")
    if not (isinstance(shape, list) and len(shape) == 2):
        raise EIEFormatError(f"{where}: field 'shape' must be [M, K]")
    m = _int_field({"M": shape[0]}, "M", where + " shape", 0, LIMITS["max_dim"])
    k = _int_field({"K": shape[1]}, "K", where + " shape", 0, LIMITS["max_dim"])
    n_pe = _int_field(h, "n_pe", where, 1, LIMITS["max_pe"])
    bits = _int_field(h, "bits", where, 1, 4)
    act = h.get("activation")
    if act not in ACTIVATIONS:
        raise EIEFormatError(f"{where}: field 'activation' must be one of {ACTIVATIONS}, got {act!r}")
    has_bias = h.get("has_bias")
    if not isinstance(has_bias, bool):
        raise EIEFormatError(f"{where}: field 'has_bias' must be true or false")
    entries = _tensor(tensors, f"layers.{i}.entries", where, (np.uint8,))
    if entries.ndim != 1 or len(entries) > LIMITS["max_entries"]:
        raise EIEFormatError(f"{where}: tensor 'entries' must be 1-D with at most {LIMITS['max_entries']} entries")
    ptr = _tensor(tensors, f"layers.{i}.ptr", where, (np.int32, np.int64), (n_pe, k + 1))
    codebook = _tensor(tensors, f"layers.{i}.codebook", where, (np.float32,), (1 << bits,))
    bias = _tensor(tensors, f"layers.{i}.bias", where, (np.float32,), (m,)) if has_bias else None
    fixed = h.get("fixed")
    if fixed is not None:
        if not isinstance(fixed, dict) or set(fixed) != {"in_frac", "w_frac", "out_frac"}:
            raise EIEFormatError(f"{where}: field 'fixed' must hold exactly in_frac, w_frac, out_frac")
        try:
            fixed = FixedPointParams(**fixed)
        except ValueError as exc:
            raise EIEFormatError(f"{where}: field 'fixed': {exc}") from None
    try:
        matrix = InterleavedCSC((m, k), n_pe, entries, ptr.astype(np.int64), codebook, name=name or f"layer {i}")
        return EIELinear(matrix, bias=bias, activation=act, fixed=fixed, name=name)
    except EIEFormatError as exc:
        raise EIEFormatError(f"{where}: {exc}") from None


def decode_model_file(data: bytes, source: str = "<bytes>") -> ModelFile:
    """Parse and validate ``.eie`` bytes."""
    from safetensors.numpy import load as st_load

    header = _read_header(data, source)
    try:
        tensors = st_load(data)
    except Exception as exc:  # safetensors raises its own error type for bad offsets/dtypes
        raise EIEFormatError(f"{source}: tensor data is malformed ({exc.__class__.__name__}: {exc})") from None
    layers = []
    for i, h in enumerate(header["layers"]):
        try:
            layers.append(_build_layer(i, h, tensors))
        except EIEFormatError as exc:
            raise EIEFormatError(f"{source}: {exc}") from None
    extra = {k[len("extra."):]: v for k, v in tensors.items() if k.startswith("extra.")}
    return ModelFile(kind=header["kind"], layers=layers, meta=header.get("meta", {}), extra=extra)


def read_model_file(path) -> ModelFile:
    path = Path(path)
    data = path.read_bytes()
    return decode_model_file(data, str(path))


def load(path):
    """Load a ``.eie`` file: an EIELinear, a list of them, or a front-end model."""
    mf = read_model_file(path)
    if mf.kind == "layer":
        if len(mf.layers) != 1:
            raise EIEFormatError(f"{path}: kind 'layer' must hold exactly one layer, found {len(mf.layers)}")
        return mf.layers[0]
    if mf.kind == "layers":
        return mf.layers
    target = KIND_LOADERS.get(mf.kind)
    if target is None:
        raise EIEFormatError(f"{path}: unknown model kind {mf.kind!r} (known: layer, layers, {', '.join(KIND_LOADERS)})")
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)(mf)
