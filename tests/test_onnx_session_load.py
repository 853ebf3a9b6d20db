"""InferenceSession loads what onnxruntime loads: sparse initializers, model-local functions, external data."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="needs the [onnx] extra")
pytest.importorskip("onnxruntime", reason="needs the [onnx] extra")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from eie_runtime.onnx import convert_onnx  # noqa: E402
from eie_runtime.onnx.session import InferenceSession  # noqa: E402

W = np.zeros((4, 3), np.float32)
W[1, 2], W[3, 0] = 2.0, -1.0
X = np.arange(8, dtype=np.float32).reshape(2, 4)
IO = ([helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])


def _model(nodes, **kw):
    opsets = [helper.make_opsetid("", 17)] + kw.pop("opsets", [])
    functions = kw.pop("functions", [])
    return helper.make_model(helper.make_graph(nodes, "g", *IO, **kw), opset_imports=opsets, functions=functions)


def test_a_weight_stored_as_a_sparse_initializer():
    sparse = helper.make_sparse_tensor(numpy_helper.from_array(np.array([2.0, -1.0], np.float32), "W"),
                                       numpy_helper.from_array(np.array([5, 9], np.int64), "W_idx"), [4, 3])
    m = _model([helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], sparse_initializer=[sparse])
    np.testing.assert_array_equal(InferenceSession(m).run(None, {"x": X})[0], X @ W)


def test_a_model_local_function():
    f = helper.make_function("local", "Lin", ["a", "b"], ["c"], [helper.make_node("MatMul", ["a", "b"], ["c"])],
                             [helper.make_opsetid("", 17)])
    m = _model([helper.make_node("Lin", ["x", "W"], ["y"], domain="local", name="lin")],
               initializer=[numpy_helper.from_array(W, "W")], opsets=[helper.make_opsetid("local", 1)],
               functions=[f])
    np.testing.assert_array_equal(InferenceSession(m).run(None, {"x": X})[0], X @ W)


def test_a_converted_model_saved_with_external_data_beside_it(tmp_path):
    big = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
    m = helper.make_model(helper.make_graph(
        [helper.make_node("Gemm", ["x", "W"], ["y"], name="fc", transB=1)], "g", IO[0],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 64])], initializer=[numpy_helper.from_array(big, "W")]),
        opset_imports=[helper.make_opsetid("", 17)])
    conv, _ = convert_onnx(m, lossless=True)
    path = tmp_path / "m.onnx"
    onnx.save(conv, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="m.onnx.data",
              size_threshold=0)
    assert (tmp_path / "m.onnx.data").stat().st_size >= big.nbytes
    np.testing.assert_allclose(InferenceSession(path).run(None, {"x": X})[0], X @ big.T, rtol=1e-6)
