"""GraphModel: a converted model that runs its nodes in order over named numpy tensors."""

from __future__ import annotations

import numpy as np

from ..call_recording import record_layer_calls, samples_by_layer
from ..errors import EIEInputError
from ..layer import MODES
from .checks import check_feed, check_graph
from .ir import GRAPH_VERSION, Node, shape_str
from .layer_ops import LAYER_OPS, layer_indices
from .ops import OPS


class GraphModel:
    """A converted model: run it with ``model(x)`` or ``model.run({name: array})``.

    Parameters
    ----------
    nodes : list[Node]
        Topologically ordered.
    inputs : list[TensorSpec]
        Run-time inputs (initializers are ``constants``).
    outputs : list[str]
    constants : dict[str, np.ndarray]
    layers : list[EIELinear]
        Referenced by ``Linear`` and ``LSTM`` nodes.
    opset : int
        The ONNX default-domain opset the node semantics follow.
    meta : dict, optional
        Free-form JSON-able provenance (source file, conversion settings).
    """

    def __init__(self, nodes, inputs, outputs, constants, layers, opset: int, meta: dict | None = None):
        self.nodes = list(nodes)
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.constants = dict(constants)
        self.layers = list(layers)
        self.opset = int(opset) if isinstance(opset, (int, np.integer)) and not isinstance(opset, bool) else opset
        self.meta = dict(meta or {})
        self._lstm_cache: dict[int, tuple] = {}  # by id(node): names come from files, may repeat
        check_graph(self)

    # ----------------------------------------------------------------- info
    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.inputs]

    def layer_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.op in LAYER_OPS]

    def __repr__(self) -> str:
        return (f"GraphModel({len(self.nodes)} nodes, {len(self.layers)} EIE layers, inputs={self.input_names}, "
                f"outputs={self.outputs}, opset={self.opset})")

    def summary(self) -> list[dict]:
        """One row per EIE layer: node, shape, density, bits, stored entries, bytes."""
        rows = []
        owner = {}
        for n in self.nodes:
            for i in layer_indices(n):
                owner[i] = n.name
        for i, layer in enumerate(self.layers):
            s = layer.matrix.stats()
            rows.append({"node": owner.get(i, "-"), "layer": layer.name, "shape": f"{s.shape[0]}x{s.shape[1]}",
                         "n_pe": s.n_pe, "density": round(s.density, 4), "bits": layer.matrix.bits,
                         "stored": s.stored_entries, "padding": s.padding_entries, "bytes": s.nbytes,
                         "ratio": round(s.compression_ratio, 1)})
        for n in self.nodes:
            if n.op == "DenseLinear" or (n.op == "LSTM" and "dense_cells" in n.attrs):
                names = [n.attrs["weight"]] if n.op == "DenseLinear" else n.attrs["dense_cells"]
                for c in names:
                    w = self.constants[c]
                    rows.append({"node": n.name, "layer": "(dense, lossless)", "shape": f"{w.shape[0]}x{w.shape[1]}",
                                 "n_pe": "-", "density": round(float(np.count_nonzero(w)) / max(1, w.size), 4),
                                 "bits": 32, "stored": w.size, "padding": 0, "bytes": w.nbytes, "ratio": 1.0})
        return rows

    # ------------------------------------------------------------------ run
    def __call__(self, *args, mode: str = "float32", **kwargs):
        """``model(x)`` or ``model(x1, x2)`` (positional, in input order) or ``model(name=x)``.

        Returns the single output, or a tuple of outputs in graph order.
        """
        if len(args) > len(self.inputs):
            raise EIEInputError(f"the model takes {len(self.inputs)} input(s) {self.input_names}, got {len(args)}")
        feeds = dict(zip(self.input_names, args))
        feeds.update(kwargs)
        out = self.run(feeds, mode=mode)
        vals = tuple(out[o] for o in self.outputs)
        return vals[0] if len(vals) == 1 else vals

    def run(self, feeds: dict, mode: str = "float32") -> dict[str, np.ndarray]:
        """Run the graph on ``feeds`` (input name -> array); return {output name: array}."""
        if mode not in MODES:
            raise EIEInputError(f"mode must be one of {MODES}, got {mode!r}")
        env = dict(self.constants)
        known = set(self.input_names)
        for key in feeds:
            if key not in known:
                raise EIEInputError(f"unknown input {key!r}; the model's inputs are {self.input_names}")
        for spec in self.inputs:
            if spec.name not in feeds:
                raise EIEInputError(f"missing input {spec.name!r} (dtype {spec.dtype}, shape {shape_str(spec.shape)})")
            env[spec.name] = check_feed(spec, feeds[spec.name])
        for node in self.nodes:
            args = [env[i] if i else None for i in node.inputs]
            try:
                results = self._run_node(node, args, mode)
            except EIEInputError as exc:
                raise EIEInputError(f"node {node.name!r} ({node.op}): {exc}") from None
            except (ValueError, IndexError, TypeError, AttributeError, KeyError, OverflowError) as exc:  # numpy's shape errors etc.
                raise EIEInputError(f"node {node.name!r} ({node.op}) failed on inputs of shapes "
                                    f"{[None if a is None else a.shape for a in args]}: {exc}") from None
            for name, val in zip(node.outputs, results):
                if name:
                    env[name] = val
        return {o: env[o] for o in self.outputs}

    def _run_node(self, node: Node, args: list, mode: str) -> list:
        spec = OPS[node.op]  # check_graph let only registered ops in
        if spec.layer:
            return spec.run(self, node, args, mode)
        return [spec.run(args, node.attrs, self.opset)]

    # -------------------------------------------------------------- fixed16
    def calibrate(self, feeds: dict, *, headroom: float = 1.25) -> None:
        """Set every EIE layer's fixed-point parameters from a float32 run on ``feeds`` (batched samples).

        ``Linear`` layers calibrate on the activations they actually see; LSTM
        cells on the ``[x_t; h_{t-1}; 1]`` vectors of every step.
        """
        # the calls of this thread only, recorded without patching any method: other threads running (or
        # calibrating) the model meanwhile compute exactly what they would otherwise
        with record_layer_calls() as calls:
            self.run(feeds, mode="float32")
        seen = samples_by_layer(calls)
        for layer in self.layers:
            if id(layer) not in seen:
                raise EIEInputError(f"layer {layer.name!r} saw no activations during calibration")
        for layer in {id(lay): lay for lay in self.layers}.values():
            layer.calibrate(seen[id(layer)][1], headroom=headroom)

    # ------------------------------------------------------------------ file
    def _eie_file_contents(self) -> dict:
        """What :func:`eie_runtime.save` writes (read back by :func:`eie_runtime.graph.files.model_from_file`)."""
        # shapes kept in the header too: the safetensors writer stores 0-d arrays as 1-d
        const_keys = {name: {"key": f"c{i}", "shape": list(arr.shape)} for i, (name, arr) in enumerate(self.constants.items())}
        header = {
            "version": GRAPH_VERSION,
            "opset": self.opset,
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": self.outputs,
            "nodes": [n.to_dict() for n in self.nodes],
            "constants": const_keys,
        }
        return {"layers": self.layers, "kind": "graph", "meta": {"graph": header, "info": self.meta},
                "extra": {c["key"]: self.constants[name] for name, c in const_keys.items()}}
