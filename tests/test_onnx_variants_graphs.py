"""Graphs that stretch the converter's reading of a model rather than one op: what onnx's checker refuses and
onnxruntime runs, unnamed nodes at several levels, weights in sparse initializers or external data files, values
of one name in sibling branches. Each converts, runs like onnxruntime, and keeps what it cannot convert."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="needs the [onnx] extra")
pytest.importorskip("onnxruntime", reason="needs the [onnx] extra")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from eie_runtime.onnx import convert_onnx  # noqa: E402
from eie_runtime.onnx.converter import _all_graphs  # noqa: E402
from eie_runtime.onnx.dense import to_dense  # noqa: E402
from eie_runtime.onnx.session import InferenceSession  # noqa: E402
from test_onnx_variants import F, _ort, _rng, check, eie_ops, model, plain_ops, rel, vi, w, x  # noqa: E402


def _loose_graphs():
    mm = helper.make_node
    out_without_shape = model([mm("MatMul", ["X", "W"], ["t"], name="mm"), mm("Relu", ["t"], ["Y"], name="r")],
                              [vi("X", [4, 10])], [helper.make_tensor_value_info("Y", F, None)], [w("W", 10, 6)])
    unsorted = model([mm("Relu", ["u"], ["Y"], name="r"), mm("Add", ["t", "b"], ["u"], name="add"),
                      mm("MatMul", ["X", "W"], ["t"], name="mm")], [vi("X", [4, 10])], [vi("Y", [4, 6])],
                     [w("W", 10, 6), w("b", 6)])
    ir3 = model([mm("Gemm", ["X", "W", "b"], ["Y"], name="g", transB=1)],
                [vi("X", [4, 10]), vi("W", [6, 10]), vi("b", [6])], [vi("Y", [4, 6])], [w("W", 6, 10), w("b", 6)],
                opset=8)
    ir3.ir_version = 3  # initializers listed as graph inputs too
    return {"output_without_shape": out_without_shape, "unsorted_nodes": unsorted, "ir3_initializers_as_inputs": ir3}


@pytest.mark.parametrize("case", ["output_without_shape", "unsorted_nodes", "ir3_initializers_as_inputs"])
def test_graphs_onnxruntime_accepts_convert(case):
    m = _loose_graphs()[case]
    feeds = {"X": x(4, 10)}
    r = check(m, feeds)
    assert eie_ops(r["comp"]) == ["EIELinear"]
    from_bytes = InferenceSession(r["comp"].SerializeToString()).run(None, feeds)  # read back through the checker
    assert rel(from_bytes[0], InferenceSession(r["comp"]).run(None, feeds)[0]) == 0.0


def test_a_graph_with_a_cycle_is_still_refused():
    from eie_runtime.errors import EIEFormatError

    mm = helper.make_node
    m = model([mm("Add", ["X", "v"], ["u"], name="a"), mm("Relu", ["u"], ["v"], name="r"),
               mm("Identity", ["v"], ["Y"], name="i")], [vi("X", [2])], [vi("Y", [2])], [])
    with pytest.raises(EIEFormatError, match="topologically sorted"):
        convert_onnx(m)


def test_unnamed_nodes_in_a_graph_and_its_branches_get_distinct_names():
    """Unnamed Gemms (transA and a full C: Transpose and Add nodes around each EIE node) at two levels."""
    mm = helper.make_node

    def branch(tag):
        return helper.make_graph([mm("Gemm", ["x", "w", "cfull"], ["t"], transA=1, beta=0.5),
                                  mm("MatMul", ["W0", "t"], ["out"])], tag, [], [vi("out", [6, 5])])

    nodes = [mm("Gemm", ["X", "w", "cfull"], ["x1"], transA=1, beta=0.5), mm("Identity", ["x1"], ["x"]),
             mm("If", ["c"], ["y"], then_branch=branch("then"), else_branch=branch("else")),
             mm("Gemm", ["y", "w2", "cfull2"], ["Y"], transA=1)]
    m = model(nodes, [vi("X", [5, 5]), vi("c", [], TensorProto.BOOL)], [vi("Y", [5, 3])],
              [w("w", 5, 5), w("cfull", 5, 5), w("W0", 6, 5), w("w2", 6, 3), w("cfull2", 5, 3)])
    for c in (True, False):
        feeds = {"X": x(5, 5), "c": np.array(c)}
        r = check(m, feeds)
        sess = InferenceSession(r["comp"])
        first = sess.run(None, feeds)[0]
        assert rel(sess.run(None, feeds)[0], first) == 0.0  # the run after the first inlines the branch taken
    names = [n.name for g in _all_graphs(r["comp"].graph) for n in g.node if n.name]
    assert len(names) == len(set(names)) and len(eie_ops(r["comp"])) == 6


@pytest.mark.parametrize("coo", [False, True])
def test_weights_stored_as_sparse_initializers(coo):
    """A MatMul weight and an Add operand in ``sparse_initializer`` (linear or (NNZ, rank) indices)."""
    mm = helper.make_node
    sparse = []
    for name, shape in (("W", (10, 6)), ("S", (4, 6))):
        arr = _rng(len(name) + len(shape)).standard_normal(shape).astype(np.float32)
        arr[np.abs(arr) < 0.8] = 0
        idx = np.argwhere(arr) if coo else np.flatnonzero(arr)
        vals = arr[tuple(idx.T)] if coo else arr.ravel()[idx]
        sparse.append(helper.make_sparse_tensor(numpy_helper.from_array(vals, name),
                                                numpy_helper.from_array(idx.astype(np.int64), name + "_idx"), shape))
    g = helper.make_graph([mm("MatMul", ["X", "W"], ["t"], name="mm"), mm("Add", ["t", "S"], ["Y"], name="add")],
                          "g", [vi("X", [4, 10])], [vi("Y", [4, 6])], sparse_initializer=sparse)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    r = check(m, {"X": x(4, 10)})
    assert eie_ops(r["comp"]) == ["EIELinear"] and plain_ops(r["comp"]) == ["Add"]


def test_weights_in_an_external_data_file_beside_the_model(tmp_path):
    from eie_runtime.errors import EIEFormatError

    mm = helper.make_node
    m = model([mm("MatMul", ["X", "W"], ["t"], name="mm"), mm("Add", ["t", "b"], ["Y"], name="add")],
              [vi("X", [4, 10])], [vi("Y", [4, 6])], [w("W", 10, 6), w("b", 6)])
    feeds = {"X": x(4, 10)}
    ref = _ort(m, feeds)[0]
    path = tmp_path / "m.onnx"
    onnx.save(m, str(path), save_as_external_data=True, location="m.onnx.data", size_threshold=0)
    assert (tmp_path / "m.onnx.data").is_file()
    lossless, _ = convert_onnx(str(path), lossless=True, n_pe=4)
    assert rel(InferenceSession(lossless).run(None, feeds)[0], ref) <= 1e-5
    comp, _ = convert_onnx(str(path), density=0.5, n_pe=4)
    assert rel(InferenceSession(comp).run(None, feeds)[0], _ort(to_dense(comp), feeds)[0]) <= 1e-4
    assert not any(t.external_data for t in comp.graph.initializer)  # the converted file holds its weights
    with pytest.raises(EIEFormatError, match="external file.*load the model from its path"):
        convert_onnx(path.read_bytes())
    outside = tmp_path / "sub"
    outside.mkdir()
    escaped = onnx.load(str(path), load_external_data=False)
    (tmp_path / "secret.bin").write_bytes((tmp_path / "m.onnx.data").read_bytes())
    (tmp_path / "link.onnx.data").symlink_to(tmp_path / "secret.bin")
    for where, loc in ((outside / "m.onnx", "../m.onnx.data"), (tmp_path / "other.onnx", "secret.bin"),
                       (tmp_path / "link.onnx", "link.onnx.data"), (tmp_path / "self.onnx", "self.onnx")):
        for t in escaped.graph.initializer:  # a file elsewhere, one not named after the model, a link, itself
            next(e for e in t.external_data if e.key == "location").value = loc
        onnx.save(escaped, str(where))
        with pytest.raises(EIEFormatError, match="not a file beside the model named after it"):
            convert_onnx(str(where))
    short = onnx.load(str(path), load_external_data=False)
    next(e for e in short.graph.initializer[0].external_data if e.key == "length").value = "999999"
    onnx.save(short, str(tmp_path / "m.onnx"))  # the same file, now saying W is longer than its data file
    with pytest.raises(EIEFormatError, match="past the end"):
        convert_onnx(str(path))


def test_w_at_x_in_branches_whose_local_values_share_a_name_but_not_a_rank():
    """``v`` is 2-D in one branch and of a rank shape inference cannot tell in the other (Unsqueeze by an outer
    constant): the first W @ v converts, the second stays onnxruntime's."""
    mm = helper.make_node
    then_g = helper.make_graph([mm("Identity", ["X"], ["v"]), mm("MatMul", ["W", "v"], ["o"], name="mm_then")],
                               "then", [], [helper.make_tensor_value_info("o", F, None)])
    else_g = helper.make_graph([mm("Unsqueeze", ["X", "ax"], ["v"]), mm("MatMul", ["W", "v"], ["o"], name="mm_else")],
                               "else", [], [helper.make_tensor_value_info("o", F, None)])
    m = model([mm("If", ["c"], ["Y"], name="if", then_branch=then_g, else_branch=else_g)],
              [vi("X", [10, 3]), vi("c", [], TensorProto.BOOL)], [helper.make_tensor_value_info("Y", F, None)],
              [w("W", 6, 10), numpy_helper.from_array(np.array([0], np.int64), "ax")])
    for c in (True, False):
        r = check(m, {"X": x(10, 3), "c": np.array(c)})
    assert eie_ops(r["comp"]) == ["EIELinear"]
    assert [(row["node"], "rank" in row["note"]) for row in r["rows"] if row["note"]] == [("mm_else", True)]


def test_constant_nodes_of_every_numeric_form_feed_weights_and_biases():
    """A bias from ``value_floats``, a reshape target from ``value_ints``, a scale from ``value_float``."""
    mm = helper.make_node
    wt = np.asarray(numpy_helper.to_array(w("W", 60)), np.float32)
    m = model([mm("Constant", [], ["wflat"], name="cw", value_floats=wt.tolist()),
               mm("Constant", [], ["shape"], name="cs", value_ints=[10, 6]),
               mm("Constant", [], ["scale"], name="cf", value_float=0.5),
               mm("Reshape", ["wflat", "shape"], ["W0"], name="rs"), mm("Mul", ["W0", "scale"], ["W"], name="mul"),
               mm("Constant", [], ["b"], name="cb", value_floats=[0.1, -0.2, 0.3, 0.0, 1.0, -1.0]),
               mm("MatMul", ["X", "W"], ["t"], name="mm"), mm("Add", ["t", "b"], ["Y"], name="add")],
              [vi("X", [4, 10])], [vi("Y", [4, 6])], [])
    r = check(m, {"X": x(4, 10)})
    assert eie_ops(r["comp"]) == ["EIELinear"] and plain_ops(r["comp"]) == []  # the chain and the bias folded


def test_non_finite_weights_and_biases_stay_onnxruntimes():
    """A NaN weight keeps its MatMul (with the reason); an Inf bias stays an Add after the converted MatMul."""
    mm = helper.make_node
    wn = numpy_helper.to_array(w("W", 10, 6)).copy()
    wn[3, 2] = np.nan
    bi = numpy_helper.to_array(w("b", 6)).copy()
    bi[1] = np.inf
    m = model([mm("MatMul", ["X", "Wn"], ["t"], name="nan_mm"), mm("MatMul", ["t", "W2"], ["u"], name="mm2"),
               mm("Add", ["u", "b"], ["Y"], name="add")], [vi("X", [4, 10])], [vi("Y", [4, 5])],
              [numpy_helper.from_array(wn, "Wn"), w("W2", 6, 5), numpy_helper.from_array(bi[:5], "b")])
    feeds = {"X": x(4, 10)}
    ref = _ort(m, feeds)[0]
    for kw in ({"lossless": True}, {"density": 0.5}):
        comp, rows = convert_onnx(m, n_pe=4, **kw)
        assert eie_ops(comp) == ["EIELinear" if "density" in kw else "EIEDenseLinear"]
        assert sorted(plain_ops(comp)) == ["Add", "MatMul"]
        assert [r["node"] for r in rows if "NaN or Inf" in r["note"]] == ["nan_mm"]
        if "lossless" in kw:  # (compressed: a NaN activation reaches only the weights pruning kept)
            got = InferenceSession(comp).run(None, feeds)[0]
            assert np.array_equal(np.isnan(got), np.isnan(ref)) and np.array_equal(np.isinf(got), np.isinf(ref))


def test_layers_inside_model_local_functions_convert():
    """A model-local function (one calling another) holding MatMul + Add: inlined, then converted."""
    mm = helper.make_node
    inner = helper.make_function("local", "Affine", ["x", "w", "b"], ["y"],
                                 [mm("MatMul", ["x", "w"], ["t"]), mm("Add", ["t", "b"], ["y"])],
                                 [helper.make_opsetid("", 17)])
    outer = helper.make_function("local", "Block", ["x", "w", "b"], ["y"],
                                 [mm("Affine", ["x", "w", "b"], ["a"], domain="local"), mm("Tanh", ["a"], ["y"])],
                                 [helper.make_opsetid("", 17), helper.make_opsetid("local", 1)])
    g = helper.make_graph([mm("Gemm", ["X", "W1"], ["h"], name="g1", transB=1),
                           mm("Block", ["h", "W2", "b2"], ["Y"], name="call", domain="local")], "g",
                          [vi("X", [4, 10])], [vi("Y", [4, 3])], [w("W1", 8, 10), w("W2", 8, 3), w("b2", 3)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)],
                          functions=[inner, outer])
    r = check(m, {"X": x(4, 10)})
    assert eie_ops(r["comp"]) == ["EIELinear", "EIELinear"] and plain_ops(r["comp"]) == ["Tanh"]
    assert not r["comp"].functions
