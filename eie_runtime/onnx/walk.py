"""Walking ONNX graphs: bodies of control-flow nodes, names read from enclosing scopes, constant chains, the
ranks of values per graph scope, and the whole-model edits around a conversion (sparse initializers made dense,
IR<4 initializers listed as inputs, unique node names, dropping the weights only converted nodes read)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import AttributeProto, helper, numpy_helper

from ..errors import EIEFormatError


def subgraphs(node):
    for a in node.attribute:
        if a.type == AttributeProto.GRAPH:
            yield a.g
        elif a.type == AttributeProto.GRAPHS:
            yield from a.graphs


def free_names(graph) -> set:
    """Names a graph reads from enclosing scopes."""
    defined = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    used = set()
    for node in graph.node:
        used.update(node_reads(node) - defined)
        defined.update(node.output)
    used.update(o.name for o in graph.output if o.name not in defined)
    return used - {""}


def node_reads(node) -> set:
    """Every name a node reads: its inputs and what its bodies take from outside."""
    out = set(node.input)
    for g in subgraphs(node):
        out |= free_names(g)
    return out - {""}


#: ops whose outputs are constants when their inputs are (the chains exporters put in front of weights)
FOLDABLE = ("Unsqueeze", "Squeeze", "Reshape", "Transpose", "Identity", "Cast", "Concat", "Slice", "Gather",
            "Split", "Mul", "Add", "Sub", "Div", "Neg", "Flatten", "Expand", "Shape", "ConstantOfShape")


class _Folder:
    """Evaluates the constant chains in front of weights (``Constant -> Unsqueeze -> LSTM W``)."""

    def __init__(self, graph, consts, ctx):
        self.graph, self.consts, self.ctx = graph, consts, ctx
        self.producer = {o: n for n in graph.node for o in n.output if o}
        self.nodes: list = []  # the nodes folded (dropped later if nothing else reads them)

    def _chain(self, name, seen, out) -> bool:
        if name in self.consts or name in seen:
            return True
        n = self.producer.get(name)
        if n is None or n.domain not in ("", "ai.onnx") or n.op_type not in FOLDABLE or any(subgraphs(n)):
            return False
        seen.add(name)
        if not all(self._chain(t, seen, out) for t in n.input if t):
            return False
        if not any(n is m for m in out):
            out.append(n)
        return True

    def fold(self, names) -> None:
        for name in names:
            chain: list = []
            if not name or name in self.consts or not self._chain(name, set(), chain):
                continue
            from onnx.reference import ReferenceEvaluator

            ins = sorted({t for n in chain for t in n.input if t and t in self.consts})
            outs = [o for n in chain for o in n.output if o]
            g = helper.make_graph(chain, "fold", [], [onnx.ValueInfoProto(name=o) for o in outs],
                                  initializer=[numpy_helper.from_array(np.asarray(self.consts[t]), t) for t in ins])
            opset = [o for o in self.ctx.opsets if o.domain in ("", "ai.onnx")]
            try:
                vals = ReferenceEvaluator(helper.make_model(g, opset_imports=opset)).run(None, {})
            except Exception:  # not foldable after all: the node stays
                continue
            for o, v in zip(outs, vals):
                self.consts[o] = np.asarray(v)
            self.ctx.consumed.update(outs)
            self.ctx.consumed.update(ins)  # the constants the chain starts from (dropped if nothing else reads them)


def value_ranks(model) -> list:
    """Per graph (in :func:`_all_graphs` order), the ranks of its own values, from the declared types and onnx's
    shape inference. Names whose rank nothing tells are absent; a model shape inference cannot handle gives
    what is declared. A body's values are its own: sibling branches may use one name for values of two ranks."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # custom domains, models past 2 GB: the declared shapes only
        inferred = model
    out = []
    for g in _all_graphs(inferred.graph):
        ranks = {t.name: len(t.dims) for t in g.initializer}
        for v in list(g.input) + list(g.output) + list(g.value_info):
            if v.type.HasField("tensor_type") and v.type.tensor_type.HasField("shape"):
                ranks[v.name] = len(v.type.tensor_type.shape.dim)
        out.append(ranks)
    if len(out) != sum(1 for _ in _all_graphs(model.graph)):  # inference changed the structure: trust none of it
        return []
    return out


def densify_sparse_initializers(model) -> None:
    """Replace each graph's ``sparse_initializer`` entries by dense initializers of the same name (as onnxruntime
    does when it loads them), so that weights stored sparse are constants the converter sees like any other."""
    for g in _all_graphs(model.graph):
        for sp in list(g.sparse_initializer):
            values, indices = numpy_helper.to_array(sp.values), numpy_helper.to_array(sp.indices).astype(np.int64)
            dense = np.zeros(int(np.prod(sp.dims, dtype=np.int64)), values.dtype)
            flat = indices if indices.ndim == 1 else np.ravel_multi_index(tuple(indices.T), tuple(sp.dims))
            dense[flat] = values
            g.initializer.append(numpy_helper.from_array(dense.reshape(tuple(sp.dims)), sp.values.name))
        del g.sparse_initializer[:]


def standard_form(model, where: str):
    """``model`` with what onnxruntime does when it loads one done first: sparse initializers made dense,
    model-local functions inlined (so that layers inside them are nodes like any other, and the partitioned
    session's segments need no functions). Returns ``model`` itself or, with functions, a new ModelProto."""
    densify_sparse_initializers(model)
    if not model.functions:
        return model
    import onnx.inliner

    try:
        return onnx.inliner.inline_local_functions(model)
    except Exception as exc:  # onnx's own exception classes
        raise EIEFormatError(f"{where}: its model-local functions cannot be inlined: {exc}") from None


def initializers_as_inputs(model) -> None:
    """IR versions before 4 list every initializer as a graph input too: add the missing ones."""
    if model.ir_version >= 4:
        return
    for g in _all_graphs(model.graph):
        have = {i.name for i in g.input}
        for t in g.initializer:
            if t.name not in have:
                g.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))


def _all_graphs(graph):
    yield graph
    for n in graph.node:
        for g in subgraphs(n):
            yield from _all_graphs(g)


def _drop_unused(model, consumed: set) -> None:
    """Remove the weights (initializers, Constant nodes, folded chains) only the converted nodes read."""
    changed = True
    while changed:
        changed = False
        read = set()
        for g in _all_graphs(model.graph):
            for n in g.node:
                read.update(n.input)
            read.update(o.name for o in g.output)
        for g in _all_graphs(model.graph):
            dead = [n for n in g.node if n.output and all(o in consumed and o not in read for o in n.output)]
            for n in dead:
                g.node.remove(n)
                changed = True
    for g in _all_graphs(model.graph):
        remove_initializers(g, [t for t in g.initializer if t.name in consumed and t.name not in read])


def remove_initializers(graph, dead: list) -> None:
    """Remove the initializers ``dead`` from ``graph``, and their graph inputs (IR versions before 4 list
    initializers as inputs too)."""
    for t in dead:
        graph.initializer.remove(t)
    names = {t.name for t in dead}
    for vi in [vi for vi in graph.input if vi.name in names]:
        graph.input.remove(vi)


def unique_node_names(model) -> list[tuple[str, str]]:
    """Rename nodes whose name an earlier node already has (onnxruntime refuses such graphs): ``fc`` -> ``fc_1``.

    Deterministic (graph order, bodies after their graph). Returns the ``(old, new)`` renames.
    """
    seen: set = set()
    renames = []
    for g in _all_graphs(model.graph):
        for n in g.node:
            if not n.name:
                continue
            if n.name in seen:
                k, new = 1, f"{n.name}_1"
                while new in seen:
                    k += 1
                    new = f"{n.name}_{k}"
                renames.append((n.name, new))
                n.name = new
            seen.add(n.name)
    return renames
