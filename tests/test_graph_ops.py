"""The graph executor's op registry: one entry per op drives both the structural checks and execution."""

import numpy as np
import pytest

from eie_runtime import EIEFormatError, EIEInputError
from eie_runtime.graph import (ELEMENTARY_OPS, LAYER_OPS, OPS, GraphModel, Node, TensorSpec, elementary_op,
                               run_elementary)
from eie_runtime.graph.ops import INT


def one_node(op, inputs=("x",), attrs=None, constants=None):
    node = Node(op, "n", list(inputs), ["y"], dict(attrs or {}))
    return GraphModel([node], [TensorSpec("x", "float32", [None, 3])], ["y"], constants or {}, [], opset=17)


def test_every_op_is_registered_once_with_arity_and_function():
    assert ELEMENTARY_OPS + LAYER_OPS == tuple(OPS)
    for name, spec in OPS.items():
        lo, hi = spec.arity
        assert spec.name == name and 1 <= lo <= hi and callable(spec.run)
        assert (spec.check is not None) == spec.layer, name
    with pytest.raises(ValueError, match="registered twice"):
        elementary_op("Relu")(lambda args, attrs, opset: args[0])


def test_checks_read_arity_and_attribute_kinds_from_the_registry():
    with pytest.raises(EIEFormatError, match=r"node 'n' \(Add\): takes 2\.\.2 inputs"):
        one_node("Add")
    with pytest.raises(EIEFormatError, match="attribute 'perm' must be a list of integers, got 'ab'"):
        one_node("Transpose", attrs={"perm": "ab"})
    with pytest.raises(EIEFormatError, match="attribute 'start' must be an integer, got None"):
        one_node("Shape", attrs={"start": None})
    one_node("Shape", attrs={"end": None})  # Shape's end may be null (to the last axis)
    with pytest.raises(EIEFormatError, match="attribute 'axis' must be an integer, got True"):
        one_node("Softmax", attrs={"axis": True})
    with pytest.raises(EIEFormatError, match=r"node 'n' \(Neg\): unknown op"):
        one_node("Neg")


def test_a_registered_op_is_checked_and_run():
    @elementary_op("Neg", attrs={"scale": INT})
    def _neg(args, attrs, opset):
        return -args[0] * attrs.get("scale", 1)

    try:
        x = np.arange(6, dtype=np.float32).reshape(2, 3)
        np.testing.assert_array_equal(one_node("Neg", attrs={"scale": 2})(x), -2 * x)
        with pytest.raises(EIEFormatError, match="attribute 'scale' must be an integer"):
            one_node("Neg", attrs={"scale": 1.5})
        with pytest.raises(EIEFormatError, match=r"\(Neg\): takes 1\.\.1 inputs"):
            one_node("Neg", inputs=("x", "x"))
    finally:
        del OPS["Neg"]


def test_run_elementary_results_and_refusals():
    x = np.array([[-1.0, 2.0, -3.0]], dtype=np.float32)
    np.testing.assert_array_equal(run_elementary("Relu", [x], {}, 17)[0], [[0.0, 2.0, 0.0]])
    assert run_elementary("Shape", [x], {"start": 1}, 17)[0].tolist() == [3]
    with pytest.raises(EIEInputError, match="op 'Foo' is not supported by the executor"):
        run_elementary("Foo", [x], {}, 17)
    with pytest.raises(EIEInputError, match="op 'Linear' is not supported by the executor"):
        run_elementary("Linear", [x], {}, 17)  # layer ops run on a model's layers, not here
    with pytest.raises(EIEInputError, match="inputs have different dtypes float32 and float64"):
        run_elementary("Add", [x, x.astype(np.float64)], {}, 17)
