"""The ``.eie`` model file: safetensors tensors plus a JSON header (docs/design.md).

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

Loading parses the safetensors tensor table itself and bounds every declared
size (against the file and ``LIMITS``) before anything is allocated, then
validates every field a kernel will trust; every failure is an
:class:`EIEFormatError` naming the layer and field. Saves are atomic.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import stat
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
#: assigning, e.g. ``eie_runtime.model_file.LIMITS["max_dim"] = 1 << 28``
#: (see SECURITY.md).
LIMITS = {
    "max_header_bytes": 64 << 20,  # JSON header of the safetensors file
    "max_layers": 4096,
    "max_dim": 1 << 24,  # M or K of one layer (16.7M; the paper's largest is 25088)
    "max_pe": 4096,
    "max_entries": 1 << 32,  # stored entries of one layer
    "max_tensors": 1 << 16,  # tensors in the file
    "max_tensor_bytes": 16 << 30,  # bytes of one tensor
}

# safetensors dtype names -> numpy dtypes (the file is little-endian)
_ST_DTYPES = {"BOOL": "|b1", "U8": "|u1", "I8": "|i1", "U16": "<u2", "I16": "<i2", "F16": "<f2",
              "U32": "<u4", "I32": "<i4", "F32": "<f4", "U64": "<u8", "I64": "<i8", "F64": "<f8"}

#: Entry-point group of loaders for header kinds the core does not build itself. Each entry is named by
#: its kind and points at a function taking a :class:`ModelFile` and returning what ``load`` gives back;
#: front ends declare theirs in pyproject.toml, so the core never names them (nor imports torch for a
#: file that does not need it).
KIND_ENTRY_POINTS = "eie_runtime.file_kinds"
_KIND_LOADERS: dict = {}  # kind -> loader, registered at run time or resolved from the entry points


def register_kind(kind: str, loader) -> None:
    """Let :func:`load` open files whose header ``kind`` is ``kind`` with ``loader(model_file)``."""
    if kind in ("layer", "layers"):
        raise ValueError(f"kind {kind!r} is the core's own")
    _KIND_LOADERS[kind] = loader


def _kind_loader(kind: str, source: str):
    loader = _KIND_LOADERS.get(kind)
    if loader is not None:
        return loader
    found = {ep.name: ep for ep in importlib.metadata.entry_points(group=KIND_ENTRY_POINTS)}
    if kind not in found:
        known = ", ".join(["layer", "layers", *sorted(set(found) | set(_KIND_LOADERS))])
        raise EIEFormatError(f"{source}: header field 'kind': unknown model kind {kind!r} (known: {known})")
    try:
        loader = found[kind].load()
    except (ImportError, AttributeError) as exc:
        raise EIEFormatError(f"{source}: model kind {kind!r} needs {found[kind].value}, which is not available "
                             f"here ({exc})") from None
    _KIND_LOADERS[kind] = loader
    return loader


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


def _check_writable(i: int, layer: EIELinear) -> None:
    """Refuse to write what :func:`load` would refuse under the same ``LIMITS``."""
    m = layer.matrix
    for what, value, limit in (("M", m.shape[0], "max_dim"), ("K", m.shape[1], "max_dim"), ("n_pe", m.n_pe, "max_pe"),
                               ("stored entries", m.entries.shape[0], "max_entries")):
        if value > LIMITS[limit]:
            raise EIEFormatError(f"cannot save layer {i} ({layer.name or 'unnamed'}): {what} = {value} is over "
                                 f"LIMITS[{limit!r}] = {LIMITS[limit]}, so load() would refuse the file; raise the "
                                 f"limit (eie_runtime.model_file.LIMITS) where the file is written and read")


def encode_model_file(layers, *, kind: str, meta: dict | None = None, extra: dict | None = None) -> bytes:
    """Serialize layers (+ front-end metadata and tensors) into ``.eie`` bytes."""
    from safetensors.numpy import save as st_save

    tensors = {}
    headers = []
    for i, layer in enumerate(layers):
        if not isinstance(layer, EIELinear):
            raise EIEFormatError(f"layer {i} is a {type(layer).__name__}, not an EIELinear")
        _check_writable(i, layer)
        m = layer.matrix
        ptr = m.ptr.astype(np.int32) if m.ptr.size and m.ptr[-1, -1] < 2**31 else m.ptr
        tensors[f"layers.{i}.entries"] = m.entries
        tensors[f"layers.{i}.ptr"] = np.ascontiguousarray(ptr)
        tensors[f"layers.{i}.codebook"] = m.codebook
        if layer.bias is not None:
            tensors[f"layers.{i}.bias"] = layer.bias
        headers.append(_layer_header(layer))
    for name, arr in (extra or {}).items():
        tensors[f"extra.{name}"] = np.asarray(arr, order="C")  # keeps 0-d arrays 0-d
    header = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "kind": kind,
              "layers": headers, "meta": meta or {}}
    try:
        text = json.dumps(header)
    except (TypeError, ValueError) as exc:  # e.g. bytes from a non-UTF-8 ONNX name in 'meta'
        raise EIEFormatError(f"cannot save: header field 'meta' is not JSON-serializable ({exc})") from None
    return st_save(tensors, metadata={"eie": text})


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
def _read_header(data: bytes, source: str) -> tuple[dict, dict, int]:
    """(eie header, safetensors tensor index, byte offset of the tensor data)."""
    if len(data) < 8:
        raise EIEFormatError(f"{source}: file is {len(data)} bytes, too short for a safetensors header")
    (n,) = struct.unpack("<Q", data[:8])
    if data[8:72].lstrip()[:1] != b"{":  # a safetensors header is a JSON object
        raise EIEFormatError(f"{source}: not an .eie file (no safetensors header: it starts with {data[:8]!r})")
    if n > LIMITS["max_header_bytes"]:
        raise EIEFormatError(f"{source}: header declares {n} bytes, over the limit of "
                             f"{LIMITS['max_header_bytes']} (LIMITS['max_header_bytes'])")
    if 8 + n > len(data):
        raise EIEFormatError(f"{source}: header declares {n} bytes but the file has only {len(data) - 8} after it (truncated?)")
    try:
        st_header = json.loads(data[8:8 + n])
        raw = st_header["__metadata__"]["eie"]
        header = json.loads(raw)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError) as exc:
        raise EIEFormatError(f"{source}: not an eie-runtime model file (header: {exc.__class__.__name__}: {exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise EIEFormatError(f"{source}: header field 'format' must be {FORMAT_NAME!r}")
    version = header.get("version")
    if version != FORMAT_VERSION:
        raise EIEFormatError(f"{source}: header field 'version': format version {version!r} is not supported (this build reads version {FORMAT_VERSION})")
    if not isinstance(header.get("kind"), str):
        raise EIEFormatError(f"{source}: header field 'kind' must be a string")
    if not isinstance(header.get("layers"), list):
        raise EIEFormatError(f"{source}: header field 'layers' must be a list")
    if len(header["layers"]) > LIMITS["max_layers"]:
        raise EIEFormatError(f"{source}: {len(header['layers'])} layers, over LIMITS['max_layers'] = {LIMITS['max_layers']}")
    if not isinstance(header.get("meta", {}), dict):
        raise EIEFormatError(f"{source}: header field 'meta' must be an object")
    index = {k: v for k, v in st_header.items() if k != "__metadata__"}
    return header, index, 8 + n


class _TensorRef:
    """A tensor's place in the file, checked against the buffer but not yet copied out."""

    def __init__(self, name: str, dtype: np.dtype, shape: tuple, begin: int, end: int):
        self.name, self.dtype, self.shape, self.begin, self.end = name, dtype, shape, begin, end

    def array(self, data: bytes) -> np.ndarray:
        # a copy: writable, aligned, native byte order, independent of ``data``
        flat = np.frombuffer(data, dtype=self.dtype, count=int(np.prod(self.shape, dtype=object)), offset=self.begin)
        return flat.astype(self.dtype.newbyteorder("="), copy=True).reshape(self.shape)


def _tensor_index(index: dict, start: int, size: int, source: str) -> dict:
    """Validate the safetensors tensor table as safetensors itself does, without allocating.

    Every tensor must have a known dtype, non-negative integer dims, and offsets
    that lie in the file, match ``prod(shape) * itemsize`` and tile the data
    section exactly (no gaps, no overlaps).
    """
    if len(index) > LIMITS["max_tensors"]:
        raise EIEFormatError(f"{source}: {len(index)} tensors, over LIMITS['max_tensors'] = {LIMITS['max_tensors']}")
    refs = {}
    for name, info in index.items():
        where = f"{source}: tensor {name!r}"
        if not isinstance(info, dict):
            raise EIEFormatError(f"{where}: entry must be an object")
        dt = _ST_DTYPES.get(info.get("dtype")) if isinstance(info.get("dtype"), str) else None
        if dt is None:
            raise EIEFormatError(f"{where}: field 'dtype' = {info.get('dtype')!r} is not one of {sorted(_ST_DTYPES)}")
        dt = np.dtype(dt)
        shape, offs = info.get("shape"), info.get("data_offsets")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise EIEFormatError(f"{where}: field 'shape' must be a list of non-negative integers, got {shape!r}")
        if not (isinstance(offs, list) and len(offs) == 2
                and all(isinstance(o, int) and not isinstance(o, bool) for o in offs) and 0 <= offs[0] <= offs[1] <= size):
            raise EIEFormatError(f"{where}: field 'data_offsets' must be [begin, end] with 0 <= begin <= end <= {size}, got {offs!r}")
        nbytes = dt.itemsize
        for d in shape:  # Python ints: no overflow
            nbytes *= d
        if nbytes != offs[1] - offs[0]:
            raise EIEFormatError(f"{where}: shape {shape} of {info['dtype']} needs {nbytes} bytes but 'data_offsets' span {offs[1] - offs[0]}")
        if nbytes > LIMITS["max_tensor_bytes"]:
            raise EIEFormatError(f"{where}: {nbytes} bytes, over LIMITS['max_tensor_bytes'] = {LIMITS['max_tensor_bytes']}")
        refs[name] = _TensorRef(name, dt, tuple(shape), start + offs[0], start + offs[1])
    cursor = start
    for ref in sorted(refs.values(), key=lambda r: (r.begin, r.end)):
        if ref.begin != cursor:
            raise EIEFormatError(f"{source}: tensor {ref.name!r} starts at byte {ref.begin - start} of the data section, "
                                 f"expected {cursor - start} (tensors must tile the data without gaps or overlaps)")
        cursor = ref.end
    if cursor != start + size:
        raise EIEFormatError(f"{source}: tensors cover {cursor - start} bytes but the data section has {size}")
    return refs


def _int_field(h: dict, key: str, where: str, lo: int, hi: int) -> int:
    v = h.get(key)
    if isinstance(v, bool) or not isinstance(v, int):
        raise EIEFormatError(f"{where}: field {key!r} must be an integer, got {v!r}")
    if not lo <= v <= hi:
        raise EIEFormatError(f"{where}: field {key!r} = {v} is outside [{lo}, {hi}]")
    return v


def _tensor(tensors: dict, key: str, where: str, dtypes, shape=None, data: bytes | None = None):
    """Check a tensor's dtype and shape from the file's table, then (given ``data``) copy it out."""
    if key not in tensors:
        raise EIEFormatError(f"{where}: tensor {key!r} is missing")
    t = tensors[key]
    if t.dtype not in dtypes:
        raise EIEFormatError(f"{where}: tensor {key!r} has dtype {t.dtype}, expected {' or '.join(str(np.dtype(d)) for d in dtypes)}")
    if shape is not None and t.shape != shape:
        raise EIEFormatError(f"{where}: tensor {key!r} has shape {t.shape}, expected {shape}")
    return t.array(data) if isinstance(t, _TensorRef) and data is not None else t


def _build_layer(i: int, h, tensors: dict, data: bytes = b"") -> EIELinear:
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
    # shapes and dtypes are checked from the file's table before any tensor is copied out
    ref = tensors.get(f"layers.{i}.entries")
    if ref is not None and (len(ref.shape) != 1 or ref.shape[0] > LIMITS["max_entries"]):
        raise EIEFormatError(f"{where}: tensor 'entries' has shape {ref.shape}, expected 1-D with at most "
                             f"{LIMITS['max_entries']} entries (LIMITS['max_entries'])")
    for key, dtypes, want in (("entries", (np.uint8,), None), ("ptr", (np.int32, np.int64), (n_pe, k + 1)),
                              ("codebook", (np.float32,), (1 << bits,))) + ((("bias", (np.float32,), (m,)),) if has_bias else ()):
        _tensor(tensors, f"layers.{i}.{key}", where, dtypes, want)
    if not has_bias and f"layers.{i}.bias" in tensors:
        raise EIEFormatError(f"{where}: field 'has_bias' is false but tensor 'layers.{i}.bias' is present")
    entries = _tensor(tensors, f"layers.{i}.entries", where, (np.uint8,), data=data)
    ptr = _tensor(tensors, f"layers.{i}.ptr", where, (np.int32, np.int64), (n_pe, k + 1), data=data)
    codebook = _tensor(tensors, f"layers.{i}.codebook", where, (np.float32,), (1 << bits,), data=data)
    bias = _tensor(tensors, f"layers.{i}.bias", where, (np.float32,), (m,), data=data) if has_bias else None
    fixed = h.get("fixed")
    if fixed is not None:
        if not isinstance(fixed, dict) or set(fixed) != {"in_frac", "w_frac", "out_frac"}:
            raise EIEFormatError(f"{where}: field 'fixed' must hold exactly in_frac, w_frac, out_frac")
        try:
            fixed = FixedPointParams(**fixed)
        except ValueError as exc:
            raise EIEFormatError(f"{where}: field 'fixed': {exc}") from None
    try:
        # validated unnamed (``where`` already names the layer), named afterwards
        matrix = InterleavedCSC((m, k), n_pe, entries, ptr.astype(np.int64), codebook)
        matrix.name = name or f"layer {i}"
        return EIELinear(matrix, bias=bias, activation=act, fixed=fixed, name=name)
    except EIEFormatError as exc:
        raise EIEFormatError(f"{where}: {exc}") from None


def decode_model_file(data: bytes, source: str = "<bytes>") -> ModelFile:
    """Parse and validate ``.eie`` bytes."""
    # The tensor table is parsed here rather than by safetensors' loader so that
    # every declared size is checked against LIMITS and the file before any copy.
    data = bytes(data)
    header, index, start = _read_header(data, source)
    tensors = _tensor_index(index, start, len(data) - start, source)
    layers = []
    for i, h in enumerate(header["layers"]):
        try:
            layers.append(_build_layer(i, h, tensors, data))
        except EIEFormatError as exc:
            raise EIEFormatError(f"{source}: {exc}") from None
    extra = {k[len("extra."):]: v.array(data) for k, v in tensors.items() if k.startswith("extra.")}
    return ModelFile(kind=header["kind"], layers=layers, meta=header.get("meta", {}), extra=extra)


def read_regular_file(path, what: str = "file") -> bytes:
    """The bytes of ``path``, which must be a regular file (directly or through a symlink).

    A FIFO, a device or a socket is refused before anything is read (opening does
    not block on a FIFO; a symlink to ``/dev/zero`` is not read without end), and
    exactly the size the file had when opened is read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except IsADirectoryError:
        raise EIEFormatError(f"{path}: is a directory, not a {what}") from None
    except FileNotFoundError:
        raise  # the caller's missing file, as Python says it (the CLI reports it)
    except OSError as exc:  # a symlink loop, no permission, a name too long...
        raise EIEFormatError(f"{path}: cannot be read as a {what} ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise EIEFormatError(f"{path}: is not a regular file (a FIFO, device, socket or directory), not a {what}")
        chunks, left = [], st.st_size
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 24))
            if not chunk:  # truncated while we read
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_model_file(path) -> ModelFile:
    path = Path(path)
    return decode_model_file(read_regular_file(path, "model file"), str(path))


def load(path):
    """Load a ``.eie`` file: an EIELinear, a list of them, or a front-end model."""
    mf = read_model_file(path)
    if mf.kind == "layer":
        if len(mf.layers) != 1:
            raise EIEFormatError(f"{path}: header field 'kind' = 'layer' needs exactly one entry in field 'layers', found {len(mf.layers)}")
        return mf.layers[0]
    if mf.kind == "layers":
        return mf.layers
    loader = _kind_loader(mf.kind, str(path))
    try:
        return loader(mf)
    except EIEFormatError as exc:  # name the file, as every other refusal does
        raise EIEFormatError(f"{path}: {exc}") from None
