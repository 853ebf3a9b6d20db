"""A converted model (EIE-domain nodes) back to plain ONNX for runtimes without the EIE ops.

Each ``EIELinear``/``EIEDenseLinear`` becomes ``MatMul`` (+ ``Add`` bias, + ``Relu``)
with the pruned-and-shared weights as a dense float32 initializer; each
``EIELSTM`` becomes an ONNX ``LSTM`` (gates reordered back to ONNX's i, o, f, c;
the matrix's bias column as ``Wb``, ``Rb`` zero), each ``EIEGRU`` an ONNX ``GRU``;
a batch-major (``layout=1``) one becomes a layout-0 node between ``Transpose``
nodes, which onnxruntime runs. Nodes inside bodies too.
The result runs on onnxruntime alone and computes what the converted model
computes in float32 mode (to float32 rounding).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from . import nodes as N
from .converter import _all_graphs
from .walk import initializers_as_inputs, remove_initializers

TORCH_TO_ONNX_GATES = (0, 3, 1, 2)  # (i, f, g, o) blocks -> ONNX's (i, o, f, c)


def _dense_nodes(node, kernel, prefix):
    inits, made = [], []
    if isinstance(kernel, N.LinearKernel):
        lay = kernel.layer
        w = lay.dense() if hasattr(lay, "dense") else lay.weight
        inits.append(numpy_helper.from_array(np.ascontiguousarray(w.T, np.float32), f"{prefix}.WT"))
        cur = f"{prefix}.XW"
        made.append(helper.make_node("MatMul", [node.input[0], f"{prefix}.WT"], [cur], name=f"{node.name}/MatMul"))
        if lay.bias is not None:
            inits.append(numpy_helper.from_array(np.asarray(lay.bias, np.float32), f"{prefix}.b"))
            made.append(helper.make_node("Add", [cur, f"{prefix}.b"], [f"{prefix}.XWb"], name=f"{node.name}/Add"))
            cur = f"{prefix}.XWb"
        if lay.activation == "relu":
            made.append(helper.make_node("Relu", [cur], [f"{prefix}.relu"], name=f"{node.name}/Relu"))
            cur = f"{prefix}.relu"
        made.append(helper.make_node("Identity", [cur], [node.output[0]], name=f"{node.name}/out"))
        return made, inits
    a = kernel.a
    hs = a["hidden_size"]
    if kernel.gru:
        return _dense_gru(node, kernel, prefix)
    ws, rs, bs = [], [], []
    for core in kernel.cores:
        cell = core.cells[0][0]
        m = cell.dense() if hasattr(cell, "dense") else cell.weight
        isz = m.shape[1] - hs - 1

        def onnx_order(x):
            return np.concatenate([x[k * hs:(k + 1) * hs] for k in TORCH_TO_ONNX_GATES])

        ws.append(onnx_order(m[:, :isz]))
        rs.append(onnx_order(m[:, isz:isz + hs]))
        bs.append(np.concatenate([onnx_order(_bias_col(cell, m, isz + hs)), np.zeros(4 * hs, np.float32)]))
    for key, arr in (("W", ws), ("R", rs), ("B", bs)):
        inits.append(numpy_helper.from_array(np.stack(arr).astype(np.float32), f"{prefix}.{key}"))
    ins = list(node.input[:4]) + [""] * (4 - len(node.input[:4]))
    made += _layout0("LSTM", node, [ins[0], f"{prefix}.W", f"{prefix}.R", f"{prefix}.B", ins[1], ins[2], ins[3]],
                     prefix, hidden_size=hs, direction=a["direction"])
    return made, inits


def _layout0(op, node, ins, prefix, **attrs):
    """An ONNX ``op`` node with layout 0 (no ``layout`` attribute: opsets before 14 have none); for a
    ``layout=1`` EIE node, Transposes around it (onnxruntime runs no batch-major recurrent node): X and the
    initial states in, Y and the final states out."""
    if not node.attribute or not any(a.name == "layout" and a.i == 1 for a in node.attribute):
        return [helper.make_node(op, ins, list(node.output), name=node.name, **attrs)]
    ins, outs, made = list(ins), list(node.output), []
    for k in (0, 5, 6):  # X (B, T, I) -> (T, B, I); initial_h/initial_c (B, D, H) -> (D, B, H)
        if k < len(ins) and ins[k]:
            made.append(helper.make_node("Transpose", [ins[k]], [f"{prefix}.in{k}"], name=f"{node.name}/in{k}",
                                         perm=[1, 0, 2]))
            ins[k] = f"{prefix}.in{k}"
    post = []
    for k, o in enumerate(outs):
        if o:  # Y (T, D, B, H) -> (B, T, D, H); Y_h/Y_c (D, B, H) -> (B, D, H)
            post.append(helper.make_node("Transpose", [f"{prefix}.out{k}"], [o], name=f"{node.name}/out{k}",
                                         perm=[2, 0, 1, 3] if k == 0 else [1, 0, 2]))
            outs[k] = f"{prefix}.out{k}"
    return made + [helper.make_node(op, ins, outs, name=node.name, **attrs)] + post


TORCH_TO_ONNX_GRU = (1, 0, 2)  # (r, z, n) blocks -> ONNX's (z, r, h)


def _mat(m):
    return m.dense() if hasattr(m, "dense") else m.weight


def _bias_col(layer, m, col):
    """The matrix's bias column plus the layer's own float32 bias (lstm_bias="dense" keeps it there)."""
    b = getattr(layer, "bias", None)
    return m[:, col] if b is None else m[:, col] + np.asarray(b, np.float32)


def _dense_gru(node, kernel, prefix):
    a = kernel.a
    hs, lbr = a["hidden_size"], a.get("linear_before_reset", 0)

    def onnx_order(x):
        return np.concatenate([x[k * hs:(k + 1) * hs] for k in TORCH_TO_ONNX_GRU])

    ws, rs, bs = [], [], []
    for core in kernel.cores:
        layers = core.cells[0][0]
        w_x, w_hrz, w_hn = (_mat(m) for m in layers)
        isz = w_x.shape[1] - 1
        ws.append(onnx_order(w_x[:, :isz]))
        rs.append(onnx_order(np.concatenate([w_hrz, w_hn[:, :hs]])))
        rb = np.zeros(3 * hs, np.float32)
        if lbr:  # the candidate's hidden bias stays inside r * (R_h h + Rb_h)
            rb[2 * hs:] = _bias_col(layers[2], w_hn, hs)
        bs.append(np.concatenate([onnx_order(_bias_col(layers[0], w_x, isz)), onnx_order(rb)]))
    inits = [numpy_helper.from_array(np.stack(arr).astype(np.float32), f"{prefix}.{key}")
             for key, arr in (("W", ws), ("R", rs), ("B", bs))]
    ins = list(node.input[:3]) + [""] * (3 - len(node.input[:3]))
    made = _layout0("GRU", node, [ins[0], f"{prefix}.W", f"{prefix}.R", f"{prefix}.B", ins[1], ins[2]], prefix,
                    hidden_size=hs, direction=a["direction"], linear_before_reset=lbr)
    return made, inits


def _post_order(graph):
    for n in graph.node:
        for a in n.attribute:
            for g in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                yield from _post_order(g)
    yield graph


def to_dense(model) -> onnx.ModelProto:
    """The plain-ONNX form of a converted model (path, bytes or ModelProto)."""
    from .session import InferenceSession

    sess = InferenceSession(model)  # decodes and checks every EIE node
    kernels = sess.kernels_by_node()
    proto = sess.model  # the session is ours alone: its model is edited in place
    weights, count = set(), 0
    for g in _post_order(proto.graph):  # bodies first: rewriting a graph copies its nodes (and their bodies)
        out = []
        for n in g.node:
            if not N.is_eie(n):
                out.append(n)
                continue
            count += 1
            made, inits = _dense_nodes(n, kernels[id(n)], f"dense{count}:{n.name}")
            weights.update(n.input[N.DATA_INPUTS.get(n.op_type, 1):])
            out.extend(made)
            g.initializer.extend(inits)
        new = [onnx.NodeProto() for _ in out]
        for a, b in zip(new, out):
            a.CopyFrom(b)
        del g.node[:]
        g.node.extend(new)
    read = {t for g in _all_graphs(proto.graph) for n in g.node for t in n.input}
    for g in _all_graphs(proto.graph):
        remove_initializers(g, [t for t in g.initializer if t.name in weights and t.name not in read])
    initializers_as_inputs(proto)
    keep = [o for o in proto.opset_import if o.domain != N.DOMAIN]
    del proto.opset_import[:]
    proto.opset_import.extend(keep)
    return proto
