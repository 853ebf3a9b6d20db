"""Valid but unusual forms of the compressible ONNX ops, built with onnx.helper.

Each converts losslessly (equal to onnxruntime on the original within 1e-5 relative) and compressed (equal to
onnxruntime on the ``to_dense`` export of the same compressed model within 1e-4), converts to the same bytes
twice, and what EIE cannot represent exactly stays an ONNX node listed with its reason.
"""

import random
import zlib

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="needs the [onnx] extra")
ort = pytest.importorskip("onnxruntime", reason="needs the [onnx] extra")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from eie_runtime.onnx import convert_onnx  # noqa: E402
from eie_runtime.onnx import nodes as N  # noqa: E402
from eie_runtime.onnx.converter import _all_graphs  # noqa: E402
from eie_runtime.onnx.dense import to_dense  # noqa: E402
from eie_runtime.onnx.session import InferenceSession  # noqa: E402

F, D, H = TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16


def _rng(seed=0):
    return np.random.default_rng(seed)


def _ort(model, feeds):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feeds)


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12)) if a.size else 0.0


def model(nodes, inputs, outputs, inits, opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def vi(name, shape, t=F):
    return helper.make_tensor_value_info(name, t, shape)


def w(name, *shape, dtype=np.float32, seed=None):
    r = _rng(zlib.crc32(repr((name, shape, seed)).encode()))  # the same weights in every process
    return numpy_helper.from_array(r.standard_normal(shape).astype(dtype), name)


def x(*shape, seed=1, dtype=np.float32):
    return _rng(seed).standard_normal(shape).astype(dtype)


def eie_ops(proto) -> list:
    return sorted(n.op_type for g in _all_graphs(proto.graph) for n in g.node if n.domain == N.DOMAIN)


def plain_ops(proto) -> list:
    return sorted(n.op_type for g in _all_graphs(proto.graph) for n in g.node if n.domain != N.DOMAIN)


def check(src, feeds, *, reference=None, density=0.3, n_pe=4):
    """Lossless vs onnxruntime on ``reference`` (default: the original), compressed vs its dense export.

    Returns a dict of what the report needs: the converted protos, their rows, the relative differences."""
    ref = _ort(reference if reference is not None else src, feeds)
    lossless, lrows = convert_onnx(src, lossless=True, n_pe=n_pe)
    got = InferenceSession(lossless).run(None, feeds)
    assert len(got) == len(ref)
    lossless_rel = 0.0
    for g, r in zip(got, ref):
        assert g.shape == r.shape and g.dtype == r.dtype
        lossless_rel = max(lossless_rel, rel(g, r))
    assert lossless_rel <= 1e-5
    comp, rows = convert_onnx(src, density=density, n_pe=n_pe)
    again, _ = convert_onnx(src, density=density, n_pe=n_pe)
    assert again.SerializeToString() == comp.SerializeToString()  # deterministic
    dense = _ort(to_dense(comp), feeds)
    comp_rel = 0.0
    for g, r in zip(InferenceSession(comp).run(None, feeds), dense):
        assert g.shape == r.shape and g.dtype == r.dtype
        comp_rel = max(comp_rel, rel(g, r))
    assert comp_rel <= 1e-4
    if not eie_ops(comp):  # nothing converted: the file computes what the original computes
        for g, r in zip(InferenceSession(comp).run(None, feeds), ref):
            assert rel(g, r) <= 1e-6
    return {"lossless": lossless, "comp": comp, "rows": rows, "lossless_rel": lossless_rel, "comp_rel": comp_rel}


def kept_notes(rows) -> list:
    return [r["note"] for r in rows if str(r["note"]).startswith("kept")]


# ----------------------------------------------------------------- Gemm
def gemm_case(attrs, c, *, a_shape=(5, 12), n=7, c_input=False):
    """``Gemm(A, B, C)``: ``c`` the shape of a constant C, or None for none; ``c_input``: C fed at run time."""
    k = a_shape[0] if attrs.get("transA") else a_shape[1]
    m_rows = a_shape[1] if attrs.get("transA") else a_shape[0]
    b = w("B", *((n, k) if attrs.get("transB") else (k, n)))
    inits, ins, inputs = [b], ["A", "B"], [vi("A", list(a_shape))]
    feeds = {"A": x(*a_shape)}
    if c_input:
        ins.append("C")
        inputs.append(vi("C", list(c)))
        feeds["C"] = x(*c, seed=5)
    elif c is not None:
        inits.append(w("C", *c))
        ins.append("C")
    node = helper.make_node("Gemm", ins, ["Y"], name="gemm", **attrs)
    return model([node], inputs, [vi("Y", [m_rows, n])], inits), feeds


GEMMS = {
    "transA_alpha_beta_C(N,)": ({"transA": 1, "alpha": 0.7, "beta": 1.3}, (7,)),
    "B_not_transposed_C(1,N)": ({"alpha": 1.5, "beta": -0.25}, (1, 7)),
    "transB_C_scalar": ({"transB": 1, "beta": 2.0}, ()),
    "transB_C(1,)": ({"transB": 1, "beta": 0.5}, (1,)),
    "C_absent_alpha": ({"transB": 1, "alpha": -2.0}, None),
    "transA_transB_C(1,1)": ({"transA": 1, "transB": 1, "beta": 3.0}, (1, 1)),
    "C_full_(M,N)": ({"transB": 1, "beta": 0.5}, (5, 7)),
    "C_column_(M,1)": ({"beta": 0.5}, (5, 1)),
}


@pytest.mark.parametrize("case", sorted(GEMMS))
def test_gemm_variants(case):
    attrs, c = GEMMS[case]
    m, feeds = gemm_case(attrs, c)
    r = check(m, feeds)
    assert eie_ops(r["comp"]) == ["EIELinear"] and not kept_notes(r["rows"])


def test_gemm_with_run_time_c_and_beta():
    m, feeds = gemm_case({"transB": 1, "beta": 0.25}, (5, 7), c_input=True)
    r = check(m, feeds)
    assert eie_ops(r["comp"]) == ["EIELinear"] and "Add" in plain_ops(r["comp"])


def test_gemm_relu_folded_with_trans_a():
    m, feeds = gemm_case({"transA": 1, "transB": 1, "alpha": 0.5}, (7,))
    m.graph.node[0].output[0] = "g"
    m.graph.node.append(helper.make_node("Relu", ["g"], ["Y"], name="relu"))
    r = check(m, feeds)
    assert eie_ops(r["comp"]) == ["EIELinear"] and "Relu" not in plain_ops(r["comp"])


# ----------------------------------------------------------------- MatMul
def _mm(nodes, x_shape, out_shape, inits, extra_inputs=(), feeds_extra=None, x_dtype=F):
    inputs = [vi("X", list(x_shape), x_dtype)] + list(extra_inputs)
    feeds = {"X": x(*x_shape, dtype=helper.tensor_dtype_to_np_dtype(x_dtype))}
    feeds.update(feeds_extra or {})
    return model(nodes, inputs, [vi("Y", out_shape, x_dtype)], inits), feeds


def matmul_cases():
    mm = helper.make_node
    c = {}
    c["weight_first_W@x_2d"] = _mm([mm("MatMul", ["W", "X"], ["Y"], name="mm")], (10, 3), [6, 3], [w("W", 6, 10)])
    c["weight_first_W@x_3d"] = _mm([mm("MatMul", ["W", "X"], ["Y"], name="mm")], (2, 10, 3), [2, 6, 3],
                                   [w("W", 6, 10)])
    c["weight_first_W@x_1d"] = _mm([mm("MatMul", ["W", "X"], ["Y"], name="mm")], (10,), [6], [w("W", 6, 10)])
    c["weight_first_W@x_column_bias_(M,1)"] = _mm([mm("MatMul", ["W", "X"], ["t"], name="mm"),
                                                   mm("Add", ["b", "t"], ["Y"], name="add")], (2, 10, 3), [2, 6, 3],
                                                  [w("W", 6, 10), w("b", 6, 1)])
    c["weight_first_W@x_row_bias_(1,M)_stays"] = _mm([mm("MatMul", ["W", "X"], ["t"], name="mm"),
                                                      mm("Add", ["t", "b"], ["Y"], name="add")], (10, 6), [6, 6],
                                                     [w("W", 6, 10), w("b", 1, 6)])
    c["x_1d@W"] = _mm([mm("MatMul", ["X", "W"], ["Y"], name="mm")], (10,), [6], [w("W", 10, 6)])
    c["3d@W_bias_first_in_add"] = _mm([mm("MatMul", ["X", "W"], ["t"], name="mm"),
                                       mm("Add", ["b", "t"], ["Y"], name="add")], (2, 5, 10), [2, 5, 6],
                                      [w("W", 10, 6), w("b", 6)])
    c["4d@W_bias_(1,1,N)"] = _mm([mm("MatMul", ["X", "W"], ["t"], name="mm"),
                                  mm("Add", ["t", "b"], ["Y"], name="add")], (2, 3, 4, 10), [2, 3, 4, 6],
                                 [w("W", 10, 6), w("b", 1, 1, 6)])
    c["2d@W_bias_(3,1,N)_broadcasts_up"] = _mm([mm("MatMul", ["X", "W"], ["t"], name="mm"),
                                                mm("Add", ["t", "b"], ["Y"], name="add")], (4, 10), [3, 4, 6],
                                               [w("W", 10, 6), w("b", 3, 1, 6)])
    c["bias_(1,)_scalar_like"] = _mm([mm("MatMul", ["X", "W"], ["t"], name="mm"),
                                      mm("Add", ["t", "b"], ["Y"], name="add")], (4, 10), [4, 6],
                                     [w("W", 10, 6), w("b", 1)])
    c["bias_(M,N)_full"] = _mm([mm("MatMul", ["X", "W"], ["t"], name="mm"),
                                mm("Add", ["t", "b"], ["Y"], name="add")], (4, 10), [4, 6],
                               [w("W", 10, 6), w("b", 4, 6)])
    c["add_of_run_time_value"] = _mm([mm("MatMul", ["X", "W"], ["t"], name="mm"),
                                      mm("Add", ["t", "R"], ["Y"], name="add")], (4, 10), [4, 6],
                                     [w("W", 10, 6)], [vi("R", [6])], {"R": x(6, seed=9)})
    c["add_relu_folded"] = _mm([mm("MatMul", ["X", "W"], ["t"], name="mm"), mm("Add", ["t", "b"], ["u"], name="add"),
                                mm("Relu", ["u"], ["Y"], name="relu")], (4, 10), [4, 6], [w("W", 10, 6), w("b", 6)])
    c["matmul_output_read_twice"] = _mm([mm("MatMul", ["X", "W"], ["t"], name="mm"),
                                         mm("Add", ["t", "b"], ["u"], name="add"),
                                         mm("Mul", ["u", "t"], ["Y"], name="mul")], (4, 10), [4, 6],
                                        [w("W", 10, 6), w("b", 6)])
    c["float16_weight_cast"] = _mm([mm("Cast", ["Wh"], ["W"], name="cast", to=F),
                                    mm("MatMul", ["X", "W"], ["Y"], name="mm")], (4, 10), [4, 6],
                                   [w("Wh", 10, 6, dtype=np.float16)])
    c["float64_weight_cast"] = _mm([mm("Cast", ["Wd"], ["W"], name="cast", to=F),
                                    mm("MatMul", ["X", "W"], ["Y"], name="mm")], (4, 10), [4, 6],
                                   [w("Wd", 10, 6, dtype=np.float64)])
    c["float16_bias_cast"] = _mm([mm("MatMul", ["X", "W"], ["t"], name="mm"),
                                  mm("Cast", ["bh"], ["b"], name="cast", to=F), mm("Add", ["t", "b"], ["Y"], name="add")],
                                 (4, 10), [4, 6], [w("W", 10, 6), w("bh", 6, dtype=np.float16)])
    c["transposed_constant_weight"] = _mm(
        [mm("Constant", [], ["Wt"], name="const", value=w("Wt", 6, 10)),
         mm("Transpose", ["Wt"], ["W"], name="tr", perm=[1, 0]), mm("MatMul", ["X", "W"], ["Y"], name="mm")],
        (2, 4, 10), [2, 4, 6], [])
    c["unnamed_nodes"] = _mm([mm("MatMul", ["X", "W"], ["t"]), mm("Add", ["t", "b"], ["Y"])], (4, 10), [4, 6],
                             [w("W", 10, 6), w("b", 6)])
    c["weight_shared_by_two_matmuls"] = _mm([mm("MatMul", ["X", "W"], ["t"], name="mm1"),
                                             mm("MatMul", ["X", "W"], ["u"], name="mm2"),
                                             mm("Sub", ["t", "u"], ["Y"], name="sub")], (4, 10), [4, 6],
                                            [w("W", 10, 6)])
    c["3d@W_(1,K,N)"] = _mm([mm("MatMul", ["X", "W"], ["Y"], name="mm")], (2, 4, 10), [2, 4, 6], [w("W", 1, 10, 6)])
    c["2d@W_(1,K,N)_broadcasts_up"] = _mm([mm("MatMul", ["X", "W"], ["Y"], name="mm")], (4, 10), [1, 4, 6],
                                          [w("W", 1, 10, 6)])
    c["K1_N1"] = _mm([mm("MatMul", ["X", "W"], ["Y"], name="mm")], (4, 1), [4, 1], [w("W", 1, 1)])
    return c


MATMULS = matmul_cases()
#: what each case converts to (the EIE ops) and which plain ops must remain
MATMUL_EXPECT = {
    "weight_first_W@x_2d": (["EIELinear"], None),
    "weight_first_W@x_3d": (["EIELinear"], None),
    "weight_first_W@x_1d": (["EIELinear"], None),
    "weight_first_W@x_column_bias_(M,1)": (["EIELinear"], ["Transpose", "Transpose"]),
    "weight_first_W@x_row_bias_(1,M)_stays": (["EIELinear"], ["Add", "Transpose", "Transpose"]),
    "x_1d@W": (["EIELinear"], []),
    "3d@W_bias_first_in_add": (["EIELinear"], []),
    "4d@W_bias_(1,1,N)": (["EIELinear"], []),
    "2d@W_bias_(3,1,N)_broadcasts_up": (["EIELinear"], ["Add"]),
    "bias_(M,N)_full": (["EIELinear"], ["Add"]),
    "bias_(1,)_scalar_like": (["EIELinear"], []),
    "add_of_run_time_value": (["EIELinear"], ["Add"]),
    "add_relu_folded": (["EIELinear"], []),
    "matmul_output_read_twice": (["EIELinear"], ["Add", "Mul"]),
    "float16_weight_cast": (["EIELinear"], []),
    "float16_bias_cast": (["EIELinear"], []),
    "float64_weight_cast": (["EIELinear"], []),
    "transposed_constant_weight": (["EIELinear"], []),
    "unnamed_nodes": (["EIELinear"], []),
    "weight_shared_by_two_matmuls": (["EIELinear", "EIELinear"], ["Sub"]),
    "K1_N1": (["EIELinear"], []),
    "3d@W_(1,K,N)": (["EIELinear"], []),
    "2d@W_(1,K,N)_broadcasts_up": ([], ["MatMul"]),
}


@pytest.mark.parametrize("case", sorted(MATMULS))
def test_matmul_variants(case):
    m, feeds = MATMULS[case]
    r = check(m, feeds)
    want_eie, want_plain = MATMUL_EXPECT[case]
    assert eie_ops(r["comp"]) == want_eie
    if want_plain is not None:
        assert plain_ops(r["comp"]) == want_plain


@pytest.mark.parametrize("dtype", [D, H])
def test_matmul_in_other_float_types_is_kept_with_its_reason(dtype):
    np_t = helper.tensor_dtype_to_np_dtype(dtype)
    m, feeds = _mm([helper.make_node("MatMul", ["X", "W"], ["Y"], name="mm")], (4, 10), [4, 6],
                   [w("W", 10, 6, dtype=np_t)], x_dtype=dtype)
    r = check(m, feeds)
    assert eie_ops(r["comp"]) == [] and str(np.dtype(np_t)) in kept_notes(r["rows"])[0]


def _random_matmul_case(rnd, it):
    """x @ W or W @ x of random ranks and sizes, maybe + a broadcast bias (either side), maybe + Relu."""
    mm = helper.make_node
    k, n, xr = rnd.choice([1, 3, 8]), rnd.choice([1, 2, 5]), rnd.choice([1, 2, 3, 4])
    lead = [rnd.choice([1, 2, 3]) for _ in range(xr - 1)]
    if rnd.random() < 0.3:  # W @ x
        xs = lead[:-1] + [k, lead[-1]] if xr >= 2 else [k]
        nodes, inits = [mm("MatMul", ["W", "X"], ["t"], name="mm")], [w("W", n, k, seed=it)]
        out = np.broadcast_shapes(xs[:-2], ()) + ((n, xs[-1]) if xr >= 2 else (n,))
    else:
        xs = lead + [k]
        nodes, inits = [mm("MatMul", ["X", "W"], ["t"], name="mm")], [w("W", k, n, seed=it)]
        out = tuple(lead) + (n,)
    last = "t"
    if rnd.random() < 0.6:
        bias = [1] * rnd.choice([0, 1, 2, 3, 4])
        if bias:
            bias[-1] = rnd.choice([1, out[-1]])
        out = np.broadcast_shapes(out, tuple(bias))
        inits.append(w("b", *bias, seed=it))
        nodes.append(mm("Add", ["t", "b"] if rnd.random() < 0.5 else ["b", "t"], ["u"], name="add"))
        last = "u"
    nodes.append(mm("Relu" if rnd.random() < 0.3 else "Identity", [last], ["Y"], name="last"))
    return model(nodes, [vi("X", xs)], [vi("Y", list(out))], inits), {"X": x(*xs, seed=it)}


def test_random_matmul_forms():
    """A seeded sweep over MatMul forms: each converts its layer and equals onnxruntime as check() requires."""
    rnd = random.Random(0)
    for it in range(25):
        m, feeds = _random_matmul_case(rnd, it)
        r = check(m, feeds, density=0.5, n_pe=2)
        assert eie_ops(r["comp"]) == ["EIELinear"], it


# ----------------------------------------------------------------- LSTM and GRU
T, B, I, HS = 5, 3, 6, 4


def rnn_case(op, *, direction="forward", outputs=("Y", "Y_h", "Y_c"), lens=None, h0=False, c0=False,
             bias=True, peep=None, layout=0, **attrs):
    """An ONNX ``LSTM``/``GRU`` node over constant weights with the optional inputs asked for."""
    nd, g = (2 if direction == "bidirectional" else 1), (4 if op == "LSTM" else 3)
    outputs = list(outputs)[:3 if op == "LSTM" else 2]
    seq = [B, T, I] if layout else [T, B, I]
    state = [B, nd, HS] if layout else [nd, B, HS]
    inits = [w("W", nd, g * HS, I), w("R", nd, g * HS, HS)]
    ins = ["X", "W", "R", "B" if bias else ""]
    if bias:
        inits.append(w("B", nd, 2 * g * HS))
    inputs, feeds = [vi("X", seq)], {"X": x(*seq)}
    for flag, nm, arr in ((lens is not None, "lens", lens), (h0, "h0", None), (c0 and op == "LSTM", "c0", None)):
        ins.append(nm if flag else "")
        if flag:
            if nm == "lens":
                inputs.append(vi(nm, [B], TensorProto.INT32))
                feeds[nm] = np.asarray(arr, np.int32)
            else:
                inputs.append(vi(nm, state))
                feeds[nm] = x(*state, seed=len(feeds) + 3)
    if op == "LSTM" and peep is not None:
        ins.append("P")
        inits.append(numpy_helper.from_array(peep(nd), "P"))
    while ins and not ins[-1]:
        ins.pop()
    y_shape = [B, T, nd, HS] if layout else [T, nd, B, HS]
    shapes = {"Y": y_shape, "Y_h": state, "Y_c": state}
    outs = [vi(o, shapes[o]) for o in outputs if o]
    node = helper.make_node(op, ins, outputs, name=op.lower(), hidden_size=HS, direction=direction,
                            layout=layout, **attrs)
    return model([node], inputs, outs, inits), feeds


def _as_layout0(m):
    """The same recurrent model with layout 0 and Transposes around (onnxruntime runs no layout=1 node)."""
    ref = onnx.ModelProto()
    ref.CopyFrom(m)
    node = ref.graph.node[0]
    for a in node.attribute:
        if a.name == "layout":
            a.i = 0
    pre, post = [], []
    for k in (0, 5, 6):  # X, initial_h, initial_c: batch-major -> time/direction-major
        if k < len(node.input) and node.input[k]:
            pre.append(helper.make_node("Transpose", [node.input[k]], [node.input[k] + "_l0"], perm=[1, 0, 2]))
            node.input[k] += "_l0"
    for k, o in enumerate(node.output):
        if o:
            post.append(helper.make_node("Transpose", [o + "_l0"], [o], perm=[2, 0, 1, 3] if k == 0 else [1, 0, 2]))
            node.output[k] = o + "_l0"
    nodes = pre + [node] + post
    del ref.graph.node[:]
    ref.graph.node.extend(nodes)
    return ref


def _peep_zero(nd):
    return np.zeros((nd, 3 * HS), np.float32)


def _peep(nd):
    return _rng(7).standard_normal((nd, 3 * HS)).astype(np.float32)


LSTMS = {  # case: (kwargs, converted?)
    "forward_defaults": ({}, True),
    "bidirectional_lens_h0_c0": ({"direction": "bidirectional", "lens": [5, 2, 3], "h0": True, "c0": True}, True),
    "reverse_lens_with_zero": ({"direction": "reverse", "lens": [0, 5, 1]}, True),
    "only_Y_h": ({"outputs": ("", "Y_h")}, True),
    "only_Y_c_bidirectional": ({"outputs": ("", "", "Y_c"), "direction": "bidirectional"}, True),
    "h0_without_c0": ({"h0": True}, True),
    "no_bias": ({"bias": False, "lens": [1, 5, 4]}, True),
    "zero_peepholes": ({"peep": _peep_zero}, True),
    "explicit_default_activations": ({"direction": "bidirectional",
                                      "activations": ["Sigmoid", "Tanh", "Tanh"] * 2}, True),
    "layout1_bidirectional_states": ({"layout": 1, "direction": "bidirectional", "lens": [5, 3, 1],
                                      "h0": True, "c0": True}, True),
    "peepholes": ({"peep": _peep}, False),
    "clip": ({"clip": 0.5}, False),
    "input_forget": ({"input_forget": 1}, False),
    "other_activations": ({"activations": ["HardSigmoid", "Tanh", "Relu"]}, False),
    "default_activations_with_alpha": ({"activations": ["Sigmoid", "Tanh", "Tanh"],
                                        "activation_alpha": [0.5, 2.0, 3.0]}, True),  # Sigmoid/Tanh ignore alpha
}


GRUS = {
    "forward_lbr0": ({"linear_before_reset": 0}, True),
    "forward_lbr1_h0": ({"linear_before_reset": 1, "h0": True}, True),
    "bidirectional_lbr1_lens_h0": ({"linear_before_reset": 1, "direction": "bidirectional", "lens": [5, 1, 3],
                                    "h0": True}, True),
    "bidirectional_lbr0_lens_with_zero": ({"direction": "bidirectional", "lens": [0, 4, 5]}, True),
    "reverse_no_bias": ({"direction": "reverse", "bias": False}, True),
    "only_Y_h": ({"outputs": ("", "Y_h"), "linear_before_reset": 1}, True),
    "explicit_default_activations": ({"direction": "bidirectional", "activations": ["Sigmoid", "Tanh"] * 2}, True),
    "layout1_bidirectional": ({"layout": 1, "direction": "bidirectional", "lens": [2, 5, 3], "h0": True}, True),
    "other_activations": ({"activations": ["HardSigmoid", "Relu"]}, False),
    "clip": ({"clip": 0.5}, False),
}


@pytest.mark.parametrize("op, case", [("LSTM", c) for c in sorted(LSTMS)] + [("GRU", c) for c in sorted(GRUS)])
def test_recurrent_variants(op, case):
    kw, converted = (LSTMS if op == "LSTM" else GRUS)[case]
    m, feeds = rnn_case(op, **kw)
    r = check(m, feeds, reference=_as_layout0(m) if kw.get("layout") else None, density=0.5)
    assert eie_ops(r["comp"]) == ([f"EIE{op}"] if converted else [])
    assert bool(kept_notes(r["rows"])) == (not converted)


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_zero_length_sequence_with_initial_state(op):  # onnxruntime gives zero Y_h/Y_c to an empty sequence
    m, feeds = rnn_case(op, direction="bidirectional", lens=[0, 5, 2], h0=True, c0=True)
    check(m, feeds, density=0.5)


def _all_cases():
    for k in sorted(GEMMS):
        yield ("Gemm " + k, *gemm_case(*GEMMS[k]), None, 0.3)
    for k in sorted(MATMULS):
        yield ("MatMul " + k, *MATMULS[k], None, 0.3)
    for op, table in (("LSTM", LSTMS), ("GRU", GRUS)):
        for k in sorted(table):
            kw = table[k][0]
            m, feeds = rnn_case(op, **kw)
            yield (f"{op} {k}", m, feeds, _as_layout0(m) if kw.get("layout") else None, 0.5)
    from test_onnx_variants_graphs import _loose_graphs

    for k, m in _loose_graphs().items():
        yield ("graph " + k, m, {"X": x(4, 10)}, None, 0.3)


def report(cases=None) -> None:
    """Print one row per case: EIE nodes, nodes kept and why, the differences, the file sizes."""
    print("| case | EIE nodes | kept (why) | lossless vs original | compressed vs dense export | bytes: original "
          "/ lossless / compressed |")
    print("|---|---|---|---|---|---|")
    for name, m, feeds, reference, density in cases or _all_cases():
        r = check(m, feeds, reference=reference, density=density)
        kept = "; ".join(f"{row['node']}: {row['note'][6:]}" for row in r["rows"] if str(row["note"]).startswith("kept"))
        sizes = [len(p.SerializeToString()) for p in (m, r["lossless"], r["comp"])]
        print(f"| {name} | {', '.join(eie_ops(r['comp'])) or '-'} | {kept or '-'} | {r['lossless_rel']:.1e} "
              f"| {r['comp_rel']:.1e} | {' / '.join(map(str, sizes))} |")


if __name__ == "__main__":  # python tests/test_onnx_variants.py: the table of every case
    report()
