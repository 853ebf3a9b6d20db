"""Exceptions that were not EIEErrors, and allocations not bounded before they happen (issue 18): each hostile
header field, constant, attribute, argument or output path below gives a clear EIEError naming what is wrong."""

import resource

import numpy as np
import pytest

import eie_runtime as eie
from eie_runtime import cli
from eie_runtime.format import InterleavedCSC
from eie_runtime.graph import GraphModel, Node, TensorSpec, model_from_file
from eie_runtime.graph import ops as graph_ops
from eie_runtime.model_file import decode_model_file, encode_model_file, read_model_file


def small_layer(m=6, k=4, name="fc"):
    w = np.random.default_rng(0).normal(size=(m, k)).astype(np.float32)
    return eie.compress_matrix(w, density=0.6, n_pe=2, name=name)


def graph(nodes, constants=None, layers=(), opset=17, outputs=("y",), x_shape=(None, 4)):
    return GraphModel(nodes, [TensorSpec("x", "float32", list(x_shape))], list(outputs), constants or {}, list(layers),
                      opset=opset)


def linear_graph():
    return graph([Node("Linear", "fc", ["x"], ["y"], {"layer": 0})], layers=[small_layer()])


def reload_with(model, edit):
    """``model`` saved, its header's graph object edited by ``edit(graph_header)``, loaded from bytes."""
    contents = model._eie_file_contents()
    edit(contents["meta"]["graph"])
    return model_from_file(decode_model_file(encode_model_file(**contents), "edited.eie"))


# ------------------------------------------------------------- graph headers
@pytest.mark.parametrize("outputs", [[[]], [["y"]], [{"a": 1}], [2**70]])
def test_graph_outputs_that_are_not_names_are_refused(outputs):
    def edit(g):
        g["outputs"] = outputs
    with pytest.raises(eie.EIEFormatError, match="graph outputs must be names"):
        reload_with(linear_graph(), edit)


@pytest.mark.parametrize("opset", [2**80, [17], 1.5, float("inf"), True, 0])
def test_graph_opsets_outside_the_range_are_refused(opset):
    def edit(g):
        g["opset"] = opset
    with pytest.raises(eie.EIEFormatError, match="opset"):
        reload_with(linear_graph(), edit)
    with pytest.raises(eie.EIEError, match="opset"):
        graph([Node("Relu", "r", ["x"], ["y"])], opset=opset)


@pytest.mark.parametrize("shape", [[2**32, 2**32], [2**62, 4, 0], [2**64, 0], [1] * 70])
def test_constant_shapes_that_wrap_int64_or_exceed_numpy_are_refused(shape):
    model = graph([Node("Add", "a", ["x", "c"], ["y"])], constants={"c": np.zeros(0, np.float32)})

    def edit(g):
        next(iter(g["constants"].values()))["shape"] = shape
    with pytest.raises(eie.EIEFormatError, match="constant 'c' holds 0 values"):
        reload_with(model, edit)


def test_attributes_beyond_int64_are_refused_when_the_graph_is_checked():
    with pytest.raises(eie.EIEFormatError, match="attribute 'shape' holds an integer outside int64"):
        graph([Node("Reshape", "r", ["x"], ["y"], {"shape": [2**70]})], opset=4)
    with pytest.raises(eie.EIEFormatError, match="attribute 'axis' holds an integer outside int64"):
        graph([Node("Softmax", "s", ["x"], ["y"], {"axis": -(2**70)})])


def test_constant_of_shape_values_beyond_their_dtype_are_refused_at_run():
    model = graph([Node("Shape", "s", ["x"], ["s"]),
                   Node("ConstantOfShape", "c", ["s"], ["y"], {"value": [2**70], "dtype": "int64"})])
    with pytest.raises(eie.EIEInputError, match=r"node 'c' \(ConstantOfShape\)"):
        model(np.ones((2, 4), np.float32))
    model = graph([Node("Shape", "s", ["x"], ["s"]),
                   Node("ConstantOfShape", "c", ["s"], ["y"], {"value": [1.0, 2.0], "dtype": [1]})])
    with pytest.raises(eie.EIEInputError, match=r"node 'c' \(ConstantOfShape\)"):
        model(np.ones((2, 4), np.float32))


@pytest.mark.parametrize("dtype", [object, np.complex64, "U3"])
def test_constants_of_dtypes_the_graph_cannot_run_or_save_are_refused(dtype):
    with pytest.raises(eie.EIEFormatError, match="constant 'c' has dtype"):
        graph([Node("Add", "a", ["x", "c"], ["y"])], constants={"c": np.zeros(4, dtype)})


# ------------------------------------------------- huge shapes from small graphs
def _peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@pytest.mark.parametrize("nodes, constants, what", [
    ([Node("ConstantOfShape", "c", ["big"], ["y"])], {"big": np.array([2**20, 2**20, 4], np.int64)}, "output"),
    ([Node("Expand", "e", ["x", "big"], ["y"])], {"big": np.array([2**16, 2**14, 1, 1], np.int64)}, "output"),
    ([Node("Reshape", "r", ["x", "col"], ["xc"]), Node("Mul", "m", ["xc", "row"], ["y"])],
     {"col": np.array([-1, 1], np.int64), "row": np.ones((1, 2**18), np.float32)}, "broadcast result"),
    ([Node("Gather", "g", ["x", "idx"], ["y"], {"axis": 1})], {"idx": np.zeros((2**10, 2**10), np.int64)}, "output"),
])
def test_ops_refuse_outputs_over_the_graph_limit_before_allocating(nodes, constants, what, monkeypatch):
    model = graph(nodes, constants, x_shape=(None, 4))
    x = np.ones((2**18 if nodes[0].op in ("Reshape", "Gather") else 2, 4), np.float32)
    before = _peak()
    with pytest.raises(eie.EIEInputError, match=rf"{what} of shape .* over GRAPH_LIMITS\['max_value_bytes'\]"):
        model(x)
    assert _peak() - before < 256 << 20
    monkeypatch.setitem(graph_ops.GRAPH_LIMITS, "max_value_bytes", 64)  # the limit is the user's to set
    with pytest.raises(eie.EIEInputError, match="over GRAPH_LIMITS"):
        graph([Node("Expand", "e", ["x", "s"], ["y"])], {"s": np.array([5, 4], np.int64)})(np.ones((1, 4), np.float32))


# ----------------------------------------------------------- torch-modules headers
@pytest.mark.parametrize("field, value", [("first_layer", float("inf")), ("first_layer", [0]), ("n_layers", 1.5),
                                          ("name", [1, 2]), ("name", {"a": 1}), ("n_layers", 2**80)])
def test_torch_module_header_fields_of_the_wrong_type_are_refused(tmp_path, field, value):
    torch = pytest.importorskip("torch")
    from eie_runtime.torch import compress, save

    path = tmp_path / "t.eie"
    save(compress(torch.nn.Sequential(torch.nn.Linear(4, 6)), density=0.5, n_pe=2), path)
    mf = read_model_file(path)
    mf.meta["modules"][0][field] = value
    raw = encode_model_file(mf.layers, kind=mf.kind, meta=mf.meta, extra=mf.extra)
    if value == float("inf"):
        assert b"Infinity" in raw  # what Python's json writes, and reads back as a float
    edited = tmp_path / "edited.eie"
    edited.write_bytes(raw)
    with pytest.raises(eie.EIEFormatError, match=f"{field}|bad module entry"):
        eie.load(edited)


def test_compressing_a_torchscript_module_is_refused_saying_what_to_pass():
    torch = pytest.importorskip("torch")
    from eie_runtime.torch import compress

    scripted = torch.jit.script(torch.nn.Sequential(torch.nn.Linear(4, 6)))
    with pytest.raises(eie.EIEInputError, match="plain torch.nn.Module.*before torch.jit.script"):
        compress(scripted, density=0.5, n_pe=2)


# ------------------------------------------------------------------ ONNX constants
def _onnx_model(nodes, inits=()):
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["a", "b"])], list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()


def test_onnx_constants_of_the_wrong_type_are_refused_at_conversion():
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from eie_runtime.onnx import convert

    strings = helper.make_tensor("c", TensorProto.STRING, [3], [b"a", b"b", b"c"])
    # converted before, then failed in save (safetensors cannot store strings)
    with pytest.raises(eie.EIEFormatError, match="constant 'c' has dtype object"):
        convert(_onnx_model([helper.make_node("Add", ["x", "c"], ["y"])], [strings]), density=0.5, n_pe=2)
    for value, said in ((strings, "3 value"), (helper.make_tensor("v", TensorProto.FLOAT, [0], []), "0 value")):
        model = _onnx_model([helper.make_node("Shape", ["x"], ["s"]),
                             helper.make_node("ConstantOfShape", ["s"], ["y"], value=value)])
        with pytest.raises(eie.EIEFormatError, match=f"attribute 'value' must be one number.*{said}"):
            convert(model, density=0.5, n_pe=2)


# ----------------------------------------------------------------------- arguments
@pytest.mark.parametrize("kwargs", [{"in_frac": "3"}, {"in_frac": 3.0}, {"in_frac": True}, {"in_frac": 99},
                                    {"headroom": "x"}, {"headroom": float("nan")}, {"headroom": 0.5}])
def test_calibrate_arguments_of_the_wrong_type_are_refused(kwargs):
    layer = small_layer()
    with pytest.raises(eie.EIEInputError, match="calibrate: (in_frac|headroom)"):
        layer.calibrate(np.ones((2, 4), np.float32), **kwargs)
    assert layer.fixed is None


# ------------------------------------------------------------------- output paths
def _converted_graph(tmp_path):
    path = tmp_path / "g.eie"
    eie.save(linear_graph(), path)
    np.save(tmp_path / "x.npy", np.ones((2, 4), np.float32))
    return path


@pytest.mark.parametrize("target", ["dir", "missing/y.npy", "/dev/null"])
def test_run_and_simulate_refuse_unwritable_outputs_before_any_work(tmp_path, capsys, target):
    model = _converted_graph(tmp_path)
    (tmp_path / "dir").mkdir()
    out = target if target.startswith("/") else str(tmp_path / target)
    layer_file = tmp_path / "l.eie"
    eie.save(small_layer(), layer_file)
    np.save(tmp_path / "xl.npy", np.ones(4, np.float32))
    for argv in (["run", str(model), "-i", str(tmp_path / "x.npy"), "-o", out],
                 ["simulate", str(layer_file), "--input", str(tmp_path / "xl.npy"), "--json", out]):
        assert cli.main(argv) == 2
        captured = capsys.readouterr()
        assert "not a regular file" in captured.err or "does not exist" in captured.err
        assert out in captured.err and "total:" not in captured.out and "y:" not in captured.out
    assert (tmp_path / "dir").is_dir() and not (tmp_path / "missing").exists()


def test_simulating_a_layer_needing_huge_pass_tables_is_refused_before_allocating():
    from eie_runtime.hardware import HardwareConfig, simulate
    from eie_runtime.hardware.simulate import SIMULATION_LIMITS

    mat = InterleavedCSC((1 << 18, 1 << 14), 1, np.zeros(0, np.uint8), np.zeros((1, (1 << 14) + 1), np.int32),
                         np.array([0.0, 1.0], np.float32))
    layer = eie.EIELinear(mat, name="wide")  # a 66 KB file; its pass tables would take 1.6 GB
    before = _peak()
    with pytest.raises(eie.EIEInputError, match=r"wide.*4096 output passes.*SIMULATION_LIMITS"):
        simulate(layer, np.ones(1 << 14, np.float32), HardwareConfig(n_pe=1))
    assert _peak() - before < 256 << 20
    assert SIMULATION_LIMITS["max_pass_table_bytes"] == 1 << 30


# ------------------------------------------------------------- names a file controls
def test_two_lstm_nodes_of_one_name_each_run_their_own_weights():
    """The graph's LSTM cores were cached by node name: the second node of a name ran with the first one's
    weights (a silent wrong answer). Now each node's result equals that node run alone."""
    h, i = 3, 4
    cells = [small_layer(4 * h, i + h + 1, name=f"cell{j}") for j in range(2)]
    cells[1] = eie.compress_matrix(np.random.default_rng(9).normal(size=(4 * h, i + h + 1)).astype(np.float32),
                                   density=0.6, n_pe=2, name="cell1")
    attrs = {"hidden_size": h, "layout": 0, "direction": "forward"}

    def lstm_graph(indices, outputs):
        nodes = [Node("LSTM", "same", ["x"], [o], {**attrs, "cells": [j]}) for j, o in zip(indices, outputs)]
        return GraphModel(nodes, [TensorSpec("x", "float32", [5, 2, i])], outputs, {}, cells, opset=17)

    x = np.random.default_rng(2).normal(size=(5, 2, i)).astype(np.float32)
    both = lstm_graph([0, 1], ["y0", "y1"])
    y0, y1 = both(x)
    alone0, alone1 = lstm_graph([0], ["y0"])(x), lstm_graph([1], ["y1"])(x)
    assert np.array_equal(y0, alone0) and np.array_equal(y1, alone1) and not np.array_equal(y0, y1)
    reloaded = model_from_file(decode_model_file(encode_model_file(**both._eie_file_contents()), "two.eie"))
    r0, r1 = reloaded(x)
    assert np.array_equal(r0, alone0) and np.array_equal(r1, alone1)
