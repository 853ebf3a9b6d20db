"""An ``onnx.backend.base.Backend`` over eie-runtime, for onnx's conformance tests (``BackendTest``).

Each model is converted (:func:`~eie_runtime.onnx.converter.convert_model`) and run by
:class:`~eie_runtime.onnx.session.InferenceSession`: onnxruntime runs every op that is not an EIE node.

>>> from eie_runtime.onnx.backend import EIEBackend
>>> rep = EIEBackend.prepare(model)              # lossless by default: exact float32 weights
>>> outputs = rep.run([x, w])                     # positional, in graph-input order, or a dict

By default the backend is *lossless* (``density=1``, no pruning, no weight
sharing), so its outputs can be compared with the ONNX reference. Pass
``lossless=False, density=..., bits=..., n_pe=...`` to ``prepare`` to run the
compressed model instead.

ONNX's node tests feed weights as graph inputs, while EIE compresses constant
weights at conversion time. The backend therefore converts at run time when a
graph input feeds a weight slot (``Gemm`` B/C, ``MatMul`` B, ``LSTM``
W/R/B/P): those inputs are bound as initializers from the values given to
``run`` and the model is converted then (and again whenever they change).
"""

from __future__ import annotations

import hashlib

import numpy as np
from onnx import numpy_helper
from onnx.backend.base import Backend, BackendRep, namedtupledict

from ..errors import EIEInputError
from .converter import convert_model
from .session import InferenceSession

# input positions that carry weights, per op type
WEIGHT_SLOTS = {"Gemm": (1, 2), "MatMul": (1,), "LSTM": (1, 2, 3, 7), "GRU": (1, 2, 3)}


class EIEBackendRep(BackendRep):
    """A prepared model: ``run(inputs)`` returns the outputs as a tuple (named by output)."""

    def __init__(self, model, convert_kwargs: dict):
        self.model = model
        self.convert_kwargs = convert_kwargs
        inits = {t.name for t in model.graph.initializer}
        self.input_names = [vi.name for vi in model.graph.input if vi.name not in inits]
        self.output_names = [o.name for o in model.graph.output]
        fed = set(self.input_names)
        self.weight_inputs = sorted({n.input[i] for n in model.graph.node for i in WEIGHT_SLOTS.get(n.op_type, ())
                                     if i < len(n.input) and n.input[i] in fed})
        self._graph: _Runner | None = None
        self._key = None
        if not self.weight_inputs:
            self._graph = self._convert(model)

    def _convert(self, model) -> "_Runner":
        return _Runner(InferenceSession(convert_model(model, **self.convert_kwargs)[0]))

    def _bound_graph(self, feeds: dict) -> "_Runner":
        """Convert with the run-time weight inputs bound as initializers (cached by their bytes)."""
        h = hashlib.sha256()
        for name in self.weight_inputs:
            arr = np.ascontiguousarray(feeds[name])
            h.update(name.encode() + str(arr.dtype).encode() + str(arr.shape).encode() + arr.tobytes())
        key = h.digest()
        if key != self._key:
            bound = type(self.model)()
            bound.CopyFrom(self.model)
            keep = [vi for vi in bound.graph.input if vi.name not in self.weight_inputs]
            del bound.graph.input[:]
            bound.graph.input.extend(keep)
            bound.graph.initializer.extend(numpy_helper.from_array(np.asarray(feeds[n]), n) for n in self.weight_inputs)
            self._graph, self._key = self._convert(bound), key
        return self._graph

    def run(self, inputs, **kwargs):
        if isinstance(inputs, dict):
            feeds = dict(inputs)
        else:
            if isinstance(inputs, np.ndarray):
                inputs = [inputs]
            inputs = list(inputs)
            if len(inputs) > len(self.input_names):
                raise EIEInputError(f"got {len(inputs)} inputs, the model takes {len(self.input_names)}: {self.input_names}")
            feeds = dict(zip(self.input_names, inputs))
        for name in self.weight_inputs:
            if name not in feeds:
                raise EIEInputError(f"missing input {name!r} (a weight fed at run time)")
        graph = self._bound_graph(feeds) if self.weight_inputs else self._graph
        feeds = {k: v for k, v in feeds.items() if k not in self.weight_inputs}
        out = graph.run(feeds, mode=kwargs.get("mode", "float32"))
        return namedtupledict("Outputs", self.output_names)(*[out[o] for o in self.output_names])


class _Runner:
    """A converted model's session with the old executor's ``run(feeds, mode) -> {name: array}``."""

    def __init__(self, sess: InferenceSession):
        self.sess = sess
        self.names = [o.name for o in sess.get_outputs()]

    def run(self, feeds: dict, mode: str = "float32") -> dict:
        return dict(zip(self.names, self.sess.run(None, feeds, mode=mode)))


class EIEBackend(Backend):
    """eie-runtime as an ONNX backend (CPU only)."""

    @classmethod
    def prepare(cls, model, device: str = "CPU", **kwargs) -> EIEBackendRep:
        if not cls.supports_device(device):
            raise EIEInputError(f"eie-runtime runs on the CPU only, not on {device!r}")
        opts = {"lossless": kwargs.pop("lossless", True)}
        for key in ("density", "bits", "n_pe", "seed", "layer_overrides"):
            if key in kwargs:
                opts[key] = kwargs.pop(key)
        if opts["lossless"]:
            opts.setdefault("density", 1.0)
        return EIEBackendRep(model, opts)

    @classmethod
    def run_model(cls, model, inputs, device: str = "CPU", **kwargs):
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return str(device).upper().startswith("CPU")


prepare = EIEBackend.prepare
run_model = EIEBackend.run_model
supports_device = EIEBackend.supports_device
