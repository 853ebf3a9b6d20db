"""Run a converted ONNX model: onnxruntime runs the graph, the EIE kernels run the EIE nodes.

:class:`InferenceSession` partitions each graph at its *host* nodes (EIE-domain
nodes, and ``If``/``Loop``/``Scan`` nodes whose bodies hold EIE nodes) into
steps (:mod:`~eie_runtime.onnx.plan`): onnxruntime sessions for the plain nodes
between them, the EIE kernels, control steps. So a transformer layer whose Q, K
and V projections are EIE nodes costs one onnxruntime call between them, not
three. Each plan runs as one Python function generated from its steps
(:mod:`~eie_runtime.onnx.compiled`); :meth:`InferenceSession.profile` counts
the time spent inside onnxruntime and the kernels. Values cross the boundary as numpy arrays that onnxruntime and the
kernels share without copying.

Control flow whose bodies hold EIE nodes runs here, with ONNX's semantics
(``If``: one branch; ``Loop``: trip count and condition, loop-carried values,
scan outputs stacked; ``Scan``: scan inputs sliced along their axes), each body
a partitioned plan of its own that reads the enclosing values. After a run
that took branches of such ``If`` s, the next run first tries a plan with those
branches inlined into the enclosing graph, guarded by their conditions
(:mod:`~eie_runtime.onnx.inline`).

Every EIE node is decoded and checked when the session is created
(:func:`~eie_runtime.onnx.nodes.decode_node`): a hostile node is refused with an
:class:`~eie_runtime.errors.EIEFormatError` naming it before anything runs.
Nodes onnxruntime cannot load are refused with onnxruntime's reason.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import numpy as np
import onnx
from onnx import TensorProto

from ..errors import EIEInputError
from ..layer import MODES
from . import nodes as N
from .compiled import EIE_CALLS, EIE_NS, ORT_CALLS, ORT_NS
from .control import ControlStep as _ControlStep
from .inline import TRACE, inline_taken
from .plan import _EIEStep, _Plan, _Segment  # noqa: F401  (_Segment: for benches and tools)

#: specialised plans kept per session (one per combination of If outcomes seen)
_MAX_SPECIALISED = 8


class NodeArg:
    """An input or output's name, type and shape (like onnxruntime's NodeArg)."""

    def __init__(self, vi):
        self.name = vi.name
        t = vi.type.tensor_type if vi.type.WhichOneof("value") == "tensor_type" else None
        known = t is not None and t.elem_type in TensorProto.DataType.values()  # (a file's 99: no ValueError)
        self.type = f"tensor({TensorProto.DataType.Name(t.elem_type).lower()})" if known else \
            "unknown" if t is None else f"tensor(type {t.elem_type})"
        self.shape = None if t is None or not t.HasField("shape") else [
            d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]

    def __repr__(self):
        return f"NodeArg(name={self.name!r}, type={self.type!r}, shape={self.shape})"


def _load(src):
    """The session's own ModelProto (calibrate and to_dense edit it), checked and in standard form."""
    from .reader import load_onnx
    from .walk import standard_form

    where = "model" if isinstance(src, onnx.ModelProto) else "<bytes>" if isinstance(src, (bytes, bytearray)) \
        else str(src)
    if isinstance(src, onnx.ModelProto):
        proto = onnx.ModelProto()
        proto.CopyFrom(src)
    else:  # a path: external data files beside it are read in
        proto = load_onnx(bytes(src) if isinstance(src, (bytes, bytearray)) else src, infer_shapes=False)
    return standard_form(proto, where), where


class InferenceSession:
    """A converted ONNX model (from ``eie convert``), run like ``onnxruntime.InferenceSession``.

    Parameters
    ----------
    model : str, Path, bytes or onnx.ModelProto
    mode : "float32" or "fixed16"
        How the EIE nodes compute; fixed16 needs a model converted with calibration.
    sess_options, providers
        Passed to the onnxruntime sessions of the plain segments (CPU by default).
    inline_branches : bool
        After a run, try the If branches it took inlined into the enclosing graph first (default True;
        False runs every If holding EIE nodes as a step of its own, as a reference or to save the memory of
        the specialised plans' onnxruntime sessions).

    ``run(output_names, feed)`` returns a list of numpy arrays, in the order of
    ``output_names`` (all outputs when None).
    """

    def __init__(self, model, mode: str = "float32", sess_options=None, providers=None, where: str | None = None,
                 inline_branches: bool = True):
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
        self._in_set = {vi.name for vi in self._inputs}
        self._out_names = [vi.name for vi in self._outputs]
        self._kcache: dict = {}
        self._plan_args = (opsets, proto.ir_version, sess_options, providers, self._kcache)
        self._plan = _Plan(g, {}, {}, *self._plan_args, where=where)
        self._where = where
        self._specialised: dict = {}  # outcomes of the Ifs holding EIE nodes -> plan with those branches inlined
        self._guess = None  # the specialised plan the next run tries first (the last run's outcomes)
        self._profiling = None  # (counters, clock) inside a profile() block
        self.inline_branches = bool(inline_branches)
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
        if feed.keys() != self._in_set:
            names = self.input_names
            for key in feed:
                if key not in names:
                    raise EIEInputError(f"unknown input {key!r}; the model's inputs are {names}")
            raise EIEInputError(f"missing input(s) {[n for n in names if n not in feed]}")
        outs = self._out_names
        if output_names is not None:
            want = list(output_names)
            bad = [o for o in want if o not in outs]
            if bad:
                raise EIEInputError(f"unknown output(s) {bad}; the model's outputs are {outs}")
        feeds = feed  # read only: the plan copies it into its own values
        for v in feed.values():
            if type(v) is not np.ndarray:
                feeds = {k: v if type(v) is np.ndarray or isinstance(v, (list, dict)) or v is None else np.asarray(v)
                         for k, v in feed.items()}
                break
        try:
            values = None
            spec = self._guess
            if spec is not None:
                try:
                    values = spec.run({}, feeds, mode)
                except Exception:  # a guard failed (another branch), or an error the generic run will report
                    values = None
            if values is None:
                trace: dict = {}
                values = self._plan.run({TRACE: trace}, feeds, mode)
                if trace and self.inline_branches:
                    self._learn(trace)
        except EIEInputError:
            raise
        except Exception as exc:  # onnxruntime's run-time errors (wrong dtype, shape) name the node themselves
            if type(exc).__module__.startswith("onnxruntime"):
                raise EIEInputError(f"onnxruntime: {str(exc).strip().splitlines()[0]}") from None
            raise
        if output_names is None:
            return values
        values = dict(zip(outs, values))
        return [values[o] for o in want]

    def _learn(self, trace: dict) -> None:
        """Make the plan with the branches this run took inlined the next run's first try."""
        key = frozenset(trace.items())
        if key not in self._specialised:
            if len(self._specialised) >= _MAX_SPECIALISED:
                self._guess = None
                return
            try:
                view = inline_taken(self.model.graph, trace)
                plan = self._specialised[key] = _Plan(view, {}, {}, *self._plan_args, where=self._where)
                if self._profiling is not None:
                    for p in _all_plans(plan):
                        p.time_with(*self._profiling)
            except Exception:  # noqa: BLE001  (a plan that cannot be built: the generic plan keeps running)
                self._specialised[key] = None
        self._guess = self._specialised[key]

    def plans(self) -> list:
        """The generic plan, then the specialised ones built so far (for benches and tools)."""
        return [self._plan] + [p for p in self._specialised.values() if p is not None]

    @contextmanager
    def profile(self, clock=time.perf_counter_ns):
        """Count where the runs inside the block spend their time; yields a :class:`StepTimes`.

        Every plan (the specialised ones too, also those built inside the block) switches to a variant of its
        generated function that reads the clock around each onnxruntime segment run and each EIE kernel call; what the
        runs spend besides is the partition's own Python. Profile from one thread: other threads' runs of this
        session meanwhile count too.
        """
        times = StepTimes()
        self._profiling = (times.clock, clock)
        try:
            for top in self.plans():
                for p in _all_plans(top):
                    p.time_with(*self._profiling)
            yield times
        finally:
            self._profiling = None
            for top in self.plans():  # with those built inside the block
                for p in _all_plans(top):
                    p.time_with(None)

    # -------------------------------------------------------------- fixed16
    def calibrate(self, feed: dict, *, headroom: float = 1.25) -> list[str]:
        """Set the EIE layers' fixed16 parameters from a float32 run on ``feed`` and store them in the model.

        Returns the names of layers the run never reached (a branch not taken): they stay uncalibrated, and a
        fixed16 run that reaches one is refused there, naming it. Refused if no layer was reached.
        """
        layers = self.layers
        from ..call_recording import record_layer_calls, samples_by_layer  # this thread's calls, nothing patched

        with record_layer_calls() as calls:
            self.run(None, feed, mode="float32")
        seen = samples_by_layer(calls)
        if layers and not seen:
            raise EIEInputError("no EIE layer saw activations during calibration")
        unseen = []
        for i, layer in enumerate(layers):
            if id(layer) in seen:
                layer.calibrate(seen[id(layer)][1], headroom=headroom)
            else:
                unseen.append(layer.name)
        for step in _all_steps(self._plan):
            lays = step.kernel.layers if isinstance(step, _EIEStep) else []
            if lays and all(lay.fixed is not None for lay in lays):
                N.set_fixed(step.node, [lay.fixed for lay in lays])
        return unseen


class StepTimes:
    """Time inside onnxruntime's segment runs and the EIE kernels, and their calls, counted by
    :meth:`InferenceSession.profile`."""

    def __init__(self):
        self.clock = [0, 0, 0, 0]

    ort_s = property(lambda self: self.clock[ORT_NS] * 1e-9)
    ort_calls = property(lambda self: self.clock[ORT_CALLS])
    eie_s = property(lambda self: self.clock[EIE_NS] * 1e-9)
    eie_calls = property(lambda self: self.clock[EIE_CALLS])

    def __repr__(self):
        return (f"StepTimes(onnxruntime {self.ort_s * 1e3:.3f} ms in {self.ort_calls} calls, "
                f"EIE kernels {self.eie_s * 1e3:.3f} ms in {self.eie_calls} calls)")


def _all_plans(plan):
    """``plan`` and the plans of every control body inside it, at any depth."""
    yield plan
    for s in _all_steps(plan):
        if isinstance(s, _ControlStep):
            yield from s.plans.values()


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
