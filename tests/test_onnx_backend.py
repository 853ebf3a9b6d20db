"""onnx's own node conformance tests (onnx.backend.test, generated in memory) through EIEBackend.

Runs, in lossless mode, every node test of the ops issue 6 names: Gemm,
MatMul (2-D), Relu, Sigmoid, Tanh, Softmax, Flatten, Reshape, Transpose,
Identity, Add, LSTM and GRU, through the converted-ONNX path (EIE nodes for Gemm/MatMul/LSTM, onnxruntime for the
rest). Each skipped test says why below.
"""

import re
import unittest
import warnings

import pytest

onnx = pytest.importorskip("onnx", reason="needs the [onnx] extra")

with warnings.catch_warnings():  # generating the test cases triggers numpy overflow warnings in onnx's own code
    warnings.simplefilter("ignore")
    import onnx.backend.test

    from eie_runtime.onnx.backend import EIEBackend

    _backend_test = onnx.backend.test.BackendTest(EIEBackend, __name__)

OPS = ("gemm", "matmul", "relu", "sigmoid", "tanh", "softmax", "flatten", "reshape", "transpose", "identity",
       "add", "lstm", "gru")
_SELECTED = re.compile(r"^test_(%s)(_.*)?_cpu$" % "|".join(OPS))

#: test name (without "_cpu") -> why it is skipped. Since the converted model runs on onnxruntime (every node
#: that is not an EIE layer is onnxruntime's), the expanded function bodies, batched MatMuls and LSTM
#: peepholes (kept as ONNX nodes) run too; none is skipped unless listed here.
SKIPS: dict = {}


def _skip_reason(name: str) -> str | None:
    return SKIPS.get(name[:-len("_cpu")])


def _build():
    case = type("OnnxBackendNodeEIETest", (unittest.TestCase,), {"__module__": __name__})
    for key, cls in _backend_test.test_cases.items():
        if key != "OnnxBackendNodeModelTest":  # the node tests; the others are whole models or torch-exported ops
            continue
        for name in dir(cls):
            if not _SELECTED.match(name):
                continue
            func = getattr(cls, name)
            reason = _skip_reason(name)
            setattr(case, name, unittest.skip(reason)(func) if reason else func)
    return case


OnnxBackendNodeEIETest = _build()


def test_every_named_op_has_passing_tests():
    """Every op the issue names keeps at least one test that runs (not skipped)."""
    names = [n for n in dir(OnnxBackendNodeEIETest) if n.startswith("test_")]
    for op in OPS:
        runnable = [n for n in names if re.match(rf"^test_{op}(_|$)", n) and not _skip_reason(n)]
        assert runnable, f"no runnable backend test for {op}"


def test_compressed_backend_runs_eie_nodes():
    """prepare(lossless=False) converts the weights into EIE nodes: the outputs move, but stay close on a wide layer."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 32)).astype(np.float32)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 32])],
                          initializer=[numpy_helper.from_array(w, "w")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.standard_normal((4, 64)).astype(np.float32)
    exact = EIEBackend.prepare(model).run([x])[0]
    assert np.allclose(exact, x @ w, rtol=1e-5, atol=1e-5)
    rep = EIEBackend.prepare(model, lossless=False, density=0.5, bits=4, n_pe=4)
    approx = rep.run([x])[0]
    assert not np.allclose(approx, exact, atol=1e-6)
    assert np.linalg.norm(approx - exact) < 0.9 * np.linalg.norm(exact)
