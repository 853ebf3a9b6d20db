"""The partitioned plan of one graph: onnxruntime segments between the EIE nodes and control steps.

A node's *level* is the number of host nodes (EIE nodes; If/Loop/Scan nodes whose bodies hold EIE nodes) on
the longest path that leads to it; the plain nodes of one level make one onnxruntime session (a
:class:`_Segment`), run before that level's host nodes. Values cross as numpy arrays that onnxruntime and the
kernels share without copying. ``Constant`` nodes become initializers of every segment that reads them.
A plan can also be built from an :class:`~eie_runtime.onnx.inline.GraphView` (taken If branches inlined):
its aliases and guards become :class:`~eie_runtime.onnx.inline.AliasStep` and ``GuardStep`` steps.
The steps describe the plan; it runs as one function generated from them (:mod:`~eie_runtime.onnx.compiled`).
"""

from __future__ import annotations

import bisect

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import EIEFormatError
from . import nodes as N
from .compiled import compile_plan
from .control import ControlStep as _ControlStep
from .converter import node_reads, subgraphs
from .inline import Alias, AliasStep, GuardStep
#: onnxruntime's type strings -> ONNX element types
_ORT_TYPES = {f"tensor({name.lower()})": v for name, v in TensorProto.DataType.items() if v}
_ORT_TYPES["tensor(float)"] = TensorProto.FLOAT
_ORT_TYPES["tensor(double)"] = TensorProto.DOUBLE
_CONTROL = ("If", "Loop", "Scan")


def _holds_eie(node) -> bool:
    for g in subgraphs(node):
        for n in g.node:
            if N.is_eie(n) or _holds_eie(n):
                return True
    return False


def _type_proto(t) -> onnx.TypeProto:
    """A TypeProto from an ONNX element type, an onnxruntime type string or a TypeProto."""
    if isinstance(t, onnx.TypeProto):
        return t
    if isinstance(t, str):
        if t.startswith("seq(") and t[4:-1] in _ORT_TYPES:
            return helper.make_sequence_type_proto(helper.make_tensor_type_proto(_ORT_TYPES[t[4:-1]], None))
        if t not in _ORT_TYPES:
            raise EIEFormatError(f"values of type {t} cannot cross between onnxruntime and EIE nodes")
        t = _ORT_TYPES[t]
    return helper.make_tensor_type_proto(int(t), None)


def _value_type(value) -> onnx.TypeProto:
    if isinstance(value, list):
        inner = value[0].dtype if value else np.float32
        return helper.make_sequence_type_proto(helper.make_tensor_type_proto(helper.np_dtype_to_tensor_dtype(np.dtype(inner)), None))
    return helper.make_tensor_type_proto(helper.np_dtype_to_tensor_dtype(np.asarray(value).dtype), None)


def _constant_tensor(node):
    """The tensor of a plain ``Constant`` node holding a tensor or numbers, else None."""
    if node.op_type != "Constant" or node.domain not in ("", "ai.onnx") or len(node.output) != 1 or node.input:
        return None
    if len(node.attribute) != 1 or not node.output[0]:
        return None
    a = node.attribute[0]
    if a.name == "value" and a.type == onnx.AttributeProto.TENSOR and not a.t.data_location:
        t = onnx.TensorProto()
        t.CopyFrom(a.t)
    elif a.name in ("value_float", "value_floats", "value_int", "value_ints"):
        arr = np.asarray(helper.get_attribute_value(a), np.float32 if "float" in a.name else np.int64)
        t = numpy_helper.from_array(arr)
    else:
        return None
    t.name = node.output[0]
    return t


class _Segment:
    """Plain nodes of one level, run by one onnxruntime session."""

    def __init__(self, nodes, inputs, outputs, inits, types, opsets, ir_version, sess_options, providers, where):
        import onnxruntime as ort

        self.inputs, self.outputs = inputs, outputs
        names: set = set()
        copies = []
        for n in nodes:  # onnxruntime refuses two nodes of one name; a hand-edited file may have them
            if n.name and n.name in names:
                c = onnx.NodeProto()
                c.CopyFrom(n)
                c.name = f"{n.name}#{len(copies)}"
                n = c
            names.add(n.name)
            copies.append(n)
        nodes = copies
        graph = helper.make_graph(
            nodes, "eie_segment", [helper.make_value_info(n, _type_proto(types[n])) for n in inputs],
            [onnx.ValueInfoProto(name=n) for n in outputs], initializer=inits)
        model = helper.make_model(graph, opset_imports=opsets)
        model.ir_version = ir_version
        try:
            self.sess = ort.InferenceSession(model.SerializeToString(), sess_options, providers=providers)
        except Exception as exc:  # onnxruntime's own exception classes
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            names = ", ".join(repr(n.name or n.op_type) for n in nodes[:5]) + (" ..." if len(nodes) > 5 else "")
            raise EIEFormatError(f"{where}: onnxruntime cannot load nodes {names}: {msg}") from None
        for o in self.sess.get_outputs():
            types[o.name] = o.type
        self.names = [n.name for n in nodes]
        self.checks = ()  # (condition, outcome) of inlined Ifs this segment computes: guards right after it
        # the binding's run without the Python wrapper's checks (every input is fed by construction; the C++
        # run still checks types and shapes): 1-2 us less per segment call
        inner = getattr(self.sess, "_sess", None)
        self._run = inner.run if callable(getattr(inner, "run", None)) else self.sess.run

class _EIEStep:
    def __init__(self, node, kernel, types):
        self.kernel, self.node = kernel, node
        self.inputs = list(node.input[:N.DATA_INPUTS.get(node.op_type, 1)])
        self.outputs = list(node.output)
        for o in self.outputs:
            if o:
                types[o] = TensorProto.FLOAT


class _Plan:
    """One graph (the main graph, a body, or a :class:`~.inline.GraphView` with taken branches inlined) as steps."""

    def __init__(self, graph, outer_types, outer_inits, opsets, ir_version, sess_options, providers, kcache=None,
                 where=""):
        self.graph, self.where = graph, where
        kcache = {} if kcache is None else kcache  # id(EIE NodeProto) -> kernel: one decode per node per session
        types = dict(outer_types)
        local_inits = {t.name for t in graph.initializer}
        self.feed_names = []
        for vi in graph.input:
            if vi.name in local_inits:  # IR < 4 lists initializers as inputs too
                continue
            if vi.type.WhichOneof("value") is None:
                raise EIEFormatError(f"{where}: input {vi.name!r} has no type")
            types[vi.name] = vi.type
            self.feed_names.append(vi.name)
        inits = dict(outer_inits)
        inits.update({t.name: t for t in graph.initializer})
        arrays = {}

        def array(name):
            if name not in arrays:
                arrays[name] = numpy_helper.to_array(inits[name])
            return arrays[name]

        class _Consts(dict):
            def __contains__(self, k):
                return k in inits

            def __getitem__(self, k):
                return array(k)

        consts = _Consts()
        self.plain_outputs = [o.name for o in graph.output]
        guards = list(getattr(graph, "guards", ()))
        # levels: the number of host nodes on the longest path to each node
        level_of: dict[str, int] = {}
        hosts, plain = {}, {}
        plain_made, host_made = set(), set()
        host_alias: dict[str, list] = {}  # value made by a host step -> If outputs that alias it
        start_alias = []  # (graph input, If output)
        for idx, node in enumerate(graph.node):
            t = _constant_tensor(node)
            if t is not None:  # a Constant node: an initializer of every segment that reads it (not a value
                inits[t.name] = t  # that one segment computes and hands to the next: measured 1 us a value)
                local_inits.add(t.name)
                continue
            if isinstance(node, Alias):  # an inlined If's output: its branch's output under the If's name
                src, dst = node.src, node.dst
                lvl = level_of.get(src, 0)
                level_of[dst] = lvl
                if src in plain_made:  # computed inside onnxruntime: an Identity in the same segment
                    plain.setdefault(lvl, []).append(
                        (idx, helper.make_node("Identity", [src], [dst], name=f"{dst}/eie_inlined_if")))
                    plain_made.add(dst)
                elif src in host_made:
                    host_alias.setdefault(src, []).append(dst)
                    host_made.add(dst)
                elif src in inits and src not in types:  # a constant: the same tensor under the If's name
                    t = onnx.TensorProto()
                    t.CopyFrom(inits[src])
                    t.name = dst
                    inits[dst] = t
                else:
                    start_alias.append((src, dst))
                continue
            host = N.is_eie(node) or (node.op_type in _CONTROL and node.domain in ("", "ai.onnx") and _holds_eie(node))
            lvl = max((level_of.get(t, 0) for t in node_reads(node)), default=0)
            (hosts if host else plain).setdefault(lvl, []).append((idx, node))
            for o in node.output:
                level_of[o] = lvl + (1 if host else 0)
                (host_made if host else plain_made).add(o)
        plain = self._sink(plain, hosts, level_of, set(self.plain_outputs), {g[0] for g in guards})
        # who reads what, by step position, to know each segment's outputs
        order = []
        for lvl in range(max(list(hosts) + list(plain) + [0]) + 1):
            if lvl in plain:
                order.append(("plain", lvl, [n for _, n in plain[lvl]]))
            for idx, node in hosts.get(lvl, []):
                order.append(("host", lvl, [node]))
        later_reads = []
        acc = set(self.plain_outputs) | {g[0] for g in guards} | {s for s in host_alias} | {s for s, _ in start_alias}
        for kind, lvl, nodes in reversed(order):
            later_reads.append(set(acc))
            for n in nodes:
                acc |= node_reads(n)
        later_reads.reverse()
        self.steps = []
        for src, dst in start_alias:
            if src in types:
                types[dst] = types[src]
        if start_alias:
            self.steps.append(AliasStep(start_alias))
        local_init_names = local_inits
        self.const_env = {}
        for (kind, lvl, nodes), after in zip(order, later_reads):
            if kind == "host":
                node = nodes[0]
                w = f"{where}: node {node.name!r} ({node.op_type})"
                if N.is_eie(node):
                    if id(node) not in kcache:
                        kcache[id(node)] = N.decode_node(node, consts, w)
                    self.steps.append(_EIEStep(node, kcache[id(node)], types))
                    reads = [t for t in node.input[:N.DATA_INPUTS.get(node.op_type, 1)] if t]
                else:
                    self.steps.append(_ControlStep(node, (inits, opsets, ir_version, sess_options, providers, kcache),
                                                   types, w))
                    reads = node_reads(node)
                for t in reads:
                    if t in inits and t not in types:
                        self.const_env[t] = array(t)
                pairs, todo = [], [o for o in node.output if o]
                while todo:  # the If outputs that alias this step's outputs (nested Ifs: chains)
                    o = todo.pop(0)
                    for d in host_alias.get(o, ()):
                        pairs.append((o, d))
                        types[d] = types.get(o, TensorProto.FLOAT)
                        todo.append(d)
                if pairs:
                    self.steps.append(AliasStep(pairs))
                continue
            produced = {o for n in nodes for o in n.output if o}
            needed = []
            seg_inits = []
            for n in nodes:
                for t in sorted(node_reads(n)):
                    if t in produced or t in needed or any(i.name == t for i in seg_inits):
                        continue
                    if t in inits and t not in types:
                        seg_inits.append(inits[t])
                    elif t in types:
                        needed.append(t)
                    elif t in local_init_names:
                        seg_inits.append(inits[t])
                    else:
                        raise EIEFormatError(f"{where}: value {t!r} is read before it is defined")
            outputs = [o for n in nodes for o in n.output if o and o in after]
            if not outputs:
                continue
            self.steps.append(_Segment(nodes, needed, outputs, seg_inits, types, opsets, ir_version, sess_options,
                                       providers, where))
        for o in self.plain_outputs:
            if o in inits and o not in types:
                self.const_env[o] = array(o)
        if guards:
            self._place_guards(guards, inits, types)
        self.types = types
        # run(env, feeds, mode) -> [outputs]; env: the enclosing scopes' values (control steps' bodies read them)
        self.run = self._untimed = compile_plan(self)

    @staticmethod
    def _sink(plain, hosts, level_of, final, early) -> dict:
        """The plain nodes regrouped into as few segments as their levels allow.

        A plain node can run at any level from the one its inputs reach (its ASAP level) to the last before a
        reader needs it (ALAP: a host reader's level, a plain reader's ALAP, the end for the graph's outputs
        ``final``; the ASAP level itself for the conditions of inlined Ifs, ``early``, whose guards should fail
        before the run does more). Choosing levels that hit every node's interval with as few points as possible is interval
        stabbing, solved exactly by taking right ends greedily; each node then runs at the first chosen level
        in its interval, so a producer never runs after its readers. A side computation (a Loop body's
        condition, a shape chain) then joins a segment that runs anyway instead of costing an onnxruntime
        call of its own.
        """
        entries = sorted((idx, lvl, node) for lvl, ns in plain.items() for idx, node in ns)
        if not entries:
            return plain
        top = max(level_of.values(), default=0)
        readers: dict[str, list] = {}
        for idx, lvl, node in entries:
            for t in node_reads(node):
                readers.setdefault(t, []).append(("plain", idx))
        for lvl, ns in hosts.items():
            for idx, node in ns:
                for t in node_reads(node):
                    readers.setdefault(t, []).append(("host", lvl))
        alap: dict[int, int] = {}
        for idx, lvl, node in reversed(entries):  # readers come later in a topologically sorted graph
            late = top
            for o in node.output:
                if o in early:
                    late = lvl
                if o in final:
                    continue
                for kind, key in readers.get(o, ()):
                    late = min(late, key if kind == "host" else alap.get(key, top))
            alap[idx] = max(late, lvl)
        points: list[int] = []
        for idx, lvl, node in sorted(entries, key=lambda e: alap[e[0]]):
            if not points or points[-1] < lvl:
                points.append(alap[idx])
        out: dict[int, list] = {}
        for idx, lvl, node in entries:
            out.setdefault(points[bisect.bisect_left(points, lvl)], []).append((idx, node))
        return out

    def _place_guards(self, guards, inits, types):
        """A GuardStep right after the step that computes each inlined If's condition."""
        made = {}
        for i, step in enumerate(self.steps):
            outs = ([d for _, d in step.pairs] if isinstance(step, AliasStep)
                    else step.node.output if isinstance(step, _ControlStep) else step.outputs)
            for o in outs:
                made.setdefault(o, i)
        at: dict[int, list] = {}
        for g in guards:
            if g[0] in made:
                at.setdefault(made[g[0]], []).append(g)
            elif g[0] in types:  # a graph input
                at.setdefault(-1, []).append(g)
            # a constant condition: the generic run that chose this plan already took that branch
        for i in sorted(at, reverse=True):
            step = self.steps[i] if i >= 0 else None
            if isinstance(step, _Segment):
                step.checks = [(name, want) for name, want, _ in at[i]]
            else:
                self.steps.insert(i + 1, GuardStep(at[i]))

    def out_type(self, i: int):
        o = self.graph.output[i]
        if o.type.WhichOneof("value") is not None:
            return o.type
        t = self.types.get(o.name)
        return _type_proto(t) if t is not None else helper.make_tensor_type_proto(TensorProto.FLOAT, None)

    def time_with(self, counters: list | None, clock=None) -> None:
        """Switch ``run`` to a variant that also adds the time spent inside onnxruntime and the EIE kernels, read
        from ``clock`` (nanoseconds), and their calls to ``counters`` (:mod:`~eie_runtime.onnx.compiled`); None
        switches back."""
        self.run = self._untimed if counters is None else compile_plan(self, counters, clock)
