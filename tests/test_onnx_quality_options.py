"""`eie convert --init` and `--lstm-bias` (and convert_onnx's init=, lstm_bias=) reach the stored layers."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="needs the [onnx] extra")
ort = pytest.importorskip("onnxruntime", reason="needs the [onnx] extra")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from eie_runtime.errors import EIEFormatError, EIEInputError  # noqa: E402
from eie_runtime.onnx import convert_onnx  # noqa: E402
from eie_runtime.onnx import nodes as N  # noqa: E402
from eie_runtime.onnx.dense import to_dense  # noqa: E402
from eie_runtime.onnx.session import InferenceSession  # noqa: E402

RNG = np.random.default_rng(7)


def _vi(name, shape, t=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, t, shape)


def _w(name, *shape):
    return numpy_helper.from_array(RNG.standard_normal(shape).astype(np.float32), name)


def _rnn_model():
    """Gemm, a bidirectional ONNX LSTM and a GRU (linear_before_reset=1), all with biases."""
    h, i = 6, 5
    nodes = [helper.make_node("Gemm", ["x", "wg", "bg"], ["xi"], name="fc", transB=1),
             helper.make_node("Reshape", ["xi", "shape"], ["X"], name="rs"),
             helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y", "Y_h"], name="lstm", hidden_size=h,
                              direction="bidirectional"),
             helper.make_node("Reshape", ["Y", "shape2"], ["Y2"], name="rs2"),
             helper.make_node("GRU", ["Y2", "Wg", "Rg", "Bg"], ["Z"], name="gru", hidden_size=h,
                              linear_before_reset=1)]
    inits = [_w("wg", 4 * i, 16), _w("bg", 4 * i), _w("W", 2, 4 * h, i), _w("R", 2, 4 * h, h), _w("B", 2, 8 * h),
             _w("Wg", 1, 3 * h, 2 * h), _w("Rg", 1, 3 * h, h), _w("Bg", 1, 6 * h),
             numpy_helper.from_array(np.array([4, 1, i], np.int64), "shape"),
             numpy_helper.from_array(np.array([4, 1, 2 * h], np.int64), "shape2")]
    g = helper.make_graph(nodes, "g", [_vi("x", [1, 16])], [_vi("Z", [4, 1, 1, h])], initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


FEEDS = {"x": RNG.standard_normal((1, 16)).astype(np.float32)}


def _rel(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def _codebooks(proto):
    return {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer if t.name.endswith("codebook")}


def test_init_changes_the_codebooks_and_each_runs_like_its_dense_export():
    books = {}
    for init in ("linear", "density", "quantile", "random"):
        proto, _ = convert_onnx(_rnn_model(), density=0.5, n_pe=2, init=init)
        books[init] = _codebooks(proto)
        got = InferenceSession(proto).run(None, FEEDS)[0]
        want = ort.InferenceSession(to_dense(proto).SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, FEEDS)[0]
        assert _rel(got, want) <= 1e-4
    names = sorted(books["linear"])
    assert len(names) == 1 + 2 + 3  # the Gemm, two LSTM directions, the GRU's three matrices
    for other in ("density", "random"):
        assert any(not np.array_equal(books["linear"][n], books[other][n]) for n in names), other
    with pytest.raises(EIEInputError, match="init must be one of"):
        convert_onnx(_rnn_model(), init="kmeans++")


def test_lstm_bias_dense_keeps_the_biases_exact():
    m = _rnn_model()
    shared, _ = convert_onnx(m, density=0.3, n_pe=2)
    dense, _ = convert_onnx(m, density=0.3, n_pe=2, lstm_bias="dense")
    rnn = {n.name: n for n in dense.graph.node if n.op_type in ("EIELSTM", "EIEGRU")}
    assert all(any(a.name == "bias" and a.i == 1 for a in n.attribute) for n in rnn.values())
    assert not any(a.name == "bias" for n in shared.graph.node for a in n.attribute if n.op_type != "EIELinear")
    sess = InferenceSession(dense)
    lstm_layers = [lay for lay in sess.layers if lay.name.startswith("lstm")]
    b = numpy_helper.to_array(next(t for t in m.graph.initializer if t.name == "B"))
    h = 6
    for d, lay in enumerate(lstm_layers):  # b_ih + b_hh, in EIE's gate order (i, f, g, o) from ONNX's (i, o, f, c)
        onnx_b = b[d, :4 * h] + b[d, 4 * h:]
        want = np.concatenate([onnx_b[k * h:(k + 1) * h] for k in (0, 2, 3, 1)])
        np.testing.assert_allclose(lay.bias, want, rtol=1e-6)
        assert not lay.dense()[:, -1].any()  # the matrix's bias column is empty
    gru = [lay for lay in sess.layers if lay.name.startswith("gru")]
    assert [lay.bias is not None for lay in gru] == [True, False, True]  # w_x, w_hrz, w_hn
    got = sess.run(None, FEEDS)[0]
    want = ort.InferenceSession(to_dense(dense).SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, FEEDS)[0]
    assert _rel(got, want) <= 1e-4
    # exact biases follow the original more closely than pruned-and-shared ones (density 0.3, 4 bits)
    ref = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, FEEDS)[0]
    assert _rel(got, ref) < _rel(InferenceSession(shared).run(None, FEEDS)[0], ref)


def test_hostile_dense_bias_is_refused_naming_the_node():
    dense, _ = convert_onnx(_rnn_model(), density=0.3, n_pe=2, lstm_bias="dense")
    t = next(t for t in dense.graph.initializer if t.name.endswith(".d0.bias") and "lstm" in t.name)
    t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t)[:5].copy(), t.name))
    with pytest.raises(EIEFormatError, match="'lstm'.*bias"):
        InferenceSession(dense)


def test_cli_options(tmp_path, capsys):
    from eie_runtime.cli import main

    src = tmp_path / "rnn.onnx"
    onnx.save(_rnn_model(), str(src))
    out = tmp_path / "q.onnx"
    assert main(["convert", str(src), "-o", str(out), "--init", "quantile", "--lstm-bias", "dense", "--pes", "2",
                 "--density", "0.3", "-q"]) == 0
    proto = onnx.load(str(out))
    direct, _ = convert_onnx(_rnn_model_from(src), density=0.3, n_pe=2, init="quantile", lstm_bias="dense")
    assert proto.SerializeToString() == direct.SerializeToString()
    assert any(n.op_type == N.LSTM and any(a.name == "bias" for a in n.attribute) for n in proto.graph.node)
    with pytest.raises(SystemExit):
        main(["convert", str(src), "-o", str(out), "--init", "kmeans"])
    capsys.readouterr()
    assert main(["convert", str(src), "-o", str(tmp_path / "x.eie"), "--init", "random"]) != 0
    assert "apply to .onnx outputs" in capsys.readouterr().err


def _rnn_model_from(path):
    return onnx.load(str(path))
