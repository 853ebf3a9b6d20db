"""If branches holding EIE nodes, inlined into the enclosing graph (eie_runtime.onnx.inline).

A session runs the plan specialised for the last run's If outcomes, guarded: a guard that fails falls back to
the generic plan, which records the outcomes for the next run. Results must equal onnxruntime's whichever way
the branches go, in any order.
"""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="needs the [onnx] extra")
ort = pytest.importorskip("onnxruntime", reason="needs the [onnx] extra")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from eie_runtime.errors import EIEInputError  # noqa: E402
from eie_runtime.onnx import convert_onnx  # noqa: E402
from eie_runtime.onnx.dense import to_dense  # noqa: E402
from eie_runtime.onnx.inline import GuardStep  # noqa: E402
from eie_runtime.onnx.session import InferenceSession, _EIEStep, _Segment  # noqa: E402

RNG = np.random.default_rng(3)


def _vi(name, shape, t=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, t, shape)


def _w(name, *shape):
    return numpy_helper.from_array(RNG.standard_normal(shape).astype(np.float32), name)


def _nested_if_model():
    """If(c) { Gemm -> If(k computed from x) { MatMul+Add | Constant } -> Tanh ; the Gemm's output } else {...}.

    Branch outputs of every kind: computed by onnxruntime (Tanh), by an EIE node (the Gemm's output), a
    Constant; the inner condition is computed at run time from x; the branches' shapes differ (4 vs 12)."""
    inner_then = helper.make_graph([helper.make_node("MatMul", ["t", "w2"], ["u"], name="mm2"),
                                    helper.make_node("Add", ["u", "b2"], ["i1"], name="add2")],
                                   "inner_then", [], [_vi("i1", [2, 4])])
    inner_else = helper.make_graph([helper.make_node("Constant", [], ["i2"], name="const", value=numpy_helper.from_array(
        np.full((2, 4), 0.5, np.float32)))], "inner_else", [], [_vi("i2", [2, 4])])
    then_g = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w1"], ["t"], name="fc1", transB=1),
         helper.make_node("If", ["k"], ["inner"], name="inner_if", then_branch=inner_then, else_branch=inner_else),
         helper.make_node("Tanh", ["inner"], ["o1"], name="tanh")],
        "then", [], [_vi("o1", [2, 4]), _vi("t", [2, 12])])
    else_g = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w3"], ["e"], name="fc3", transB=1),
         helper.make_node("Sigmoid", ["e"], ["o2"], name="sig"),
         helper.make_node("Gemm", ["x", "w4"], ["f"], name="fc4", transB=1)],
        "else", [], [_vi("o2", [2, 6]), _vi("f", [2, 3])])
    nodes = [helper.make_node("ReduceSum", ["x"], ["s"], name="sum", keepdims=0),
             helper.make_node("Greater", ["s", "zero"], ["k"], name="gt"),
             helper.make_node("If", ["c"], ["a", "b"], name="outer_if", then_branch=then_g, else_branch=else_g),
             helper.make_node("ReduceSum", ["b", "ax"], ["bs"], name="bsum", keepdims=1),
             helper.make_node("Mul", ["a", "bs"], ["y"], name="mul")]
    g = helper.make_graph(nodes, "g", [_vi("x", [2, 8]), _vi("c", [], TensorProto.BOOL)],
                          [_vi("y", [2, "n"]), _vi("b", [2, "m"])],
                          initializer=[_w("w1", 12, 8), _w("w2", 12, 4), _w("b2", 4), _w("w3", 6, 8), _w("w4", 3, 8),
                                       numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
                                       numpy_helper.from_array(np.array([-1], np.int64), "ax")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _feeds(c, k):
    x = np.abs(RNG.standard_normal((2, 8))).astype(np.float32) * (1 if k else -1)
    return {"x": x, "c": np.array(c)}


def _rel(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


@pytest.mark.parametrize("lossless", [True, False])
def test_branches_any_order_equal_onnxruntime(lossless):
    m = _nested_if_model()
    conv, _ = convert_onnx(m, lossless=lossless, density=0.5, n_pe=2)
    ref = ort.InferenceSession((m if lossless else to_dense(conv)).SerializeToString(),
                               providers=["CPUExecutionProvider"])
    sess = InferenceSession(conv)
    order = [(True, True), (True, True), (True, False), (True, False), (False, True), (True, True),
             (False, False), (False, True), (True, False), (True, True)]
    for c, k in order:  # repeats run the specialised plan; each change is a guard miss, then the generic plan
        f = _feeds(c, k)
        for got, want in zip(sess.run(None, f), ref.run(None, f)):
            assert got.shape == want.shape
            assert _rel(got, want) <= (1e-5 if lossless else 1e-4)
    # one specialised plan per outcome seen: (c, k) = TT, TF and F (k is not looked at when c is False)
    assert len(sess.plans()) == 1 + 3
    for plan in sess.plans()[1:]:
        kinds = [type(s) for s in plan.steps]
        assert any(isinstance(s, GuardStep) or getattr(s, "checks", None) for s in plan.steps)  # the guards
        assert not any(type(s).__name__ == "ControlStep" for s in plan.steps)
        # no cuts at the Ifs: the segments are the levels between EIE nodes (TT: before fc1, between fc1 and
        # mm2 (bsum), after mm2; the generic plan ran six for it)
        assert kinds.count(_Segment) <= 3


def test_errors_inside_a_specialised_plan_are_reported_by_the_generic_run():
    conv, _ = convert_onnx(_nested_if_model(), lossless=True)
    sess = InferenceSession(conv)
    sess.run(None, _feeds(True, True))
    with pytest.raises(EIEInputError, match="input: x"):  # onnxruntime checks the declared shape
        sess.run(None, {"x": np.ones((2, 7), np.float32), "c": np.array(True)})
    assert np.isfinite(sess.run(None, _feeds(True, True))[0]).all()  # the session still runs afterwards


def _silero():
    import importlib.metadata
    from pathlib import Path

    try:
        files = importlib.metadata.distribution("silero-vad").files or []
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("needs the silero-vad package (the [models] extra)")
    for f in files:
        if Path(str(f)).match("*/silero_vad.onnx"):
            return str(f.locate())
    pytest.skip("silero-vad ships no silero_vad.onnx")


def test_silero_vad_runs_one_segment_before_and_one_after_its_lstm():
    conv, _ = convert_onnx(_silero(), density=0.3, n_pe=16)
    sess = InferenceSession(conv)
    generic = InferenceSession(conv)
    feeds = {16000: {"input": (RNG.standard_normal((1, 512)) * 0.1).astype(np.float32),
                     "state": (RNG.standard_normal((2, 1, 128)) * 0.1).astype(np.float32),
                     "sr": np.array(16000, np.int64)},
             8000: {"input": (RNG.standard_normal((1, 256)) * 0.1).astype(np.float32),
                    "state": (RNG.standard_normal((2, 1, 128)) * 0.1).astype(np.float32),
                    "sr": np.array(8000, np.int64)}}
    for sr in (16000, 16000, 8000, 8000, 16000):
        want = generic._plan.run({}, dict(feeds[sr]), "float32")  # the generic plan: If steps, six segments
        for got, w in zip(sess.run(None, feeds[sr]), want):
            np.testing.assert_array_equal(got, w)
    spec = sess.plans()[1]
    assert [type(s) for s in spec.steps].count(_Segment) == 2
    assert [type(s) for s in spec.steps].count(_EIEStep) == 1
    assert len(sess.plans()) == 3


def test_a_computed_condition_is_checked_before_the_branch_runs_its_eie_nodes():
    conv, _ = convert_onnx(_nested_if_model(), density=0.5, n_pe=2)
    sess = InferenceSession(conv)
    sess.run(None, _feeds(True, True))
    src = sess.plans()[1].run.source
    # k (x's sum > 0) is computed by the first segment, so its guard fails before any EIE kernel runs
    assert src.index("raise Miss('k')") < src.index("], mode)")
