"""Hostile EIE recurrent nodes, and hostile nodes inside If branches: refused when the session is created, with an
EIEFormatError naming the node, never at run time inside a kernel (issue 15, "Bad input")."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="needs the [onnx] extra")
pytest.importorskip("onnxruntime", reason="needs the [onnx] extra")
from onnx import helper, numpy_helper  # noqa: E402

from eie_runtime.errors import EIEFormatError  # noqa: E402
from eie_runtime.onnx import convert_onnx  # noqa: E402
from eie_runtime.onnx.session import InferenceSession  # noqa: E402

from test_onnx_inline import _nested_if_model  # noqa: E402
from test_onnx_quality_options import _rnn_model  # noqa: E402


@pytest.fixture(scope="module")
def rnn():
    return convert_onnx(_rnn_model(), density=0.3, n_pe=2, lstm_bias="dense")[0]


def _edit_init(model, suffix, fn):
    t = next(t for g in [model.graph] for t in g.initializer if t.name.endswith(suffix))
    t.CopyFrom(numpy_helper.from_array(fn(numpy_helper.to_array(t).copy()), t.name))


def _node(model, op):
    return next(n for n in model.graph.node if n.op_type == op)


def _codebook0(a):
    a[0] = 1.0
    return a


def _ptr_past(a):
    a[-1, -1] += 1000
    return a


ATTACKS = {
    "lstm codebook[0] != 0": ("lstm", lambda m: _edit_init(m, "lstm.d1.codebook", _codebook0), "codebook\\[0\\]"),
    "lstm ptr past entries": ("lstm", lambda m: _edit_init(m, "lstm.d0.ptr", _ptr_past), "ptr"),
    "lstm entries int32": ("lstm", lambda m: _edit_init(m, "lstm.d0.entries", lambda a: a.astype(np.int32)),
                           "entries"),
    "lstm bias float64": ("lstm", lambda m: _edit_init(m, "lstm.d1.bias", lambda a: a.astype(np.float64)), "bias"),
    "lstm bias NaN": ("lstm", lambda m: _edit_init(m, "lstm.d0.bias", lambda a: a * np.nan), "finite"),
    "lstm input missing": ("lstm", lambda m: _node(m, "EIELSTM").input.pop(), "inputs"),
    "lstm bias flag on dense": ("lstm", lambda m: _node(m, "EIELSTM").attribute.append(
        helper.make_attribute("dense", 1)), "attribute"),
    "gru short codebook": ("gru", lambda m: _edit_init(m, "gru.d0.hn.codebook", lambda a: a[:4]), "codebook"),
    "gru n_pes": ("gru", lambda m: [a for a in _node(m, "EIEGRU").attribute if a.name == "n_pes"][0].ints.pop(),
                  "n_pes"),
    "gru ptr shape": ("gru", lambda m: _edit_init(m, "gru.d0.hrz.ptr", lambda a: a[:, :-1]), "ptr"),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_hostile_recurrent_nodes_are_refused_at_session_creation(rnn, attack):
    name, edit, message = ATTACKS[attack]
    m = onnx.ModelProto()
    m.CopyFrom(rnn)
    edit(m)
    with pytest.raises(EIEFormatError, match=message) as info:
        InferenceSession(m)
    assert f"'{name}'" in str(info.value)


def test_hostile_node_inside_an_if_branch_is_refused_at_session_creation():
    conv, _ = convert_onnx(_nested_if_model(), density=0.5, n_pe=2)
    outer = next(n for n in conv.graph.node if n.op_type == "If")
    else_g = next(a.g for a in outer.attribute if a.name == "else_branch")  # a branch no run would take first
    cb = next(t for t in else_g.initializer if t.name.endswith(".codebook") and "fc4" in t.name)
    arr = numpy_helper.to_array(cb).copy()
    arr[0] = 0.5
    cb.CopyFrom(numpy_helper.from_array(arr, cb.name))
    with pytest.raises(EIEFormatError, match="codebook\\[0\\]") as info:
        InferenceSession(conv)
    assert "'fc4'" in str(info.value)
