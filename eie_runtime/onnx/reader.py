"""Reading an ONNX model safely, and turning its protos into plain Python values.

A model is refused (``EIEFormatError``, naming the file) when it does not
parse, imports an opset outside :data:`MIN_OPSET`..:data:`MAX_OPSET`, has names
that are not UTF-8, keeps tensor data in external files other than a file
beside a model read from a path and named after it (``model.onnx.data``: read
in), or fails the checker
for other reasons than two that onnxruntime accepts (nodes out of topological
order, which are then sorted; a graph input/output type without a shape).
"""

from __future__ import annotations

import heapq
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import numpy_helper

from ..errors import EIEFormatError
from ..graph import ONNX_DTYPES, TensorSpec
from .walk import _all_graphs, node_reads

#: Default-domain opsets whose semantics this importer implements (onnx 1.23 knows up to 28).
MIN_OPSET, MAX_OPSET = 7, 28


def load_onnx(src, infer_shapes: bool = True):
    """Read and check an ONNX model from a path, bytes, or a ``ModelProto`` (shape-inferred unless told not to)."""
    if isinstance(src, onnx.ModelProto):
        model, where = src, "model"
    else:
        if isinstance(src, (bytes, bytearray)):
            data, where = bytes(src), "<bytes>"
        else:
            where = str(src)
            data = Path(src).read_bytes()
        try:
            model = onnx.load_model_from_string(data)
        except (DecodeError, RuntimeError, ValueError) as exc:
            raise EIEFormatError(f"{where}: not an ONNX model (protobuf parse failed: {exc})") from None
    if not model.graph.node and not model.graph.output:
        raise EIEFormatError(f"{where}: not an ONNX model (no graph; the file is empty, truncated or something else)")
    opset = default_opset(model, where)
    if opset < MIN_OPSET:
        raise EIEFormatError(f"{where}: opset {opset} is too old (supported: {MIN_OPSET}..{MAX_OPSET}); "
                             "upgrade it with onnx.version_converter.convert_version")
    if opset > MAX_OPSET:
        raise EIEFormatError(f"{where}: opset {opset} is too new (supported: {MIN_OPSET}..{MAX_OPSET})")
    for i, n in enumerate(model.graph.node):  # protobuf hands out bytes for non-UTF-8 strings
        if not all(isinstance(x, str) for x in (n.name, n.op_type, n.domain, *n.input, *n.output)):
            raise EIEFormatError(f"{where}: node {i} has a name, op type or input/output name that is not valid UTF-8")
    model_path = None if isinstance(src, (onnx.ModelProto, bytes, bytearray)) else src
    for t in _all_tensors(model.graph):
        if t.data_location == onnx.TensorProto.EXTERNAL or len(t.external_data):
            _load_external(t, model_path, where)
        declared, present = _declared_and_present(t)
        if declared > present:  # refused before onnx's checker and shape inference size anything by its dims
            raise EIEFormatError(f"{where}: tensor {t.name!r} declares {declared} elements (dims {list(t.dims)}) "
                                 f"but holds data for at most {present}")
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as exc:  # ValueError: e.g. names that are not UTF-8
        model = _tolerated(model, exc, where)
    if not infer_shapes:
        return model
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:  # inference is a help for error messages, not a requirement
        pass
    return model


def _load_external(t, model_path, where) -> None:
    """Read a tensor's external data into it, only from a file that belongs to the model: beside it (a plain
    file name, no folder part) and named after it (``model.onnx.data``, ``model.onnx_data``, ``model.data``
    for ``model.onnx``, as torch and onnx write them; not a symbolic link). Any other file is refused: a hostile
    model must not copy a file of the folder it sits in (``.ssh/id_rsa`` beside a model in a home folder) into
    its weights. A model given as bytes has no folder: refused."""
    info = {e.key: e.value for e in t.external_data}
    loc = info.get("location", "")
    if model_path is None:
        raise EIEFormatError(f"{where}: tensor {t.name!r} keeps its data in an external file ({loc!r}); load the "
                             "model from its path, or embed the weights (onnx save_as_external_data=False)")
    model_path = Path(model_path)
    path = model_path.parent / loc
    if not loc or Path(loc).name != loc or loc in (".", "..") or not loc.startswith(model_path.stem + ".") \
            or loc == model_path.name or path.is_symlink() or not path.is_file():
        raise EIEFormatError(f"{where}: tensor {t.name!r}: external data file {loc!r} is not a file beside the "
                             f"model named after it ({model_path.stem}.*); embed the weights "
                             "(onnx save_as_external_data=False) or keep them in such a file")
    try:
        offset, length = int(info.get("offset", 0)), int(info["length"]) if "length" in info else None
    except ValueError:
        raise EIEFormatError(f"{where}: tensor {t.name!r}: external data offset/length are not integers") from None
    size = path.stat().st_size
    if offset < 0 or offset > size or (length is not None and (length < 0 or offset + length > size)):
        raise EIEFormatError(f"{where}: tensor {t.name!r}: external data offset {offset} / length {length} "
                             f"past the end of {loc!r} ({size} bytes)")
    with open(path, "rb") as f:
        f.seek(offset)
        t.raw_data = f.read(size - offset if length is None else length)
    del t.external_data[:]
    t.data_location = onnx.TensorProto.DEFAULT


def _tolerated(model, exc, where):
    """A model the checker refused only for what onnxruntime accepts too: nodes out of topological order (the
    model returned has them sorted) or a graph input/output type without a shape (an unknown rank)."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for g in _all_graphs(fixed.graph):
        _sort_nodes(g)
    probe = onnx.ModelProto()
    probe.CopyFrom(fixed)
    for g in _all_graphs(probe.graph):
        for vi in list(g.input) + list(g.output):
            if vi.type.HasField("tensor_type") and not vi.type.tensor_type.HasField("shape"):
                vi.type.tensor_type.shape.SetInParent()  # for the checker only: the model keeps its unknown rank
    try:
        onnx.checker.check_model(probe)
    except (onnx.checker.ValidationError, ValueError):
        raise EIEFormatError(f"{where}: not a valid ONNX model (truncated or corrupt?): {first}") from None
    return fixed


def _sort_nodes(graph) -> None:
    """Order a graph's nodes so that each comes after the producers of what it reads (stable: among the nodes
    ready, the earliest first; nodes on a cycle stay at the end, for the checker to report)."""
    nodes = list(graph.node)
    producer = {o: i for i, n in enumerate(nodes) for o in n.output if o}
    deps = [{producer[t] for t in node_reads(n) if t in producer} for n in nodes]
    users: list = [[] for _ in nodes]
    for i, d in enumerate(deps):
        for j in d:
            users[j].append(i)
    indeg = [len(d) for d in deps]
    heap = [i for i, k in enumerate(indeg) if k == 0]
    order = []
    while heap:
        i = heapq.heappop(heap)
        order.append(i)
        for u in users[i]:
            indeg[u] -= 1
            if indeg[u] == 0:
                heapq.heappush(heap, u)
    placed = set(order)
    order += [i for i in range(len(nodes)) if i not in placed]
    if order != list(range(len(nodes))):
        copies = [onnx.NodeProto() for _ in order]
        for c, i in zip(copies, order):
            c.CopyFrom(nodes[i])
        del graph.node[:]
        graph.node.extend(copies)


_DATA_FIELDS = ("float_data", "int32_data", "string_data", "int64_data", "double_data", "uint64_data")


def _declared_and_present(t) -> tuple[int, int]:
    """A tensor's element count by its dims (any negative dim counts as too many) and an upper bound on the
    elements its data can hold (4-bit types pack two per byte or per int32)."""
    declared = 1
    for d in t.dims:
        declared = declared * d if d >= 0 else 1 << 62
    present = 2 * (len(t.raw_data) + sum(len(getattr(t, f)) for f in _DATA_FIELDS))
    return declared, present


def _all_tensors(graph):
    """Every tensor a graph holds: initializers, sparse initializers, attributes, subgraphs."""
    yield from graph.initializer
    for sp in graph.sparse_initializer:
        yield sp.values
        yield sp.indices
    for node in graph.node:
        for a in node.attribute:
            if a.HasField("t"):
                yield a.t
            yield from a.tensors
            if a.HasField("g"):
                yield from _all_tensors(a.g)
            for g in a.graphs:
                yield from _all_tensors(g)


def default_opset(model, where: str = "model") -> int:
    for op in model.opset_import:
        if op.domain in ("", "ai.onnx"):
            return int(op.version)
    raise EIEFormatError(f"{where}: imports no default-domain (ai.onnx) opset")


def node_attrs(node) -> dict:
    """A node's attributes as ints, floats, strings, lists of those, or arrays (tensors)."""
    out = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode("utf-8", errors="replace")
        elif isinstance(v, onnx.TensorProto):
            v = numpy_helper.to_array(v)
        elif isinstance(v, list):
            v = [x.decode("utf-8", errors="replace") if isinstance(x, bytes) else x for x in v]
            if any(not isinstance(x, (int, float, str)) for x in v):
                raise EIEFormatError(f"node {node.name!r} ({node.op_type}): attribute {a.name!r} has an unsupported type")
        elif not isinstance(v, (int, float, str)):
            raise EIEFormatError(f"node {node.name!r} ({node.op_type}): attribute {a.name!r} has an unsupported type")
        out[a.name] = v
    return out


def constant_value(node, attrs: dict) -> np.ndarray:
    """The value of a ``Constant`` node."""
    kinds = {"value": None, "value_float": np.float32, "value_floats": np.float32,
             "value_int": np.int64, "value_ints": np.int64}
    for key, dtype in kinds.items():
        if key in attrs:
            return np.asarray(attrs[key]) if dtype is None else np.asarray(attrs[key], dtype=dtype)
    raise EIEFormatError(f"node {node.name!r} (Constant): only tensor/float/int values are supported, got {list(attrs)}")


def input_spec(vi) -> TensorSpec:
    """A graph input's ValueInfo as the executor's TensorSpec (tensors of :data:`ONNX_DTYPES` only)."""
    t = vi.type
    if t.WhichOneof("value") != "tensor_type":
        raise EIEFormatError(f"graph input {vi.name!r}: only tensors are supported, not {t.WhichOneof('value')}")
    et = t.tensor_type.elem_type
    if et not in ONNX_DTYPES:
        raise EIEFormatError(f"graph input {vi.name!r}: element type {et} is not supported "
                             f"(supported: {', '.join(sorted(set(ONNX_DTYPES.values())))})")
    shape = None
    if t.tensor_type.HasField("shape"):
        shape = [int(d.dim_value) if d.HasField("dim_value") else None for d in t.tensor_type.shape.dim]
    return TensorSpec(vi.name, ONNX_DTYPES[et], shape)


def output_spec(vi) -> dict:
    """A graph output's dtype and shape as JSON-able meta (for a faithful export)."""
    t = vi.type.tensor_type if vi.type.WhichOneof("value") == "tensor_type" else None
    dtype = ONNX_DTYPES.get(t.elem_type, "float32") if t is not None else "float32"
    shape = None
    if t is not None and t.HasField("shape"):
        shape = [int(d.dim_value) if d.HasField("dim_value") else None for d in t.shape.dim]
    return {"name": vi.name, "dtype": dtype, "shape": shape}
