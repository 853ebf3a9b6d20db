"""Fuzzing helpers: valid seed ``.eie`` files, hypothesis mutators, and a child-process runner.

A mutant is made in three stages, each optional but at least one applied:

1. structure: edits of the decoded file (JSON header fields, tensor values,
   dtypes and shapes, swapped/dropped/renamed tensors, PE counts that disagree);
2. table: edits of the safetensors tensor table (dtype, shape, data offsets)
   without touching the data;
3. bytes: truncation, bit flips, overwritten/inserted/deleted bytes, a wrong
   header length.

Mutants run in child processes (``fuzz_runner``); the ONNX seeds and mutators are
in ``onnx_mutators``. Both are re-exported here, the one module the tests import.
"""

from __future__ import annotations

import copy
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

from hostile_values import BIG_INTS
from huge_sizes import mutate_huge



# ------------------------------------------------------------------- seed files
@dataclass
class Doc:
    """A decoded ``.eie`` file: the eie JSON header and the named tensors."""

    header: dict
    tensors: dict  # name -> np.ndarray, in file order


def seed_docs() -> dict[str, Doc]:
    """Small valid files covering the format's variety (bias or not, bits 2..4,
    fixed16 parameters, padding entries, int32 and int64 pointers, several layers)."""
    from eie_runtime.converters import compress_matrix
    from eie_runtime.model_file import encode_model_file

    rng = np.random.default_rng(7)

    def layer(m, k, density, bits, n_pe, bias, act, name, calibrate):
        w = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal(m).astype(np.float32) if bias else None
        lay = compress_matrix(w, density=density, bits=bits, n_pe=n_pe, bias=b, activation=act, seed=1, name=name)
        if calibrate:
            lay.calibrate(rng.standard_normal((4, k)).astype(np.float32))
        return lay

    fc = layer(40, 30, 0.2, 4, 4, True, "relu", "fc6", True)
    sparse = layer(70, 12, 0.03, 4, 2, False, None, None, False)  # long zero runs -> padding entries
    stack = [layer(24, 30, 0.3, 2, 3, False, "relu", "a", True), layer(17, 24, 0.5, 3, 8, True, None, "b", True)]
    docs = {
        "layer": decode_doc(encode_model_file([fc], kind="layer")),
        "padded": decode_doc(encode_model_file([sparse], kind="layer")),
        "layers": decode_doc(encode_model_file(stack, kind="layers", meta={"note": "seed"})),
    }
    wide = decode_doc(encode_model_file([fc], kind="layer"))
    wide.tensors["layers.0.ptr"] = wide.tensors["layers.0.ptr"].astype(np.int64)
    docs["ptr64"] = wide
    try:
        protos = onnx_seeds()
    except ImportError:  # the ONNX extra is not installed: no graph seeds
        protos = {}
    try:
        docs["torch"] = torch_seed()
    except ImportError:  # the torch extra is not installed
        pass
    for name, proto in protos.items():  # graph models, as `eie convert` writes them
        from eie_runtime.model_file import encode_model_file as enc
        from eie_runtime.onnx import convert

        docs[f"graph-{name}"] = decode_doc(enc(**convert(proto.SerializeToString(), density=0.5, n_pe=4)._eie_file_contents()))
    return docs


def torch_seed() -> Doc:
    """A ``torch-modules`` file (eie_runtime.torch.save): two EIELinear and a bidirectional EIELSTM."""
    import tempfile

    import torch

    from eie_runtime.torch import compress, save

    torch.manual_seed(0)
    model = torch.nn.ModuleDict({"mlp": torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.ReLU(), torch.nn.Linear(16, 6)),
                                 "lstm": torch.nn.LSTM(4, 3, bidirectional=True)})
    with tempfile.TemporaryDirectory() as d:
        save(compress(model, density=0.5, n_pe=4), Path(d) / "t.eie")
        return decode_doc((Path(d) / "t.eie").read_bytes())


def decode_doc(data: bytes) -> Doc:
    from safetensors.numpy import load

    (n,) = struct.unpack("<Q", data[:8])
    table = json.loads(data[8:8 + n])
    header = json.loads(table["__metadata__"]["eie"])
    tensors = load(data)
    order = sorted(tensors, key=lambda k: table[k]["data_offsets"][0])
    return Doc(header, {k: tensors[k] for k in order})


_ST_NAMES = {np.dtype(k): v for k, v in {
    "bool": "BOOL", "uint8": "U8", "int8": "I8", "uint16": "U16", "int16": "I16", "float16": "F16",
    "uint32": "U32", "int32": "I32", "float32": "F32", "uint64": "U64", "int64": "I64", "float64": "F64"}.items()}


def table_of(doc: Doc) -> tuple[dict, bytes]:
    """The safetensors table (with metadata) and data section for ``doc``."""
    table, chunks, off = {}, [], 0
    for name, arr in doc.tensors.items():
        raw = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
        table[name] = {"dtype": _ST_NAMES[arr.dtype], "shape": list(arr.shape), "data_offsets": [off, off + len(raw)]}
        chunks.append(raw)
        off += len(raw)
    table["__metadata__"] = {"eie": json.dumps(doc.header)}
    return table, b"".join(chunks)


def assemble(table: dict, data: bytes) -> bytes:
    head = json.dumps(table).encode()
    head += b" " * (-len(head) % 8)
    return struct.pack("<Q", len(head)) + head + data


# ------------------------------------------------------------------ mutations


def hostile_json():
    """JSON values a header field should never accept (and a few it might).

    Values are deep-copied: later edits mutate them in place, and hypothesis
    must never see an object it produced change under it."""
    scalars = st.one_of(st.sampled_from(BIG_INTS), st.integers(-100, 5000), st.none(), st.booleans(),
                        st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
                        st.sampled_from(["relu", "layer", "layers", "graph", "eie-runtime", "", "tanh"]))
    return st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                         st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                        max_leaves=6).map(copy.deepcopy)


LAYER_FIELDS = ["name", "shape", "n_pe", "bits", "activation", "has_bias", "fixed"]
TOP_FIELDS = ["format", "version", "kind", "layers", "meta"]


def _pick(draw, seq, label):
    return draw(st.sampled_from(sorted(seq)), label=label) if seq else None


def mutate_structure(draw, doc: Doc) -> str:
    """Apply one structural edit in place; return its description."""
    h, t = doc.header, doc.tensors
    layers = h["layers"] if isinstance(h.get("layers"), list) else []
    op = draw(st.sampled_from(["top", "layer_field", "shape", "n_pe", "fixed", "ptr", "entries", "codebook",
                               "bias", "dtype", "reshape", "drop", "swap", "rename", "layers_list", "extra",
                               "plausible", "plausible", "deep", "deep", "huge"]), label="op")
    if op == "huge":
        return mutate_huge(draw, doc)
    if op == "plausible":
        return mutate_plausibly(draw, doc)
    if op == "deep":
        return mutate_deep(draw, h)
    if op == "top":
        key = draw(st.sampled_from(TOP_FIELDS))
        if draw(st.booleans()):
            h.pop(key, None)
            return f"drop header field {key}"
        h[key] = draw(hostile_json())
        return f"header {key} = {h[key]!r}"[:120]
    if op in ("layer_field", "shape", "n_pe", "fixed") and layers:
        i = draw(st.integers(0, len(layers) - 1))
        lh = layers[i] if isinstance(layers[i], dict) else {}
        if op == "layer_field":
            key = draw(st.sampled_from(LAYER_FIELDS))
            if draw(st.booleans()):
                lh.pop(key, None)
                return f"layer {i}: drop {key}"
            lh[key] = draw(hostile_json())
            return f"layer {i}: {key} = {lh[key]!r}"[:120]
        if op == "shape":
            shape = lh.get("shape")
            m, k = shape if isinstance(shape, list) and len(shape) == 2 and all(type(v) is int for v in shape) else (1, 1)

            def dim(v):
                # small deltas are likelier to pass the cheap checks and reach the deep ones
                return st.one_of(st.sampled_from(BIG_INTS), st.integers(-3, 3).map(lambda d: v + d))

            lh["shape"] = [draw(dim(m)) if draw(st.booleans()) else m, draw(dim(k)) if draw(st.booleans()) else k]
            return f"layer {i}: shape = {lh['shape']}"
        if op == "n_pe":
            old = lh.get("n_pe", 1)
            new = draw(st.one_of(st.integers(1, 9), st.sampled_from(BIG_INTS)))
            lh["n_pe"] = new
            key = f"layers.{i}.ptr"
            if key in t and draw(st.booleans()) and isinstance(new, int) and 1 <= new <= 64:
                # keep ptr consistent in shape with the new PE count, but not in content
                p = t[key].ravel()
                k1 = t[key].shape[1]
                t[key] = np.resize(p, (new, k1)).astype(t[key].dtype)
            return f"layer {i}: n_pe {old} -> {new}"
        if op == "fixed":
            lh["fixed"] = {f: draw(st.one_of(st.integers(-20, 34), st.sampled_from(BIG_INTS)))
                           for f in ("in_frac", "w_frac", "out_frac")}
            return f"layer {i}: fixed = {lh['fixed']}"
    names = sorted(t)
    if op == "ptr":
        key = _pick(draw, [n for n in names if n.endswith(".ptr")], "key")
        if key is None or t[key].size == 0:
            return "noop"
        p = t[key].copy()
        flat = p.reshape(-1)
        how = draw(st.sampled_from(["set", "swap", "shift", "reverse"]))
        pos = draw(st.integers(0, flat.size - 1))
        n_entries = t.get(key.replace(".ptr", ".entries"), np.zeros(0)).size
        if how == "set":
            info = np.iinfo(p.dtype)
            val = draw(st.one_of(st.sampled_from([-1, n_entries, n_entries + 1, n_entries - 1, 0]),
                                 st.sampled_from([v for v in BIG_INTS if info.min <= v <= info.max]),
                                 st.integers(-5, n_entries + 5)))
            flat[pos] = val
        elif how == "swap" and flat.size > 1:
            q = draw(st.integers(0, flat.size - 1))
            flat[pos], flat[q] = flat[q], flat[pos]
        elif how == "shift":
            flat[pos:] += draw(st.integers(-3, 3))
        else:
            p = p[:, ::-1].copy()
        t[key] = p
        return f"{key}: {how} at {pos}"
    if op == "entries":
        key = _pick(draw, [n for n in names if n.endswith(".entries")], "key")
        if key is None or t[key].size == 0:
            return "noop"
        e = t[key].copy()
        for _ in range(draw(st.integers(1, 4))):
            pos = draw(st.integers(0, e.size - 1))
            # a random byte, a nibble past the codebook, a long zero run, or a non-canonical padding
            e[pos] = draw(st.one_of(st.integers(0, 255), st.sampled_from([0x0F, 0xF0, 0xFF, 0x00, 0x10, 0xE0, 0x0C])))
        t[key] = e
        return f"{key}: bytes edited"
    if op == "codebook":
        key = _pick(draw, [n for n in names if n.endswith(".codebook")], "key")
        if key is None:
            return "noop"
        c = t[key].copy()
        c[draw(st.integers(0, c.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf, 1.0, 3e38, -0.0, 1e-45]))
        t[key] = c
        return f"{key}: value edited"
    if op == "bias":
        key = _pick(draw, [n for n in names if n.endswith(".bias")], "key")
        if key is None:
            return "noop"
        b = t[key].copy()
        b[draw(st.integers(0, b.size - 1))] = draw(st.sampled_from([np.nan, np.inf, 3e38, -3e38]))
        t[key] = b
        return f"{key}: value edited"
    if op == "dtype":
        key = _pick(draw, names, "key")
        if key is None:
            return "noop"
        dt = draw(st.sampled_from(["uint8", "int8", "int16", "int32", "int64", "uint64", "float16", "float32", "float64", "bool"]))
        with np.errstate(all="ignore"):
            t[key] = t[key].astype(dt)
        return f"{key}: astype {dt}"
    if op == "reshape":
        key = _pick(draw, names, "key")
        if key is None:
            return "noop"
        a = t[key].reshape(-1)
        how = draw(st.sampled_from(["truncate", "extend", "2d", "scalar", "empty"]))
        if how == "truncate":
            a = a[:draw(st.integers(0, max(0, a.size - 1)))]
        elif how == "extend":
            a = np.concatenate([a, a[:draw(st.integers(1, 16))] if a.size else np.zeros(3, a.dtype)])
        elif how == "2d" and a.size:
            a = a.reshape(1, -1)
        elif how == "scalar" and a.size:
            a = a[:1].reshape(())
        else:
            a = a[:0]
        t[key] = a
        return f"{key}: {how}"
    if op == "drop":
        key = _pick(draw, names, "key")
        if key is not None:
            del t[key]
        return f"drop tensor {key}"
    if op == "swap" and len(names) > 1:
        a, b = draw(st.lists(st.sampled_from(names), min_size=2, max_size=2, unique=True))
        t[a], t[b] = t[b], t[a]
        return f"swap tensors {a} <-> {b}"
    if op == "rename":
        key = _pick(draw, names, "key")
        if key is None:
            return "noop"
        new = draw(st.sampled_from([key.replace("layers.0", "layers.1"), key.replace("layers.1", "layers.0"),
                                    key + "x", "layers.-1.ptr", "layers.00.ptr", "extra." + key]))
        t[new] = t.pop(key)
        return f"rename {key} -> {new}"
    if op == "layers_list" and layers:
        how = draw(st.sampled_from(["drop", "dup", "swap", "empty"]))
        if how == "drop":
            layers.pop(draw(st.integers(0, len(layers) - 1)))
        elif how == "dup":
            layers.append(json.loads(json.dumps(layers[0])))
        elif how == "swap" and len(layers) > 1:
            layers.reverse()
        else:
            layers.clear()
        return f"layers list: {how}"
    if op == "extra":
        t["extra." + draw(st.text(min_size=1, max_size=5))] = np.arange(draw(st.integers(0, 10)), dtype=np.float32)
        return "extra tensor added"
    return "noop"


def mutate_deep(draw, header: dict) -> str:
    """Walk the JSON header to a random depth (graph nodes, attributes, input specs,
    constants...) and replace, delete, or retype what is there."""
    node, path = header, []
    for _ in range(draw(st.integers(1, 7))):
        keys = list(node) if isinstance(node, dict) else list(range(len(node))) if isinstance(node, list) else []
        if not keys:
            break
        key = draw(st.sampled_from(keys))
        child = node[key]
        if not isinstance(child, (dict, list)) or not child or draw(st.integers(0, 3)) == 0:
            break
        node, path = child, path + [key]
    keys = list(node) if isinstance(node, dict) else list(range(len(node))) if isinstance(node, list) else []
    if not keys:
        return "noop"
    key = draw(st.sampled_from(keys))
    how = draw(st.sampled_from(["set", "set", "delete", "dup"]))
    if how == "delete":
        del node[key]
    elif how == "dup" and isinstance(node, list):
        node.append(json.loads(json.dumps(node[key])))
    else:
        old = node[key]
        # same-type small changes reach deeper than foreign types
        near = st.integers(-2, 2).map(lambda d: old + d) if type(old) is int else \
            st.sampled_from([old + "x", "", old.upper()]) if isinstance(old, str) else hostile_json()
        node[key] = draw(st.one_of(near, hostile_json()))
    return f"deep {how} {'/'.join(map(str, path + [key]))}"[:120]


def mutate_plausibly(draw, doc: Doc) -> str:
    """An edit a valid file can survive (new weights, codes, bias, activation, fixed16
    bits, names, meta): such mutants must load and compute the right thing."""
    h, t = doc.header, doc.tensors
    layers = h.get("layers")
    if not (isinstance(layers, list) and layers and all(isinstance(x, dict) for x in layers)):
        return "noop"  # an earlier edit broke the header
    i = draw(st.integers(0, len(layers) - 1))
    lh = layers[i]
    what = draw(st.sampled_from(["codes", "codebook", "bias", "activation", "fixed", "name", "meta"]))
    e, c, b = (t.get(f"layers.{i}.{n}") for n in ("entries", "codebook", "bias"))
    if what == "codes" and e is not None and e.dtype == np.uint8 and lh.get("bits") in (1, 2, 3, 4):
        live = np.flatnonzero(e & 15)
        if live.size:
            pos = live[draw(st.integers(0, live.size - 1))]
            e.flat[pos] = (e.flat[pos] & 0xF0) | draw(st.integers(1, (1 << lh["bits"]) - 1))
    elif what == "codebook" and c is not None and c.size > 1:
        c.flat[draw(st.integers(1, c.size - 1))] = draw(st.floats(-1e6, 1e6, width=32))
    elif what == "bias" and b is not None and b.size:
        b.flat[draw(st.integers(0, b.size - 1))] = draw(st.floats(-1e3, 1e3, width=32))
    elif what == "activation":
        lh["activation"] = draw(st.sampled_from([None, "relu"]))
    elif what == "fixed":
        w = draw(st.integers(-16, 30))
        a = draw(st.integers(0, 30))  # keeps a + w >= -16, so some out_frac is valid
        lh["fixed"] = {"in_frac": a, "w_frac": w, "out_frac": draw(st.integers(max(-16, a + w - 46), min(30, a + w)))}
    elif what == "name":
        lh["name"] = draw(st.one_of(st.none(), st.text(max_size=12)))
    else:
        h["meta"] = draw(st.dictionaries(st.text(max_size=5), hostile_json(), max_size=3))
    return f"layer {i}: plausible {what}"


def mutate_table(draw, table: dict, data_len: int) -> str:
    names = sorted(k for k in table if k != "__metadata__")
    if not names:
        return "noop"
    key = draw(st.sampled_from(names))
    field_ = draw(st.sampled_from(["dtype", "shape", "data_offsets", "drop", "value"]))
    info = table[key]
    if field_ == "dtype":
        names_ = st.sampled_from(["U8", "I8", "I16", "I32", "I64", "U64", "F16", "BF16", "F32", "F64", "BOOL", "X9"])
        info["dtype"] = draw(st.one_of(names_, hostile_json()))  # a name, or any JSON type (list, object, ...)
    elif field_ == "shape":
        info["shape"] = draw(st.one_of(st.lists(st.sampled_from(BIG_INTS + [0, 1, 2, 3]), max_size=4), hostile_json()))
    elif field_ == "data_offsets":
        b, e = info["data_offsets"]
        cands = st.sampled_from(BIG_INTS + [b, e, b + 1, e - 1, e + 1, data_len, data_len + 1, 0])
        info["data_offsets"] = draw(st.one_of(st.tuples(cands, cands).map(list), hostile_json()))
    elif field_ == "drop":
        del table[key]
    else:
        table[key] = draw(hostile_json())
    return f"table {key}.{field_}"


def mutate_bytes(draw, data: bytes) -> tuple[bytes, str]:
    b = bytearray(data)
    n = len(b)
    (head,) = struct.unpack("<Q", bytes(b[:8])) if n >= 8 else (0,)
    # the header (where one byte changes the most), the tensor data, or anywhere
    end = max(0, min(n, 8 + head))
    # always three distinct alternatives: hypothesis merges equal (cached) strategies
    # in one_of, and a branch count that depended on the cache would make generation flaky
    region = st.sampled_from(["header", "data", "any"])
    bounds = {"header": (0, max(0, end - 1)), "data": (min(end, max(0, n - 1)), max(0, n - 1)), "any": (0, max(0, n - 1))}
    pos = region.flatmap(lambda r: st.integers(*bounds[r]))
    op = draw(st.sampled_from(["truncate", "flip", "overwrite", "insert", "delete", "length"]), label="byteop")
    if op == "truncate":
        return bytes(b[:draw(st.integers(0, max(0, n - 1)))]), "truncate"
    if op == "flip":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(pos)
            if i < n:
                b[i] ^= 1 << draw(st.integers(0, 7))
        return bytes(b), "bit flips"
    if op == "overwrite":
        i = draw(pos)
        chunk = draw(st.binary(min_size=1, max_size=16))
        b[i:i + len(chunk)] = chunk
        return bytes(b), "overwrite"
    if op == "insert":
        i = draw(pos)
        return bytes(b[:i]) + draw(st.binary(min_size=1, max_size=16)) + bytes(b[i:]), "insert"
    if op == "delete":
        i = draw(pos)
        return bytes(b[:i]) + bytes(b[i + draw(st.integers(1, 16)):]), "delete"
    new = draw(st.sampled_from([0, 1, 2, head - 1, head + 1, head + 8, n, n - 8, 2**32, 2**63, 2**64 - 1]))
    return struct.pack("<Q", max(0, new) % 2**64) + bytes(b[8:]), "header length"


@st.composite
def mutants(draw, seeds: dict[str, Doc]):
    """One mutant file: (bytes, description)."""
    name = draw(st.sampled_from(sorted(seeds)), label="seed")
    base = seeds[name]
    doc = Doc(json.loads(json.dumps(base.header)), {k: v.copy() for k, v in base.tensors.items()})
    stages = draw(st.sampled_from([(1, 0, 0), (1, 0, 0), (2, 0, 0), (0, 1, 0), (0, 0, 1), (0, 0, 2), (1, 0, 1), (1, 1, 0)]))
    what = [name]
    edit_failed = (IndexError, ValueError, TypeError, KeyError, OverflowError, AttributeError)
    for _ in range(stages[0]):
        try:
            what.append(mutate_structure(draw, doc))
        except edit_failed:  # an earlier edit left nothing this one could apply to
            what.append("noop")
    table, data = table_of(doc)
    for _ in range(stages[1]):
        try:
            what.append(mutate_table(draw, table, len(data)))
        except edit_failed:
            what.append("noop")
    try:
        raw = assemble(table, data)
    except (TypeError, ValueError):  # e.g. NaN keys; keep the doc's valid table
        raw = assemble(*table_of(doc))
    for _ in range(stages[2]):
        raw, how = mutate_bytes(draw, raw)
        what.append(how)
    return raw, "; ".join(what)


from fuzz_runner import CHILD, HANG_S, START_S, FuzzReport, Outcome, keep_findings, run_mutants  # noqa: E402,F401
from onnx_mutators import onnx_mutants, onnx_seeds  # noqa: E402,F401
from input_mutators import input_model, input_mutants  # noqa: E402,F401
