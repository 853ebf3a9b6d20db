""":class:`~eie_runtime.graph.GraphModel` -> a plain, dense ONNX model.

Every EIE layer is written with its pruned-and-shared weights decoded to a
dense matrix (``MatMul`` + ``Add``; LSTM cells back to ONNX's ``W``, ``R``,
``B`` in gate order i, o, f, c), so any ONNX runtime reproduces what the EIE
model computes in float32 mode. The other nodes are written as they are, at
the graph's opset.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import EIEFormatError
from ..graph import ONNX_DTYPES, GraphModel, Node

# torch's gate blocks (i, f, g, o) back to ONNX's (i, o, f, c)
TORCH_TO_ONNX_GATES = (0, 3, 1, 2)
_NP_TO_ONNX = {v: k for k, v in ONNX_DTYPES.items()}


def _value_info(name: str, dtype: str, shape):
    dims = None if shape is None else [d if d is not None else f"{name}_d{i}" for i, d in enumerate(shape)]
    return helper.make_tensor_value_info(name, _NP_TO_ONNX[dtype], dims)


class _Writer:
    def __init__(self, model: GraphModel):
        self.model = model
        self.nodes = []
        self.inits = {}

    def init(self, name: str, arr: np.ndarray) -> str:
        self.inits[name] = np.asarray(arr, order="C")  # (ascontiguousarray would make 0-d arrays 1-d)
        return name

    def node(self, op, inputs, outputs, name, **attrs):
        self.nodes.append(helper.make_node(op, inputs, outputs, name=name, **attrs))

    def linear(self, node: Node, weight: np.ndarray, bias, relu: bool = False):
        x, out = node.inputs[0], node.outputs[0]
        wt = self.init(f"{node.name}.weight_T", weight.T.astype(np.float32))
        mm = f"{node.name}.matmul" if (bias is not None or relu) else out
        self.node("MatMul", [x, wt], [mm], f"{node.name}.MatMul")
        if bias is not None:
            b = self.init(f"{node.name}.bias", np.asarray(bias, dtype=np.float32))
            add = f"{node.name}.add" if relu else out
            self.node("Add", [mm, b], [add], f"{node.name}.Add")
            mm = add
        if relu:
            self.node("Relu", [mm], [out], f"{node.name}.Relu")

    def lstm(self, node: Node):
        a = node.attrs
        hs = a["hidden_size"]
        if "cells" in a:
            mats = [self.model.layers[i].dense() for i in a["cells"]]
            for m, i in zip(mats, a["cells"]):  # lstm_bias="dense": the bias is the layer's, not the last column
                if self.model.layers[i].bias is not None:
                    m[:, -1] += self.model.layers[i].bias
        else:
            mats = [self.model.constants[c] for c in a["dense_cells"]]
        in_size = mats[0].shape[1] - hs - 1

        def gates(m):
            return np.concatenate([m[k * hs:(k + 1) * hs] for k in TORCH_TO_ONNX_GATES])

        w = np.stack([gates(m[:, :in_size]) for m in mats]).astype(np.float32)
        r = np.stack([gates(m[:, in_size:in_size + hs]) for m in mats]).astype(np.float32)
        b = np.stack([np.concatenate([gates(m[:, -1]), np.zeros(4 * hs, np.float32)]) for m in mats]).astype(np.float32)
        ins = list(node.inputs) + [""] * (4 - len(node.inputs))
        outs = list(node.outputs)
        if a["layout"]:  # batch-major: written as Transposes around a layout-0 LSTM (onnxruntime lacks layout=1)
            for k, perm in ((0, [1, 0, 2]), (2, [1, 0, 2]), (3, [1, 0, 2])):
                if ins[k]:
                    self.node("Transpose", [ins[k]], [f"{ins[k]}.{node.name}.T"], f"{node.name}.in{k}.T", perm=perm)
                    ins[k] = f"{ins[k]}.{node.name}.T"
        final = outs
        if a["layout"]:
            outs = [f"{o}.{node.name}.T" if o else "" for o in outs]
        inputs = [ins[0], self.init(f"{node.name}.W", w), self.init(f"{node.name}.R", r), self.init(f"{node.name}.B", b),
                  ins[1], ins[2], ins[3]]
        while not inputs[-1]:
            inputs.pop()
        self.node("LSTM", inputs, outs, node.name, hidden_size=hs, direction=a["direction"])
        if a["layout"]:
            for k, (o, f) in enumerate(zip(outs, final)):
                if o:
                    self.node("Transpose", [o], [f], f"{node.name}.out{k}.T", perm=[2, 0, 1, 3] if k == 0 else [1, 0, 2])

    def elementary(self, node: Node):
        attrs = dict(node.attrs)
        if node.op == "ConstantOfShape" and "value" in attrs:
            v = np.asarray(attrs.pop("value"), dtype=attrs.pop("dtype", "float32")).reshape(1)
            attrs["value"] = helper.make_tensor("value", _NP_TO_ONNX[str(v.dtype)], [1], v.tolist())
        self.node(node.op, list(node.inputs), list(node.outputs), node.name, **attrs)


def export_graph(model: GraphModel):
    """Write ``model`` as a dense ONNX ``ModelProto`` (checked with ``onnx.checker``)."""
    if not isinstance(model, GraphModel):
        raise EIEFormatError(f"export needs a converted graph model, got a {type(model).__name__}")
    w = _Writer(model)
    for node in model.nodes:
        if node.op == "Linear":
            layer = model.layers[node.attrs["layer"]]
            w.linear(node, layer.dense(), layer.bias, relu=layer.activation == "relu")
        elif node.op == "DenseLinear":
            bias = model.constants[node.attrs["bias"]] if node.attrs.get("bias") else None
            w.linear(node, model.constants[node.attrs["weight"]], bias)
        elif node.op == "LSTM":
            w.lstm(node)
        else:
            w.elementary(node)
    used = {t for n in w.nodes for t in n.input} | set(model.outputs)
    for name, arr in model.constants.items():
        if name in used and name not in w.inits:
            w.init(name, arr)
    out_specs = {o["name"]: o for o in model.meta.get("outputs", []) if isinstance(o, dict)}
    outputs = [_value_info(o, out_specs.get(o, {}).get("dtype", "float32"), out_specs.get(o, {}).get("shape"))
               for o in model.outputs]
    graph = helper.make_graph(w.nodes, model.meta.get("name", "eie_export"),
                              [_value_info(s.name, s.dtype, s.shape) for s in model.inputs], outputs,
                              initializer=[numpy_helper.from_array(v, k) for k, v in w.inits.items()])
    opset = [helper.make_opsetid("", model.opset)]
    proto = helper.make_model(graph, opset_imports=opset, producer_name="eie-runtime",
                              ir_version=max(7, helper.find_min_ir_version_for(opset)))
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise EIEFormatError(f"the exported ONNX model does not check: {exc}") from None
    return proto
