"""``eie convert``, ``eie run``, ``eie export``: the ONNX workflow on the command line.

Registered by :mod:`eie_runtime.cli`. Importing this module imports no onnx: ``eie run`` needs
neither onnx nor torch; ``eie convert`` and ``eie export`` import onnx when they run.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..array_files import load_array_file
from ..atomic import atomic_write_bytes
from ..errors import EIEInputError
from ..graph import GraphModel
from ..model_file import load, save
from ..tables import format_table
from . import convert, export


def _positive_runs(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= 10**7:
        import argparse

        raise argparse.ArgumentTypeError(f"expects a number of runs from 1 to 10000000, got {text!r}")
    return n


def _parse_layer(text: str) -> tuple[str, float]:
    name, sep, value = text.rpartition("=")
    if not sep or not name:
        raise EIEInputError(f"--layer expects NAME=DENSITY, got {text!r}")
    try:
        return name, float(value)
    except ValueError:
        raise EIEInputError(f"--layer {text!r}: density {value!r} is not a number") from None


def _load_npy(path: str, what: str) -> np.ndarray:
    x = load_array_file(path, what)
    if isinstance(x, dict):
        raise EIEInputError(f"{what}: {path} is a .npz archive; give one .npy array per input (NAME=x.npy)")
    return x


def _parse_inputs(items: list[str], input_names: list[str], what: str) -> dict:
    feeds = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep:  # a bare path feeds the model's only input
            if len(input_names) != 1:
                raise EIEInputError(f"{what} {item!r}: the model has inputs {input_names}; write NAME=FILE.npy")
            name, path = input_names[0], item
        feeds[name] = _load_npy(path, f"{what} {name}")
    return feeds


def _convert_onnx(args, overrides) -> int:
    from .session import InferenceSession
    from .converter import convert_model

    proto, rows = convert_model(args.input, density=args.density, bits=args.bits, n_pe=args.pes, seed=args.seed,
                                layer_overrides=overrides, lossless=args.lossless, progress=not args.quiet,
                                init=args.init, lstm_bias=args.lstm_bias)
    if args.calibrate:
        sess = InferenceSession(proto)
        unseen = sess.calibrate(_parse_inputs(args.calibrate, sess.input_names, "--calibrate"))
        proto = sess.model
        if unseen:
            print(f"note: the calibration samples never reached {unseen}; they have no fixed16 parameters "
                  "(a fixed16 run that reaches them is refused)")
    data = proto.SerializeToString()
    atomic_write_bytes(args.output, data)
    done = sum(1 for r in rows if not str(r["note"]).startswith("kept"))
    size_in = Path(args.input).stat().st_size
    print(f"{args.input} ({size_in} bytes) -> {args.output} ({len(data)} bytes, {size_in / max(1, len(data)):.1f}x "
          f"smaller): {done} EIE layer matri(ces), {len(rows) - done} node(s) kept as they were")
    if rows:
        print(format_table(rows))
    return 0


def _convert(args) -> int:
    overrides = dict(_parse_layer(t) for t in args.layer or [])
    if str(args.output).endswith(".onnx"):
        return _convert_onnx(args, overrides)
    if args.init != "linear" or args.lstm_bias != "shared":
        raise EIEInputError("--init and --lstm-bias apply to .onnx outputs (EIE nodes inside ONNX); the older "
                            ".eie graph route keeps the defaults (linear, shared)")
    model = convert(args.input, density=args.density, bits=args.bits, n_pe=args.pes, layer_overrides=overrides,
                    seed=args.seed, lossless=args.lossless, progress=not args.quiet)
    if args.calibrate:
        model.calibrate(_parse_inputs(args.calibrate, model.input_names, "--calibrate"))
    save(model, args.output)
    rows = model.summary()
    print(f"{args.input} -> {args.output}: {len(model.nodes)} nodes, {len(rows)} layer(s), "
          f"inputs {model.input_names}, outputs {model.outputs}")
    print(format_table(rows))
    return 0


def _run_onnx(args) -> int:
    from .session import InferenceSession

    sess = InferenceSession(args.file, mode=args.mode)
    feeds = _parse_inputs(args.input, sess.input_names, "--input")
    names = [o.name for o in sess.get_outputs()]
    out = dict(zip(names, sess.run(None, feeds)))
    _print_outputs(out, args.output)
    if args.profile:
        _print_profile(sess, feeds, args.profile)
    return 0


def _print_profile(sess, feeds: dict, runs: int) -> None:
    """Where ``runs`` more runs spend their time: onnxruntime, the EIE kernels, the partition's own Python."""
    import time

    from tqdm import tqdm

    total = 0.0
    with sess.profile() as t:
        for _ in tqdm(range(runs), desc="profile", unit="run", mininterval=1.0):
            start = time.perf_counter()  # each run on its own: the progress bar's time is no run's
            sess.run(None, feeds)
            total += time.perf_counter() - start
    glue = max(total - t.ort_s - t.eie_s, 0.0)
    print(f"profile: {runs} runs, {total / runs * 1e3:.3f} ms per run: onnxruntime {t.ort_s / runs * 1e3:.3f} ms "
          f"({t.ort_calls / runs:g} calls), EIE kernels {t.eie_s / runs * 1e3:.3f} ms ({t.eie_calls / runs:g} calls), "
          f"the partition's Python {glue / runs * 1e6:.1f} us"
          + (f" ({glue / t.eie_calls * 1e6:.1f} us per EIE call)" if t.eie_calls else ""))


def _print_outputs(out, path):
    for name, arr in out.items():
        arr = np.asarray(arr)
        flat = arr.reshape(-1)
        head = np.array2string(flat[:6], precision=5, separator=", ")
        print(f"{name}: {arr.dtype} {tuple(arr.shape)} {head}{' ...' if flat.size > 6 else ''}")
    if path:
        buf = io.BytesIO()
        np.savez(buf, **out)
        atomic_write_bytes(path, buf.getvalue())
        print(f"wrote {path}")


def _run(args) -> int:
    if args.output:  # before any work: a directory, a device or a missing folder is refused now, not at the end
        from ..atomic import check_output_path

        check_output_path(args.output, "-o")
    if str(args.file).endswith(".onnx"):
        return _run_onnx(args)
    if args.profile:
        raise EIEInputError("--profile applies to .onnx models (EIE nodes inside ONNX)")
    model = load(args.file)
    if not isinstance(model, GraphModel):
        raise EIEInputError(f"{args.file}: `eie run` runs converted graph models (from `eie convert`), "
                            f"this file holds {type(model).__name__}")
    if args.mode == "fixed16":
        missing = [layer.name for layer in model.layers if layer.fixed is None]
        if missing:
            raise EIEInputError(f"{args.file}: layers {missing} have no fixed16 parameters; convert with "
                                "`eie convert ... --calibrate NAME=samples.npy` to run --mode fixed16")
    feeds = _parse_inputs(args.input, model.input_names, "--input")
    _print_outputs(model.run(feeds, mode=args.mode), args.output)
    return 0


def _export(args) -> int:
    if str(args.file).endswith(".onnx"):
        from .dense import to_dense

        proto = to_dense(args.file)
        atomic_write_bytes(args.output, proto.SerializeToString())
    else:
        proto = export(args.file, args.output)
    print(f"{args.file} -> {args.output}: {len(proto.graph.node)} ONNX nodes, opset {proto.opset_import[0].version}, "
          f"{Path(args.output).stat().st_size} bytes")
    return 0


def inspect_rows(path) -> list[dict]:
    """One row per EIE node matrix of a converted ``.onnx`` file (for ``eie inspect``)."""
    from .session import InferenceSession, _all_steps, _EIEStep

    sess = InferenceSession(path)
    rows = []
    for step in _all_steps(sess._plan):
        if not isinstance(step, _EIEStep):
            continue
        lays = step.kernel.layers or ([step.kernel.layer] if hasattr(step.kernel, "layer") else [])
        for lay in lays:
            if not hasattr(lay, "matrix"):  # lossless EIEDenseLinear
                w = lay.weight
                rows.append({"node": step.node.name, "op": step.node.op_type, "shape": f"{w.shape[0]}x{w.shape[1]}",
                             "n_pe": "-", "density": 1.0, "bits": 32, "stored": w.size, "padding": 0,
                             "bytes": w.nbytes, "ratio": 1.0, "ptr16": "-", "act": lay.activation or "-",
                             "fixed16": "-"})
                continue
            st = lay.matrix.stats()
            f = lay.fixed
            rows.append({"node": step.node.name, "op": step.node.op_type, "shape": f"{st.shape[0]}x{st.shape[1]}",
                         "n_pe": st.n_pe, "density": round(st.density, 4), "bits": lay.matrix.bits,
                         "stored": st.stored_entries, "padding": st.padding_entries, "bytes": st.nbytes,
                         "ratio": round(st.compression_ratio, 1), "ptr16": "yes" if st.fits_pointer_bits else "NO",
                         "act": lay.activation or "-",
                         "fixed16": "-" if f is None else f"{f.in_frac}/{f.w_frac}/{f.out_frac}"})
    return rows


def register(sub) -> None:
    """Add ``convert``, ``run`` and ``export`` to the ``eie`` command's subparsers."""
    c = sub.add_parser("convert", help="compress an ONNX model's FC/LSTM layers: -o X.onnx writes the same ONNX graph with "
                       "EIE-domain layer nodes (run by onnxruntime + EIE), -o X.eie the older numpy-executor graph")
    c.add_argument("input", help="ONNX model file")
    c.add_argument("-o", "--output", required=True, help="output file: .onnx (EIE nodes inside ONNX) or .eie")
    c.add_argument("--density", type=float, default=0.1, help="fraction of weights kept per layer (default 0.1)")
    c.add_argument("--bits", type=int, default=4, help="codebook index bits, 1..4 (default 4)")
    c.add_argument("--pes", type=int, default=64, help="processing elements (default 64)")
    c.add_argument("--seed", type=int, default=0, help="weight-sharing seed (default 0)")
    c.add_argument("--layer", action="append", metavar="NAME=DENSITY", help="per-layer density, by ONNX node name")
    c.add_argument("--lossless", action="store_true", help="keep exact float32 weights (no pruning/sharing)")
    c.add_argument("--init", choices=("linear", "density", "quantile", "random"), default="linear",
                   help="k-means codebook initialisation (default linear, the paper's best)")
    c.add_argument("--lstm-bias", choices=("shared", "dense"), default="shared",
                   help="LSTM/GRU bias columns pruned and shared with the weights (default, the paper's "
                        "NT-LSTM) or kept exact in float32 beside the matrices")
    c.add_argument("--calibrate", action="append", metavar="NAME=FILE.npy",
                   help="sample inputs to calibrate fixed16 mode (batched like the model's inputs)")
    c.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=_convert)

    r = sub.add_parser("run", help="run a converted model on .npy inputs: .onnx with EIE nodes (onnxruntime runs the "
                       "rest) or a .eie graph (needs neither torch nor onnx)")
    r.add_argument("file")
    r.add_argument("--input", "-i", action="append", metavar="NAME=FILE.npy", help="an input (repeat per input)")
    r.add_argument("-o", "--output", help="write the outputs to this .npz file")
    r.add_argument("--mode", choices=("float32", "fixed16"), default="float32")
    r.add_argument("--profile", type=_positive_runs, metavar="RUNS", default=0,
                   help="(.onnx) then run RUNS more times and print where the time goes: onnxruntime, the EIE "
                        "kernels, the partition's own Python")
    r.set_defaults(func=_run)

    e = sub.add_parser("export", help="write a converted model (.onnx with EIE nodes, or .eie) as plain dense ONNX")
    e.add_argument("file")
    e.add_argument("-o", "--output", required=True, help="output .onnx file")
    e.add_argument("--dense", action="store_true", help="dense weights (the only form written; kept for clarity)")
    e.set_defaults(func=_export)
