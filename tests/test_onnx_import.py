"""ONNX import, executor, .eie round trip, dense export vs onnxruntime, torch front-end agreement."""

import io
import subprocess
import sys
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="needs the [onnx] extra")
ort = pytest.importorskip("onnxruntime", reason="needs the [onnx] extra")
torch = pytest.importorskip("torch", reason="needs the [torch] extra")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import eie_runtime as eie  # noqa: E402
import eie_runtime.onnx as eonnx  # noqa: E402
from eie_runtime.errors import EIEError, EIEFormatError, EIEInputError  # noqa: E402

REL = 1e-4


def torch_onnx(module, args, dynamic_batch=True, batch_axis=0, **kw) -> bytes:
    """Export with torch's TorchScript exporter (the dynamo one needs onnxscript, not installed)."""
    f = io.BytesIO()
    n_in = len(args)
    names = [f"x{i}" for i in range(n_in)] if n_in > 1 else ["x"]
    axes = {n: {batch_axis: "batch"} for n in names} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), tuple(args), f, dynamo=False, input_names=names, dynamic_axes=axes, **kw)
    return f.getvalue()


def ort_run(proto, feeds: dict) -> list:
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def mlp(sizes, seed=0):
    torch.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers).eval()


class LSTMNet(torch.nn.Module):
    def __init__(self, i, h, layers, bidirectional, out, batch_first=False, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.lstm = torch.nn.LSTM(i, h, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first)
        self.fc = torch.nn.Linear(h * (2 if bidirectional else 1), out)

    def forward(self, x):
        y, _ = self.lstm(x)
        return torch.softmax(self.fc(y), dim=-1)


# ------------------------------------------------- compressed vs onnxruntime
@pytest.mark.parametrize("sizes,batch,density,bits,n_pe", [
    ((64, 128, 32, 10), 5, 0.1, 4, 8),
    ((300, 97, 41), 3, 0.25, 3, 64),
    ((17, 256, 256, 256, 7), 1, 0.05, 4, 16),
])
def test_mlp_matches_onnxruntime_on_exported_dense(sizes, batch, density, bits, n_pe, tmp_path):
    x = np.random.default_rng(1).standard_normal((batch, sizes[0])).astype(np.float32)
    src = torch_onnx(mlp(sizes), [torch.from_numpy(x)])
    model = eonnx.convert(src, density=density, bits=bits, n_pe=n_pe)
    assert len(model.layers) == len(sizes) - 1
    for layer, (k, m) in zip(model.layers, zip(sizes[:-1], sizes[1:])):
        assert layer.shape == (m, k) and layer.matrix.n_pe == n_pe and layer.matrix.bits == bits
        assert layer.matrix.nnz <= round(density * m * k)
    y = model(x)
    proto = eonnx.export(model, tmp_path / "dense.onnx")
    ref = ort_run(onnx.load(tmp_path / "dense.onnx"), {"x": x})[0]
    assert rel_err(y, ref) < REL
    # the compressed model is not the original: pruning changed the outputs
    assert rel_err(y, mlp(sizes)(torch.from_numpy(x)).detach().numpy()) > 1e-3
    assert len(proto.graph.initializer) >= len(sizes) - 1


@pytest.mark.parametrize("hidden,layers,bidir,batch_first", [(16, 1, False, False), (24, 2, True, False),
                                                              (8, 2, False, True)])
def test_lstm_matches_onnxruntime_on_exported_dense(hidden, layers, bidir, batch_first):
    net = LSTMNet(12, hidden, layers, bidir, 6, batch_first=batch_first)
    x = np.random.default_rng(2).standard_normal((3, 5, 12) if batch_first else (7, 3, 12)).astype(np.float32)
    src = torch_onnx(net, [torch.from_numpy(x)], batch_axis=0 if batch_first else 1)
    model = eonnx.convert(src, density=0.3, bits=4, n_pe=8)
    assert sum(n.op == "LSTM" for n in model.nodes) == layers
    y = model(x)
    ref = ort_run(eonnx.export(model), {"x": x})[0]
    assert y.shape == ref.shape
    assert rel_err(y, ref) < REL


def _lstm_model(t, b, i, h, direction, layout, with_lens, with_states, seed=3):
    """An ONNX LSTM node built by hand: every optional input, layout 0/1."""
    rng = np.random.default_rng(seed)
    nd = 2 if direction == "bidirectional" else 1
    w = rng.standard_normal((nd, 4 * h, i)).astype(np.float32) * 0.4
    r = rng.standard_normal((nd, 4 * h, h)).astype(np.float32) * 0.4
    bias = rng.standard_normal((nd, 8 * h)).astype(np.float32) * 0.2
    xs = (t, b, i) if layout == 0 else (b, t, i)
    ss = (nd, b, h) if layout == 0 else (b, nd, h)
    inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, list(xs))]
    names = ["X", "W", "R", "B", "", "", ""]
    feeds = {"X": rng.standard_normal(xs).astype(np.float32)}
    if with_lens:
        names[4] = "lens"
        inputs.append(helper.make_tensor_value_info("lens", TensorProto.INT32, [b]))
        feeds["lens"] = rng.integers(1, t + 1, size=b).astype(np.int32)
    if with_states:
        names[5], names[6] = "h0", "c0"
        for n in ("h0", "c0"):
            inputs.append(helper.make_tensor_value_info(n, TensorProto.FLOAT, list(ss)))
            feeds[n] = rng.standard_normal(ss).astype(np.float32) * 0.5
    node = helper.make_node("LSTM", names, ["Y", "Y_h", "Y_c"], name="lstm", hidden_size=h, direction=direction,
                            layout=layout)
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None] * r)
                                                    for n, r in (("Y", 4), ("Y_h", 3), ("Y_c", 3))],
                              initializer=[numpy_helper.from_array(a, n) for a, n in ((w, "W"), (r, "R"), (bias, "B"))])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=8), feeds


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("layout", [0, 1])
def test_onnx_lstm_node_every_option(direction, layout):
    proto, feeds = _lstm_model(6, 4, 5, 7, direction, layout, with_lens=True, with_states=True)
    lossless = eonnx.convert(proto, lossless=True)
    # onnxruntime refuses layout=1: the reference runs the layout-0 twin (same weights) on transposed data
    proto0, _ = _lstm_model(6, 4, 5, 7, direction, 0, with_lens=True, with_states=True)
    swap = (lambda a: a.transpose(1, 0, 2)) if layout else (lambda a: a)
    refs = ort_run(proto0, {k: v if k == "lens" else swap(v) for k, v in feeds.items()})
    refs = [refs[0].transpose(2, 0, 1, 3) if layout else refs[0], swap(refs[1]), swap(refs[2])]
    for got, ref in zip(lossless.run(feeds).values(), refs):
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    model = eonnx.convert(proto, density=0.4, bits=4, n_pe=4)
    for got, ref in zip(model.run(feeds).values(), ort_run(eonnx.export(model), feeds)):
        assert rel_err(got, ref) < REL


@pytest.mark.parametrize("attrs,c_shape", [
    ({}, (6,)), ({"transA": 1}, (6,)), ({"transB": 1}, (1, 6)), ({"alpha": 0.5, "beta": 2.0}, ()),
    ({"alpha": 2.0, "beta": 0.25, "transA": 1, "transB": 1}, (3, 6)), ({}, None)])
def test_gemm_attributes(attrs, c_shape):
    rng = np.random.default_rng(4)
    a_shape = (9, 3) if attrs.get("transA") else (3, 9)
    b = rng.standard_normal((6, 9) if attrs.get("transB") else (9, 6)).astype(np.float32)
    inits = [numpy_helper.from_array(b, "B")]
    ins = ["A", "B"]
    if c_shape is not None:
        inits.append(numpy_helper.from_array(rng.standard_normal(c_shape).astype(np.float32), "C"))
        ins.append("C")
    graph = helper.make_graph([helper.make_node("Gemm", ins, ["Y"], name="gemm", **attrs)], "g",
                              [helper.make_tensor_value_info("A", TensorProto.FLOAT, list(a_shape))],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [3, 6])], initializer=inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    x = rng.standard_normal(a_shape).astype(np.float32)
    np.testing.assert_allclose(eonnx.convert(proto, lossless=True)(x), ort_run(proto, {"A": x})[0], rtol=1e-5, atol=1e-6)
    model = eonnx.convert(proto, density=0.5, bits=2, n_pe=2)
    assert rel_err(model(x), ort_run(eonnx.export(model), {"A": x})[0]) < REL


def test_matmul_add_bias_folded_on_3d_input():
    lin = torch.nn.Linear(10, 4)
    x = np.random.default_rng(5).standard_normal((2, 3, 10)).astype(np.float32)
    model = eonnx.convert(torch_onnx(lin, [torch.from_numpy(x)], dynamic_batch=False), density=0.5, n_pe=4)
    assert [n.op for n in model.nodes] == ["Linear"] and model.layers[0].bias is not None
    assert model(x).shape == (2, 3, 4)
    assert rel_err(model(x), ort_run(eonnx.export(model), {"x": x})[0]) < REL


def test_layer_overrides_by_node_name():
    src = torch_onnx(mlp((32, 64, 8)), [torch.zeros(1, 32)])
    model = eonnx.convert(src, density=0.1, n_pe=4, layer_overrides={"/2/Gemm": {"density": 0.5, "bits": 2}})
    assert model.layers[0].matrix.nnz == round(0.1 * 64 * 32)
    assert model.layers[1].matrix.nnz <= round(0.5 * 8 * 64) and model.layers[1].matrix.bits == 2
    with pytest.raises(EIEInputError, match="/9/Gemm"):
        eonnx.convert(src, layer_overrides={"/9/Gemm": 0.2})


# ------------------------------------------------------- file, no torch/onnx
def test_save_load_runs_without_torch_or_onnx(tmp_path):
    net = LSTMNet(6, 8, 1, True, 3)
    x = np.random.default_rng(6).standard_normal((4, 2, 6)).astype(np.float32)
    model = eonnx.convert(torch_onnx(net, [torch.from_numpy(x)], batch_axis=1), density=0.3, n_pe=4)
    path = tmp_path / "m.eie"
    eie.save(model, path)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", model(x))
    code = f"""
import sys, numpy as np, eie_runtime as eie
m = eie.load({str(path)!r})
y = m(np.load({str(tmp_path / 'x.npy')!r}))
assert np.array_equal(y, np.load({str(tmp_path / 'y.npy')!r})), "outputs changed after reload"
bad = [k for k in ("torch", "onnx", "onnxruntime") if k in sys.modules]
assert not bad, bad
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


def test_corrupt_graph_header_is_refused(tmp_path):
    from eie_runtime.model_file import read_model_file, write_model_file

    model = eonnx.convert(torch_onnx(mlp((8, 4)), [torch.zeros(1, 8)]), density=0.5, n_pe=2)
    eie.save(model, tmp_path / "m.eie")
    mf = read_model_file(tmp_path / "m.eie")
    cases = {"unknown op": ("op", "Softmaxx"), "bad layer index": ("attrs", {"layer": 7}),
             "undefined input": ("inputs", ["nowhere"])}
    for what, (key, value) in cases.items():
        meta = {**mf.meta, "graph": {**mf.meta["graph"], "nodes": [dict(mf.meta["graph"]["nodes"][0], **{key: value})]}}
        write_model_file(tmp_path / "bad.eie", mf.layers, kind="graph", meta=meta, extra=mf.extra)
        with pytest.raises(EIEFormatError):
            eie.load(tmp_path / "bad.eie")


# ---------------------------------------------------------- torch front end
def test_mlp_same_as_torch_front_end():
    import eie_runtime.torch as et

    net = mlp((48, 96, 64, 10), seed=7)
    x = np.random.default_rng(7).standard_normal((6, 48)).astype(np.float32)
    settings = dict(density=0.15, bits=4, n_pe=8, seed=0)
    graph = eonnx.convert(torch_onnx(net, [torch.from_numpy(x)]), **settings)
    small = et.compress(net, **settings)
    assert len(graph.layers) == 3
    np.testing.assert_array_equal(graph(x), small(torch.from_numpy(x)).detach().numpy())


def test_lstm_same_as_torch_front_end():
    import eie_runtime.torch as et

    net = LSTMNet(10, 12, 2, True, 5, seed=8)
    x = np.random.default_rng(8).standard_normal((5, 3, 10)).astype(np.float32)
    settings = dict(density=0.2, bits=4, n_pe=8, seed=0)
    graph = eonnx.convert(torch_onnx(net, [torch.from_numpy(x)], batch_axis=1), **settings)
    small = et.compress(net, **settings)
    torch_layers = [layer for m in et.eie_modules(small).values() for layer in m.eie_layers()]
    assert len(torch_layers) == len(graph.layers) == 5  # 2 layers x 2 directions + fc
    for a, b in zip(torch_layers, graph.layers):  # bit-identical compressed matrices
        for field in ("entries", "ptr", "codebook"):
            np.testing.assert_array_equal(getattr(a.matrix, field), getattr(b.matrix, field))
        np.testing.assert_array_equal(a.bias if a.bias is not None else [], b.bias if b.bias is not None else [])
    # outputs: same math, float32 summation order of softmax/reversal may differ in the last ulp
    np.testing.assert_allclose(graph(x), small(torch.from_numpy(x)).detach().numpy(), rtol=1e-6, atol=1e-7)


# ----------------------------------------------------------------- bad input
def _tiny_gemm(opset=13, weight_init=True):
    inits = [numpy_helper.from_array(np.ones((4, 3), np.float32), "W")] if weight_init else []
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])]
    if not weight_init:
        inputs.append(helper.make_tensor_value_info("W", TensorProto.FLOAT, [4, 3]))
    graph = helper.make_graph([helper.make_node("Gemm", ["x", "W"], ["y"], name="fc")], "g", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def test_bad_files(tmp_path):
    (tmp_path / "text.onnx").write_text("this is not a model\n" * 10)
    with pytest.raises(EIEFormatError, match="not an ONNX model"):
        eonnx.convert(tmp_path / "text.onnx")
    data = _tiny_gemm().SerializeToString()
    for cut in (len(data) // 2, len(data) - 3, 5):
        with pytest.raises(EIEFormatError, match="ONNX model"):
            eonnx.convert(data[:cut])
    with pytest.raises(FileNotFoundError):
        eonnx.convert(tmp_path / "missing.onnx")


def test_opset_range():
    with pytest.raises(EIEFormatError, match="opset 6 is too old"):
        eonnx.convert(_tiny_gemm(opset=6))
    with pytest.raises(EIEFormatError, match="opset 99 is too new"):
        eonnx.convert(_tiny_gemm(opset=99))


def test_dynamic_weight_is_refused_naming_node_and_input():
    with pytest.raises(EIEInputError, match=r"node 'fc' \(Gemm\): input 'W'"):
        eonnx.convert(_tiny_gemm(weight_init=False))


def test_feature_mismatch_is_refused_at_conversion():
    proto = _tiny_gemm()
    proto.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 5  # x (n, 5) against W (4, 3)
    with pytest.raises(EIEError, match="fc"):
        eonnx.convert(proto)


def test_unsupported_ops_are_listed_with_node_names():
    graph = helper.make_graph([helper.make_node("Exp", ["x"], ["a"], name="e1"), helper.make_node("Exp", ["a"], ["b"], name="e2"),
                               helper.make_node("Conv", ["b", "w"], ["y"], name="conv")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4]),
                               helper.make_tensor_value_info("w", TensorProto.FLOAT, [1, 1, 1, 1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * 4)])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    with pytest.raises(EIEFormatError, match=r"Conv \('conv'\); Exp \('e1', 'e2'\)"):
        eonnx.convert(proto)


def test_lstm_refusals_by_name():
    proto, _ = _lstm_model(3, 2, 4, 5, "forward", 0, False, False)
    clip = onnx.ModelProto()
    clip.CopyFrom(proto)
    clip.graph.node[0].attribute.append(helper.make_attribute("clip", 3.0))
    with pytest.raises(EIEInputError, match="'clip'"):
        eonnx.convert(clip)
    peep = onnx.ModelProto()
    peep.CopyFrom(proto)
    peep.graph.initializer.append(numpy_helper.from_array(np.ones((1, 15), np.float32), "P"))
    peep.graph.node[0].input.extend(["P"])
    with pytest.raises(EIEInputError, match="peepholes"):
        eonnx.convert(peep)


def test_run_time_input_errors():
    model = eonnx.convert(_tiny_gemm(), density=0.5, n_pe=2)
    with pytest.raises(EIEInputError, match="missing input 'x'"):
        model.run({})
    with pytest.raises(EIEInputError, match=r"input 'x' has shape \(2, 5\), expected \(\?, 4\)"):
        model(np.zeros((2, 5), np.float32))
    with pytest.raises(EIEInputError, match="input 'x' has dtype float64, expected float32"):
        model(np.zeros((2, 4)))
    with pytest.raises(EIEInputError, match="unknown input 'z'"):
        model.run({"x": np.zeros((1, 4), np.float32), "z": np.zeros(1)})
    with pytest.raises(EIEError, match="fixed16"):  # not calibrated yet
        model(np.zeros((1, 4), np.float32), mode="fixed16")


def test_fixed16_after_calibration_tracks_float32():
    x = np.random.default_rng(9).standard_normal((16, 32)).astype(np.float32)
    model = eonnx.convert(torch_onnx(mlp((32, 64, 10)), [torch.from_numpy(x)]), density=0.3, n_pe=4)
    model.calibrate({"x": x})
    y16, y32 = model(x, mode="fixed16"), model(x)
    assert np.abs(y16 - y32).max() < 0.02 * np.abs(y32).max()


def test_fixed16_lstm_after_calibration_tracks_float32():
    net = LSTMNet(10, 12, 1, True, 5, seed=8)
    x = np.random.default_rng(10).standard_normal((5, 3, 10)).astype(np.float32)
    model = eonnx.convert(torch_onnx(net, [torch.from_numpy(x)], batch_axis=1), density=0.3, n_pe=8)
    model.calibrate({"x": x})
    assert all(layer.fixed is not None for layer in model.layers)
    y16, y32 = model(x, mode="fixed16"), model(x)
    assert 0 < np.abs(y16 - y32).max() < 0.01 * np.abs(y32).max()


def test_gemm_with_run_time_bias_and_backend_compressed_mode():
    from eie_runtime.onnx.backend import EIEBackend

    rng = np.random.default_rng(11)
    b = rng.standard_normal((8, 5)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("Gemm", ["A", "B", "C"], ["Y"], name="gemm", beta=0.5)], "g",
                              [helper.make_tensor_value_info("A", TensorProto.FLOAT, [2, 8]),
                               helper.make_tensor_value_info("C", TensorProto.FLOAT, [2, 5])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2, 5])],
                              initializer=[numpy_helper.from_array(b, "B")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    feeds = {"A": rng.standard_normal((2, 8)).astype(np.float32), "C": rng.standard_normal((2, 5)).astype(np.float32)}
    model = eonnx.convert(proto, density=0.5, bits=4, n_pe=2)
    assert [n.op for n in model.nodes] == ["Mul", "Linear", "Add"]  # beta * C added after the layer
    got = model.run(feeds)["Y"]
    np.testing.assert_allclose(got, ort_run(eonnx.export(model), feeds)[0], rtol=1e-6, atol=1e-6)
    rep = EIEBackend.prepare(proto, lossless=False, density=0.5, bits=4, n_pe=2)
    np.testing.assert_array_equal(rep.run([feeds["A"], feeds["C"]])[0], got)
    exact = EIEBackend.prepare(proto).run(feeds)[0]
    np.testing.assert_allclose(exact, ort_run(proto, feeds)[0], rtol=1e-5, atol=1e-6)
    assert np.abs(exact - got).max() > 1e-3  # compressed is not lossless


class StatefulLSTM(torch.nn.Module):
    """batch_first bidirectional 2-layer LSTM with initial states as graph inputs and two outputs."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.lstm = torch.nn.LSTM(6, 9, num_layers=2, batch_first=True, bidirectional=True)
        self.fc = torch.nn.Linear(18, 4)
        self.flat = torch.nn.Flatten()

    def forward(self, x, h0, c0):
        y, (h, c) = self.lstm(x, (h0, c0))
        return torch.tanh(self.fc(y)), torch.sigmoid(self.flat(h.transpose(0, 1)))


@pytest.mark.parametrize("opset", [9, 13, 20])
def test_torch_export_opsets_with_initial_states(opset):
    net = StatefulLSTM().eval()
    args = [torch.randn(3, 5, 6), torch.randn(4, 3, 9), torch.randn(4, 3, 9)]
    src = torch_onnx(net, args, dynamic_batch=False, opset_version=opset)
    feeds = {n: a.numpy() for n, a in zip(["x0", "x1", "x2"], args)}
    lossless = eonnx.convert(src, lossless=True).run(feeds)
    for got, ref in zip(lossless.values(), net(*args)):  # the executor alone equals torch
        np.testing.assert_allclose(got, ref.detach().numpy(), rtol=1e-5, atol=1e-6)
    model = eonnx.convert(src, density=0.3, n_pe=4)
    for got, ref in zip(model.run(feeds).values(), ort_run(eonnx.export(model), feeds)):
        assert rel_err(got, ref) < REL


def test_tensor_declaring_more_elements_than_it_holds_is_refused_before_checking():
    """A mutated file's dims are refused before onnx's checker or shape inference size anything by them."""
    from onnx import TensorProto, helper

    from eie_runtime.errors import EIEFormatError
    from eie_runtime.onnx.reader import load_onnx

    w = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[2 ** 20, 2 ** 20])
    w.float_data.extend([1.0, 2.0])
    g = helper.make_graph([helper.make_node("Identity", ["W"], ["y"])], "g", [],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=[w])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(EIEFormatError, match=r"'W' declares 1099511627776 elements .* at most 4"):
        load_onnx(model.SerializeToString())
