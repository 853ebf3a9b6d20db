"""ONNX fuzzing: small valid seed models and a hypothesis mutator of ModelProtos."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from hostile_values import BIG_INTS

def onnx_seeds() -> dict:
    """Small valid ONNX models: an MLP (Gemm, Relu, MatMul, Add, Softmax) and an LSTM."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(11)

    def init(name, *shape):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    mlp = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W1", "B1"], ["h"], name="fc1", transB=1),
         helper.make_node("Relu", ["h"], ["r"], name="relu"),
         helper.make_node("MatMul", ["r", "W2"], ["m"], name="fc2"),
         helper.make_node("Add", ["m", "B2"], ["z"], name="bias2"),
         helper.make_node("Softmax", ["z"], ["y"], name="softmax", axis=-1)],
        "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 12])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 6])],
        [init("W1", 16, 12), init("B1", 16), init("W2", 16, 6), init("B2", 6)])
    t, i, h = 5, 4, 3
    lstm = helper.make_graph(
        [helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y", "Y_h", "Y_c"], name="lstm", hidden_size=h)],
        "lstm", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [t, "b", i])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [t, 1, "b", h]),
         helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [1, "b", h])],
        [init("W", 1, 4 * h, i), init("R", 1, 4 * h, h), init("B", 1, 8 * h)])
    return {name: helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
            for name, g in (("mlp", mlp), ("lstm", lstm))}


# ------------------------------------------------------------ ONNX mutants
ONNX_OPS = ["Gemm", "MatMul", "Add", "Relu", "LSTM", "Softmax", "Reshape", "Transpose", "Conv", "Identity",
            "Flatten", "Sigmoid", "Tanh", "Concat", "Squeeze", "NoSuchOp", ""]
INT64 = [v for v in BIG_INTS if -(2**63) <= v < 2**63]


def _mutate_proto(draw, m) -> str:
    """One edit of an ONNX ModelProto in place (initializers, nodes, attributes, I/O specs, opset)."""
    from onnx import TensorProto, helper

    g = m.graph
    what = draw(st.sampled_from(["init_dims", "init_type", "init_data", "init_external", "init_drop", "init_name",
                                 "op", "node_io", "attr", "attr_drop", "node_dup", "cycle", "io_dims", "io_type",
                                 "io_drop", "opset", "ir"]))
    if what.startswith("init") and g.initializer:
        t = g.initializer[draw(st.integers(0, len(g.initializer) - 1))]
        if what == "init_dims":
            dims = draw(st.lists(st.one_of(st.sampled_from(INT64), st.integers(0, 40)), max_size=4))
            del t.dims[:]
            t.dims.extend(dims)
        elif what == "init_type":
            t.data_type = draw(st.sampled_from([0, 1, 2, 3, 6, 7, 9, 10, 11, 16, 8, 99]))
        elif what == "init_data":
            raw = t.raw_data
            how = draw(st.sampled_from(["truncate", "extend", "nan", "float_data"]))
            if how == "truncate":
                t.raw_data = raw[:draw(st.integers(0, max(0, len(raw) - 1)))]
            elif how == "extend":
                t.raw_data = raw + draw(st.binary(min_size=1, max_size=64))
            elif how == "nan" and len(raw) >= 4:
                a = np.frombuffer(raw, dtype=np.float32).copy()
                a[draw(st.integers(0, a.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf, 3e38]))
                t.raw_data = a.tobytes()
            else:
                t.ClearField("raw_data")
                t.float_data.extend(draw(st.lists(st.floats(width=32), max_size=20)))
        elif what == "init_external":
            t.ClearField("raw_data")
            t.data_location = TensorProto.EXTERNAL
            for key, val in (("location", draw(st.sampled_from(["../../etc/passwd", "/etc/passwd", "w.bin", "", "..//x"]))),
                             ("offset", str(draw(st.sampled_from(INT64)))), ("length", str(draw(st.sampled_from(INT64))))):
                if draw(st.booleans()) or key == "location":
                    e = t.external_data.add()
                    e.key, e.value = key, val
        elif what == "init_drop":
            g.initializer.remove(t)
        else:
            t.name = draw(st.sampled_from(["", "x", "y", t.name + "_", "h"]))
        return what
    if what in ("op", "node_io", "attr", "attr_drop", "node_dup", "cycle") and g.node:
        n = g.node[draw(st.integers(0, len(g.node) - 1))]
        if what == "op":
            n.op_type = draw(st.sampled_from(ONNX_OPS))
        elif what == "node_io":
            seq = n.input if draw(st.booleans()) else n.output
            how = draw(st.sampled_from(["drop", "add", "rename"]))
            if how == "drop" and len(seq):
                del seq[draw(st.integers(0, len(seq) - 1))]
            elif how == "add":
                seq.append(draw(st.sampled_from(["", "x", "W1", "y", "nope", "r"])))
            elif len(seq):
                seq[draw(st.integers(0, len(seq) - 1))] = draw(st.sampled_from(["", "x", "nope", "y", "h", "X"]))
        elif what == "attr":
            name = draw(st.sampled_from(["transA", "transB", "alpha", "beta", "axis", "hidden_size", "direction",
                                         "layout", "clip", "input_forget", "activations", "perm", "allowzero"]))
            value = draw(st.one_of(st.sampled_from(INT64), st.integers(-3, 5), st.floats(width=32),
                                   st.sampled_from(["forward", "reverse", "bidirectional", "Sigmoid", ""]),
                                   st.lists(st.integers(-3, 3), max_size=4)))
            for a in list(n.attribute):
                if a.name == name:
                    n.attribute.remove(a)
            n.attribute.append(helper.make_attribute(name, value))
        elif what == "attr_drop" and len(n.attribute):
            del n.attribute[draw(st.integers(0, len(n.attribute) - 1))]
        elif what == "node_dup":
            g.node.append(n)
        elif what == "cycle" and len(n.input) and len(n.output):
            n.input[0] = n.output[0]
        return what
    if what.startswith("io"):
        seq = g.input if draw(st.booleans()) else g.output
        if not len(seq):
            return "noop"
        vi = seq[draw(st.integers(0, len(seq) - 1))]
        if what == "io_dims":
            dims = vi.type.tensor_type.shape.dim
            del dims[:]
            for d in draw(st.lists(st.one_of(st.sampled_from(INT64), st.integers(0, 20), st.just("b")), max_size=4)):
                dim = dims.add()
                if isinstance(d, str):
                    dim.dim_param = d
                else:
                    dim.dim_value = d
        elif what == "io_type":
            vi.type.tensor_type.elem_type = draw(st.sampled_from([0, 2, 6, 7, 9, 10, 11, 16, 99]))
        else:
            seq.remove(vi)
        return what
    if what == "opset":
        m.opset_import[0].version = draw(st.sampled_from([1, 6, 9, 12, 13, 17, 21, 22, 23, 99] + INT64))
        return what
    if what == "ir":
        m.ir_version = draw(st.sampled_from([0, 1, 3, 7, 8, 9, 10, 11, 99]))
        return what
    return "noop"


@st.composite
def onnx_mutants(draw, seeds: dict):
    """One mutant ONNX file: (bytes, description)."""
    import onnx

    name = draw(st.sampled_from(sorted(seeds)))
    m = onnx.ModelProto()
    m.CopyFrom(seeds[name])
    what = [name]
    n_proto, n_bytes = draw(st.sampled_from([(1, 0), (1, 0), (2, 0), (3, 0), (0, 1), (1, 1), (0, 2)]))
    for _ in range(n_proto):
        try:
            what.append(_mutate_proto(draw, m))
        except (ValueError, TypeError, IndexError, OverflowError) as exc:  # protobuf refused the edit itself
            what.append(f"noop ({type(exc).__name__})")
    try:
        raw = m.SerializeToString()
    except Exception:  # noqa: BLE001 - e.g. a value protobuf cannot encode
        raw = seeds[name].SerializeToString()
    b = bytearray(raw)
    for _ in range(n_bytes):
        op = draw(st.sampled_from(["truncate", "flip", "overwrite", "insert", "delete"]))
        i = draw(st.integers(0, max(0, len(b) - 1)))
        if op == "truncate":
            b = b[:i]
        elif op == "flip":
            if i < len(b):
                b[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=8))
            b[i:i + len(chunk)] = chunk
        elif op == "insert":
            b[i:i] = draw(st.binary(min_size=1, max_size=8))
        else:
            del b[i:i + draw(st.integers(1, 8))]
        what.append(op)
    return bytes(b), "; ".join(what)


# ------------------------------------------------------------ the converted-ONNX path
def convert_and_run_onnx(path: str, rng) -> tuple[str, str]:
    """An ONNX mutant through `eie convert -o X.onnx` (EIE nodes inside ONNX), then, when it converts, the
    converted file through InferenceSession on inputs shaped as the model declares (free axes 2)."""
    import contextlib
    import io
    import traceback

    from eie_runtime import cli
    from eie_runtime.errors import EIEError

    out = path + ".eie.onnx"
    cli._EXTRA_COMMANDS[:] = cli._extra_commands()  # what cli.main does before parsing
    args = cli.build_parser().parse_args(["convert", path, "-o", out, "-q", "--pes", "4", "--density", "0.5"])
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            args.func(args)
    except EIEError as exc:
        return "rejected", f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001 - anything else is a finding
        return "error", f"convert raised {type(exc).__module__}.{type(exc).__name__}: {exc}\n{traceback.format_exc()[-1500:]}"
    from eie_runtime.onnx.session import InferenceSession

    try:
        sess = InferenceSession(out)
    except Exception as exc:  # noqa: BLE001 - a file `eie convert` wrote must load
        return "error", f"converted, but loading raised {type(exc).__name__}: {exc}\n{traceback.format_exc()[-1500:]}"
    feeds = {}
    try:
        args = sess.get_inputs()
    except Exception as exc:  # noqa: BLE001 - a finding, not a dead child (which costs a one-by-one rerun)
        return "error", f"converted, but get_inputs() raised {type(exc).__name__}: {exc}\n{traceback.format_exc()[-1500:]}"
    for arg in args:
        if not arg.type.startswith("tensor("):
            return "ran", "converted; inputs are not tensors, not run"
        shape = [d if isinstance(d, int) and d > 0 else 2 for d in (arg.shape or [])]
        dtype = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(bool)": np.bool_}.get(arg.type)
        if dtype is None:
            return "ran", f"converted; input type {arg.type} not fed"
        if int(np.prod(shape, dtype=object)) > 1 << 22:  # a mutated input shape the harness cannot feed
            return "ran", f"converted; input {arg.name!r} declares shape {shape}, too big to feed"
        feeds[arg.name] = rng.standard_normal(shape).astype(dtype) if dtype == np.float32 else np.zeros(shape, dtype)
    try:
        sess.run(None, feeds)
    except EIEError as exc:  # e.g. onnxruntime refusing a mutated shape at run time, named
        return "rejected", f"converted; run refused: {type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001
        return "error", f"converted, but running raised {type(exc).__module__}.{type(exc).__name__}: {exc}\n{traceback.format_exc()[-1500:]}"
    return "ran", f"converted and ran ({len(sess.layers)} EIE layer(s))"
