"""Plans run as generated functions (eie_runtime.onnx.compiled), and InferenceSession.profile's counts."""

import time

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="needs the [onnx] extra")
ort = pytest.importorskip("onnxruntime", reason="needs the [onnx] extra")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from eie_runtime.onnx import convert_onnx  # noqa: E402
from eie_runtime.onnx.dense import to_dense  # noqa: E402
from eie_runtime.onnx.session import InferenceSession, _EIEStep, _Segment  # noqa: E402

RNG = np.random.default_rng(5)
# value names a generated function must carry as data, never as code
ODD = ["x'\"\n\\", "h  ) # not code", "élan", "return", "env", "y:0/1"]


def _vi(name, shape, t=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, t, shape)


def _w(name, *shape):
    return numpy_helper.from_array(RNG.standard_normal(shape).astype(np.float32), name)


def _chain(names):
    """x -> Gemm -> Relu -> Gemm -> Tanh -> Gemm -> y, every value under one of ``names``."""
    x, h, r, g, t, y = names
    nodes = [helper.make_node("Gemm", [x, "w1"], [h], name="fc1", transB=1),
             helper.make_node("Sin", [h], [r], name="sin"),
             helper.make_node("Gemm", [r, "w2"], [g], name="fc2", transB=1),
             helper.make_node("Tanh", [g], [t], name="tanh"),
             helper.make_node("Gemm", [t, "w3"], [y], name="fc3", transB=1)]
    graph = helper.make_graph(nodes, "g", [_vi(x, ["b", 16])], [_vi(y, ["b", 4]), _vi(h, ["b", 24])],
                              initializer=[_w("w1", 24, 16), _w("w2", 12, 24), _w("w3", 4, 12)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_value_names_of_any_spelling_run_and_equal_onnxruntime():
    m = _chain(ODD)
    conv, _ = convert_onnx(m, density=0.5, n_pe=2)
    ref = ort.InferenceSession(to_dense(conv).SerializeToString(), providers=["CPUExecutionProvider"])
    sess = InferenceSession(conv)
    feeds = {ODD[0]: RNG.standard_normal((3, 16)).astype(np.float32)}
    for got, want in zip(sess.run(None, feeds), ref.run(None, feeds)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert sess.run([ODD[1]], feeds)[0].shape == (3, 24)


def test_the_plan_is_straight_line_code_over_locals():
    conv, _ = convert_onnx(_chain(["x", "h", "r", "g", "t", "y"]), density=0.5, n_pe=2)
    plan = InferenceSession(conv)._plan
    src = plan.run.source
    kinds = [type(s) for s in plan.steps]
    assert kinds == [_EIEStep, _Segment, _EIEStep, _Segment, _EIEStep]
    assert "for " not in src and "env[" not in src  # no loop, no value dict (no control step here)
    assert src.count("feeds[") == 1  # the one input, read once


def test_profile_counts_every_onnxruntime_and_kernel_call_and_only_inside_the_block():
    conv, _ = convert_onnx(_chain(["x", "h", "r", "g", "t", "y"]), density=0.5, n_pe=2)
    sess = InferenceSession(conv)
    feeds = {"x": RNG.standard_normal((2, 16)).astype(np.float32)}
    want = sess.run(None, feeds)
    runs = 7
    with sess.profile() as times:
        t = time.perf_counter()
        for _ in range(runs):
            got = sess.run(None, feeds)
        wall = time.perf_counter() - t
    assert (times.eie_calls, times.ort_calls) == (3 * runs, 2 * runs)
    assert 0 < times.eie_s and 0 < times.ort_s and times.eie_s + times.ort_s < wall
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)  # profiling changes no result
    sess.run(None, feeds)
    assert times.eie_calls == 3 * runs  # the plans run untimed again after the block


def test_profile_counts_inside_loop_bodies():
    body = helper.make_graph(
        [helper.make_node("MatMul", ["acc_in", "wl"], ["mm"], name="loop_mm"),
         helper.make_node("Tanh", ["mm"], ["acc_out"], name="tanh"),
         helper.make_node("Identity", ["cond_in"], ["cond_out"], name="id")],
        "body", [_vi("i", [], TensorProto.INT64), _vi("cond_in", [], TensorProto.BOOL), _vi("acc_in", [3, 8])],
        [_vi("cond_out", [], TensorProto.BOOL), _vi("acc_out", [3, 8])])
    graph = helper.make_graph([helper.make_node("Loop", ["trips", "", "x"], ["final"], name="loop", body=body)],
                              "g", [_vi("x", [3, 8])], [_vi("final", [3, 8])],
                              initializer=[_w("wl", 8, 8), numpy_helper.from_array(np.array(4, np.int64), "trips")])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    conv, _ = convert_onnx(m, density=0.5, n_pe=2)
    sess = InferenceSession(conv)
    feeds = {"x": RNG.standard_normal((3, 8)).astype(np.float32)}
    ref = ort.InferenceSession(to_dense(conv).SerializeToString(), providers=["CPUExecutionProvider"])
    with sess.profile() as times:
        got = sess.run(None, feeds)
    np.testing.assert_allclose(got[0], ref.run(None, feeds)[0], rtol=1e-4, atol=1e-5)
    assert (times.eie_calls, times.ort_calls) == (4, 4)  # per trip: the EIE MatMul, then Tanh/Identity


def test_profile_times_the_specialised_plan_a_run_inside_the_block_builds():
    then_g = helper.make_graph([helper.make_node("Gemm", ["x", "w"], ["t"], name="fc", transB=1),
                                helper.make_node("Tanh", ["t"], ["out"], name="tanh")], "then", [],
                               [_vi("out", [2, 8])])
    else_g = helper.make_graph([helper.make_node("Sigmoid", ["x"], ["out"], name="sig")], "else", [],
                               [_vi("out", [2, 8])])
    graph = helper.make_graph([helper.make_node("If", ["c"], ["y"], name="if", then_branch=then_g,
                                                else_branch=else_g)],
                              "g", [_vi("x", [2, 8]), _vi("c", [], TensorProto.BOOL)], [_vi("y", [2, 8])],
                              initializer=[_w("w", 8, 8)])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    sess = InferenceSession(convert_onnx(m, density=0.5, n_pe=2)[0])
    feeds = {"x": RNG.standard_normal((2, 8)).astype(np.float32), "c": np.array(True)}
    with sess.profile() as times:
        first = sess.run(None, feeds)  # the generic plan: builds the plan with the branch inlined
        assert len(sess.plans()) == 2
        second = sess.run(None, feeds)  # that plan, timed too
    np.testing.assert_array_equal(first[0], second[0])
    assert times.eie_calls == 2
    assert sess.plans()[1].run is sess.plans()[1]._untimed  # untimed again after the block


def test_cli_run_profile_prints_where_the_time_goes(tmp_path, capsys):
    from eie_runtime.cli import main

    conv, _ = convert_onnx(_chain(["x", "h", "r", "g", "t", "y"]), density=0.5, n_pe=2)
    path = tmp_path / "chain_eie.onnx"
    path.write_bytes(conv.SerializeToString())
    np.save(tmp_path / "x.npy", RNG.standard_normal((1, 16)).astype(np.float32))
    assert main(["run", str(path), "-i", str(tmp_path / "x.npy"), "--profile", "5"]) == 0
    line = [t for t in capsys.readouterr().out.splitlines() if t.startswith("profile:")][0]
    assert "5 runs" in line and "onnxruntime" in line and "(2 calls)" in line and "(3 calls)" in line
    assert "us per EIE call" in line
    with pytest.raises(SystemExit):
        main(["run", str(path), "-i", str(tmp_path / "x.npy"), "--profile", "0"])
    assert "from 1 to" in capsys.readouterr().err
