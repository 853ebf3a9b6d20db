"""Run a converted ONNX model: onnxruntime runs the graph, the EIE kernels run the EIE nodes.

:class:`InferenceSession` partitions each graph at its *host* nodes (EIE-domain
nodes, and ``If``/``Loop``/``Scan`` nodes whose bodies hold EIE nodes). Every
other node lands in an onnxruntime session: a node's *level* is the number of
host nodes on the longest path that leads to it, and the plain nodes of one
level make one onnxruntime session, run before that level's host nodes. So a
transformer layer whose Q, K and V projections are EIE nodes costs one
onnxruntime call between them, not three. Values cross the boundary as numpy
arrays that onnxruntime and the kernels share without copying.

Control flow whose bodies hold EIE nodes runs here, with ONNX's semantics
(``If``: one branch; ``Loop``: trip count and condition, loop-carried values,
scan outputs stacked; ``Scan``: scan inputs sliced along their axes), each body
a partitioned plan of its own that reads the enclosing values.

Every EIE node is decoded and checked when the session is created
(:func:`~eie_runtime.onnx.nodes.decode_node`): a hostile node is refused with an
:class:`~eie_runtime.errors.EIEFormatError` naming it before anything runs.
Nodes onnxruntime cannot load are refused with onnxruntime's reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import EIEFormatError, EIEInputError
from ..layer import MODES
from . import nodes as N
from .control import ControlStep as _ControlStep
from .converter import node_reads, subgraphs

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

    def run(self, env, mode):
        outs = self.sess.run(self.outputs, {n: env[n] for n in self.inputs})
        env.update(zip(self.outputs, outs))


class _EIEStep:
    def __init__(self, node, kernel, types):
        self.kernel, self.node = kernel, node
        self.inputs = list(node.input[:N.DATA_INPUTS.get(node.op_type, 1)])
        self.outputs = list(node.output)
        for o in self.outputs:
            if o:
                types[o] = TensorProto.FLOAT

    def run(self, env, mode):
        outs = self.kernel.run([env[t] if t else None for t in self.inputs], mode)
        for name, val in zip(self.outputs, outs):
            if name:
                env[name] = val


class _Plan:
    """One graph (the main graph or a body) as an ordered list of steps."""

    def __init__(self, graph, outer_types, outer_inits, opsets, ir_version, sess_options, providers, where):
        self.graph = graph
        types = dict(outer_types)
        local_inits = {t.name for t in graph.initializer}
        for vi in graph.input:
            if vi.name in local_inits:  # IR < 4 lists initializers as inputs too
                continue
            if vi.type.WhichOneof("value") is None:
                raise EIEFormatError(f"{where}: input {vi.name!r} has no type")
            types[vi.name] = vi.type
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
        # levels: the number of host nodes on the longest path to each node
        level_of: dict[str, int] = {}
        hosts, plain = {}, {}
        for idx, node in enumerate(graph.node):
            host = N.is_eie(node) or (node.op_type in _CONTROL and node.domain in ("", "ai.onnx") and _holds_eie(node))
            lvl = max((level_of.get(t, 0) for t in node_reads(node)), default=0)
            (hosts if host else plain).setdefault(lvl, []).append((idx, node))
            for o in node.output:
                level_of[o] = lvl + (1 if host else 0)
        # who reads what, by step position, to know each segment's outputs
        order = []
        for lvl in range(max(list(hosts) + list(plain) + [0]) + 1):
            if lvl in plain:
                order.append(("plain", lvl, [n for _, n in plain[lvl]]))
            for idx, node in hosts.get(lvl, []):
                order.append(("host", lvl, [node]))
        later_reads = []
        acc = set(self.plain_outputs)
        for kind, lvl, nodes in reversed(order):
            later_reads.append(set(acc))
            for n in nodes:
                acc |= node_reads(n)
        later_reads.reverse()
        self.steps = []
        local_init_names = {t.name for t in graph.initializer}
        self.const_env = {}
        for (kind, lvl, nodes), after in zip(order, later_reads):
            if kind == "host":
                node = nodes[0]
                w = f"{where}: node {node.name!r} ({node.op_type})"
                if N.is_eie(node):
                    self.steps.append(_EIEStep(node, N.decode_node(node, consts, w), types))
                    reads = [t for t in node.input[:N.DATA_INPUTS.get(node.op_type, 1)] if t]
                else:
                    self.steps.append(_ControlStep(node, (inits, opsets, ir_version, sess_options, providers),
                                                   types, w))
                    reads = node_reads(node)
                for t in reads:
                    if t in inits and t not in types:
                        self.const_env[t] = array(t)
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
        self.types = types

    def out_type(self, i: int):
        o = self.graph.output[i]
        if o.type.WhichOneof("value") is not None:
            return o.type
        t = self.types.get(o.name)
        return _type_proto(t) if t is not None else helper.make_tensor_type_proto(TensorProto.FLOAT, None)

    def run(self, outer_env: dict, feeds: dict, mode: str) -> list:
        # a body writes its values into the enclosing env (no copy per call): ONNX names are unique across
        # scopes, so nothing outside is overwritten, and the next iteration overwrites this one's
        env = outer_env
        env.update(self.const_env)
        env.update(feeds)
        for step in self.steps:
            step.run(env, mode)
        return [env[o] for o in self.plain_outputs]


class NodeArg:
    """An input or output's name, type and shape (like onnxruntime's NodeArg)."""

    def __init__(self, vi):
        self.name = vi.name
        t = vi.type.tensor_type if vi.type.WhichOneof("value") == "tensor_type" else None
        self.type = f"tensor({TensorProto.DataType.Name(t.elem_type).lower()})" if t is not None else "unknown"
        self.shape = None if t is None or not t.HasField("shape") else [
            d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]

    def __repr__(self):
        return f"NodeArg(name={self.name!r}, type={self.type!r}, shape={self.shape})"


def _load(src):
    if isinstance(src, onnx.ModelProto):
        copy = onnx.ModelProto()
        copy.CopyFrom(src)  # the session's model is its own (calibrate and to_dense edit it)
        return copy, "model"
    if isinstance(src, (bytes, bytearray)):
        data, where = bytes(src), "<bytes>"
    else:
        where = str(src)
        data = Path(src).read_bytes()
    from .reader import load_onnx

    return load_onnx(data, infer_shapes=False), where


class InferenceSession:
    """A converted ONNX model (from ``eie convert``), run like ``onnxruntime.InferenceSession``.

    Parameters
    ----------
    model : str, Path, bytes or onnx.ModelProto
    mode : "float32" or "fixed16"
        How the EIE nodes compute; fixed16 needs a model converted with calibration.
    sess_options, providers
        Passed to the onnxruntime sessions of the plain segments (CPU by default).

    ``run(output_names, feed)`` returns a list of numpy arrays, in the order of
    ``output_names`` (all outputs when None).
    """

    def __init__(self, model, mode: str = "float32", sess_options=None, providers=None, where: str | None = None):
        if mode not in MODES:
            raise EIEInputError(f"mode must be one of {MODES}, got {mode!r}")
        import onnxruntime as ort

        proto, where0 = _load(model)
        where = where or where0
        self.model, self.mode = proto, mode
        if sess_options is None:
            sess_options = ort.SessionOptions()
            sess_options.log_severity_level = 3
            # onnxruntime's worker threads spin after each run by default, taking the cores the EIE kernels
            # (Numba, numpy) need next: measured 100x slower EIE steps on 2 cores with spinning on
            sess_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = providers or ["CPUExecutionProvider"]
        opsets = [o for o in proto.opset_import if o.domain != N.DOMAIN]
        g = proto.graph
        init_names = {t.name for t in g.initializer}
        self._inputs = [vi for vi in g.input if vi.name not in init_names]
        self._outputs = list(g.output)
        self._plan = _Plan(g, {}, {}, opsets, proto.ir_version, sess_options, providers, where)
        self.kernels = [s.kernel for s in _all_steps(self._plan) if isinstance(s, _EIEStep)]
        if mode == "fixed16":
            mats = [lay for k in self.kernels for lay in _all_layers(k)]
            dense = [lay.name for lay in mats if not hasattr(lay, "matrix")]
            if dense:
                raise EIEInputError(f"{where}: layers {dense} were converted losslessly (dense float32 weights) "
                                    "and run in float32 mode only")
            # some may lack them (a branch calibration never took): a fixed16 run reaching one is refused there
            if mats and all(lay.fixed is None for lay in mats):
                raise EIEInputError(f"{where}: the EIE layers have no fixed16 parameters; convert with "
                                    "`eie convert ... --calibrate NAME=samples.npy` to run in fixed16 mode")

    @property
    def layers(self) -> list:
        """The EIE layers (EIELinear) of every EIE node, in plan order (LSTM nodes: one per direction)."""
        return [lay for k in self.kernels for lay in k.layers]

    def _eie_trace(self, x):
        """The (EIELinear, input) calls of one float32 run (for ``eie simulate``); ``x``: feed dict or the one input."""
        if not isinstance(x, dict):
            if len(self.input_names) != 1:
                raise EIEInputError(f"the model has inputs {self.input_names}: give them by name (a .npz)")
            x = {self.input_names[0]: x}
        from ..hardware.trace import record_layer_calls  # the simulator's own (thread-safe) recorder

        with record_layer_calls() as calls:
            self.run(None, x, mode="float32")
        return list(calls)

    def kernels_by_node(self) -> dict:
        """id(NodeProto in ``self.model``) -> the decoded kernel of that EIE node."""
        return {id(s.node): s.kernel for s in _all_steps(self._plan) if isinstance(s, _EIEStep)}

    def get_inputs(self) -> list[NodeArg]:
        return [NodeArg(vi) for vi in self._inputs]

    def get_outputs(self) -> list[NodeArg]:
        return [NodeArg(vi) for vi in self._outputs]

    @property
    def input_names(self) -> list[str]:
        return [vi.name for vi in self._inputs]

    def run(self, output_names, feed: dict, mode: str | None = None) -> list:
        mode = self.mode if mode is None else mode
        if mode not in MODES:
            raise EIEInputError(f"mode must be one of {MODES}, got {mode!r}")
        names = self.input_names
        for key in feed:
            if key not in names:
                raise EIEInputError(f"unknown input {key!r}; the model's inputs are {names}")
        missing = [n for n in names if n not in feed]
        if missing:
            raise EIEInputError(f"missing input(s) {missing}")
        outs = [o.name for o in self._outputs]
        want = outs if output_names is None else list(output_names)
        bad = [o for o in want if o not in outs]
        if bad:
            raise EIEInputError(f"unknown output(s) {bad}; the model's outputs are {outs}")
        feeds = {k: v if isinstance(v, (list, dict)) or v is None else np.asarray(v) for k, v in feed.items()}
        try:
            values = dict(zip(outs, self._plan.run({}, dict(feeds), mode)))
        except EIEInputError:
            raise
        except Exception as exc:  # onnxruntime's run-time errors (wrong dtype, shape) name the node themselves
            if type(exc).__module__.startswith("onnxruntime"):
                raise EIEInputError(f"onnxruntime: {str(exc).strip().splitlines()[0]}") from None
            raise
        return [values[o] for o in want]

    # -------------------------------------------------------------- fixed16
    def calibrate(self, feed: dict, *, headroom: float = 1.25) -> list[str]:
        """Set the EIE layers' fixed16 parameters from a float32 run on ``feed`` and store them in the model.

        Returns the names of layers the run never reached (a branch not taken): they stay uncalibrated, and a
        fixed16 run that reaches one is refused there, naming it. Refused if no layer was reached.
        """
        layers = self.layers
        seen: dict[int, list] = {}
        for i, layer in enumerate(layers):
            def record(x, _i=i, _f=layer.run_float32):
                arr = np.asarray(x, dtype=np.float32)
                seen.setdefault(_i, []).append(arr.reshape(-1, arr.shape[-1]))
                return _f(x)

            layer.run_float32 = record
        try:
            self.run(None, feed, mode="float32")
        finally:
            for layer in layers:
                del layer.run_float32
        if layers and not seen:
            raise EIEInputError("no EIE layer saw activations during calibration")
        unseen = []
        for i, layer in enumerate(layers):
            if i in seen:
                layer.calibrate(np.concatenate(seen[i]), headroom=headroom)
            else:
                unseen.append(layer.name)
        for step in _all_steps(self._plan):
            lays = step.kernel.layers if isinstance(step, _EIEStep) else []
            if lays and all(lay.fixed is not None for lay in lays):
                N.set_fixed(step.node, [lay.fixed for lay in lays])
        return unseen


def _all_layers(kernel):
    """Every matrix of a kernel (EIELinear, or the dense stand-ins of a lossless conversion)."""
    if isinstance(kernel, N.LSTMKernel):  # GRU kernels too: three matrices per direction
        return [m for c in kernel.cores for m in (c.cells[0][0] if kernel.gru else (c.cells[0][0],))]
    return [kernel.layer]


def _all_steps(plan):
    for s in plan.steps:
        yield s
        if isinstance(s, _ControlStep):
            for p in s.plans.values():
                yield from _all_steps(p)
