"""Fuzz child: load each mutant file named in a manifest and, when it loads, run it.

Usage: ``python eie_fuzz_child.py MANIFEST LOG``. For mutant ``i`` it appends
``B i`` to LOG before starting and ``R {json}`` when done (flushed), so the
parent can name the mutant a crash or a hang happened in. A mutant that loads
must run in both modes and agree with the plain-numpy/Python references of
``tests/reference.py``; anything else is reported as an error.
"""

import contextlib
import io
import json
import os
import resource
import signal
import sys
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: reference.py

import eie_runtime as eie  # noqa: E402
from eie_runtime.fixed_point import to_fixed  # noqa: E402
import reference  # noqa: E402

REFERENCE_MAX = 4_000_000  # M*K up to which float32 results are checked against numpy
FIXED_REFERENCE_MAX = 20_000  # ... and fixed16 against the per-element Python reference


class WrongResult(AssertionError):
    pass


def exercise(layer: eie.EIELinear, rng) -> None:
    m, k = layer.shape
    layer.matrix.stats()
    x = rng.standard_normal(k).astype(np.float32)
    x[rng.random(k) < 0.5] = 0.0  # sparse activations, as EIE expects
    xb = rng.standard_normal((3, k)).astype(np.float32)
    y = layer(x)
    yb = layer(xb)
    if y.shape != (m,) or yb.shape != (3, m) or y.dtype != np.float32:
        raise WrongResult(f"output shapes {y.shape}, {yb.shape} for a {m}x{k} layer")
    if m * k <= REFERENCE_MAX:
        dense = layer.dense()
        relu = layer.activation == "relu"
        for xi, yi in ((x, y), *zip(xb, yb)):
            want = reference.float32_layer(dense, xi, layer.bias, relu)
            bias = np.abs(layer.bias.astype(np.float64)) if layer.bias is not None else 0.0
            scale = np.abs(dense.astype(np.float64)).sum(axis=1) * float(np.abs(xi).max(initial=0)) + bias + 1.0
            ok = scale < 1e37  # rows whose float32 partial sums cannot overflow (huge codebooks can)
            if not (np.abs(yi[ok].astype(np.float64) - want[ok]) <= 1e-5 * scale[ok]).all():
                raise WrongResult("float32 output differs from the dense numpy reference")
    if layer.fixed is not None:
        fp = layer.fixed
        yq = layer.run_fixed16_int(to_fixed(x, fp.in_frac))
        layer(xb, mode="fixed16")
        if m * k <= FIXED_REFERENCE_MAX:
            want = reference.fixed16_layer(layer.matrix.tocodes(), layer.matrix.codebook, to_fixed(x, fp.in_frac),
                                           in_frac=fp.in_frac, w_frac=fp.w_frac, out_frac=fp.out_frac,
                                           bias=layer.bias, relu=layer.activation == "relu")
            if not np.array_equal(yq, want):
                raise WrongResult("fixed16 output differs from the bit-exact Python reference")


def run_one(path: str, rng) -> tuple[str, str]:
    # the harness's own self-test: prove that a crash and a hang are caught and named
    if path.endswith(".selftest-crash"):
        os.kill(os.getpid(), signal.SIGSEGV)
    if path.endswith(".selftest-hang"):
        time.sleep(3600)
    try:
        obj = eie.load(path)
    except eie.EIEFormatError as exc:
        return "rejected", f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001 - anything else is a finding
        return "error", f"load raised {type(exc).__module__}.{type(exc).__name__}: {exc}\n{traceback.format_exc()[-1500:]}"
    layers = obj if isinstance(obj, list) else [obj] if isinstance(obj, eie.EIELinear) else list(getattr(obj, "layers", []))
    try:
        for layer in layers:
            exercise(layer, rng)
    except Exception as exc:  # noqa: BLE001 - a layer that loads must run
        return "error", f"loaded but running raised {type(exc).__name__}: {exc}\n{traceback.format_exc()[-1500:]}"
    if hasattr(obj, "run") and hasattr(obj, "inputs"):  # a graph model: run it end to end
        return run_graph(obj, rng)
    if isinstance(obj, dict) or type(obj).__module__.startswith("eie_runtime.torch."):  # torch modules
        return run_torch(obj if isinstance(obj, dict) else {"": obj})
    return "ran", f"{len(layers)} layer(s)"


def run_torch(mods: dict) -> tuple[str, str]:
    """Every loaded torch module's core layers, then its forward on a well-shaped input."""
    import torch

    try:
        rng = np.random.default_rng(1)
        for mod in mods.values():
            for layer in mod.eie_layers():
                exercise(layer, rng)
    except Exception as exc:  # noqa: BLE001 - a layer that loads must run
        return "error", f"torch module layer raised {type(exc).__name__}: {exc}\n{traceback.format_exc()[-1500:]}"
    try:
        with torch.no_grad():
            for mod in mods.values():
                if hasattr(mod, "in_features"):
                    mod(torch.randn(2, mod.in_features))
                elif type(mod).__name__ == "EIELSTMCell":
                    mod(torch.randn(2, mod.input_size))
                else:
                    mod(torch.randn(2, 3, mod.input_size) if getattr(mod, "batch_first", False) else torch.randn(3, 2, mod.input_size))
    except eie.EIEError as exc:
        return "run_refused", f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001
        return "error", f"torch forward raised {type(exc).__name__}: {exc}\n{traceback.format_exc()[-1500:]}"
    return "ran", f"{len(mods)} torch module(s)"


def graph_feeds(model, rng) -> dict | None:
    feeds = {}
    for spec in model.inputs:
        if spec.shape is None:
            return None  # rank unknown: nothing sensible to feed
        shape = [2 if d is None else d for d in spec.shape]
        if int(np.prod(shape, dtype=object)) > 1_000_000:
            return None
        dt = np.dtype(spec.dtype)
        feeds[spec.name] = rng.standard_normal(shape).astype(dt) if dt.kind == "f" else np.zeros(shape, dt)
    return feeds


def run_graph(model, rng) -> tuple[str, str]:
    try:
        feeds = graph_feeds(model, rng)
    except Exception as exc:  # noqa: BLE001 - the graph's input specs passed validation
        return "error", f"graph input spec unusable: {type(exc).__name__}: {exc}"
    if feeds is None:
        return "ran", "graph loaded (no feedable inputs)"
    try:
        for mode in ("float32", "fixed16") if all(lay.fixed is not None for lay in model.layers) else ("float32",):
            model.run(feeds, mode=mode)
        calibrated = concurrent_calibration(model, feeds)
    except eie.EIEError as exc:  # a graph can be consistent yet unrunnable on these inputs: a clean refusal
        return "run_refused", f"{type(exc).__name__}: {exc}"
    except WrongResult as exc:
        return "error", f"concurrent calibration: {exc}"
    except Exception as exc:  # noqa: BLE001
        return "error", f"graph run raised {type(exc).__name__}: {exc}\n{traceback.format_exc()[-1500:]}"
    return "ran", "graph ran" + (" and calibrated while running" if calibrated else "")


def concurrent_calibration(model, feeds) -> bool:
    """Calibrate the graph in one thread while another runs it in float32: the runs must equal the
    sequential float32 result bit for bit, and the calibration the sequential one (issue 18)."""
    import threading

    if not model.layers or any(not np.isfinite(v).all() for v in feeds.values() if v.dtype.kind == "f"):
        return False
    want = model.run(feeds, mode="float32")
    try:
        model.calibrate(feeds)
    except eie.EIEError:
        return False  # e.g. a layer the run never reaches: nothing concurrent to compare
    fixed = [layer.fixed for layer in model.layers]
    got, errors = [], []

    def runner():
        try:
            for _ in range(3):
                got.append(model.run(feeds, mode="float32"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    t = threading.Thread(target=runner)
    t.start()
    try:
        model.calibrate(feeds)
    finally:
        t.join()
    if errors:
        raise errors[0]
    for out in got:
        if any(not np.array_equal(out[k], want[k], equal_nan=True) for k in want):
            raise WrongResult("a float32 run during calibration differs from the sequential run")
    if [layer.fixed for layer in model.layers] != fixed:
        raise WrongResult("calibrating while another thread ran gave other parameters than alone")
    return True


def run_input(path: str, rng) -> tuple[str, str]:
    """A mutated ``.npy`` / ``.npz`` given to ``eie run MODEL -i PATH`` (its handler, so the exception class
    is seen); MODEL is ``input-model.eie`` beside the mutant."""
    from eie_runtime import cli

    model = str(Path(path).parent / "input-model.eie")
    cli._EXTRA_COMMANDS[:] = cli._extra_commands()
    args = cli.build_parser().parse_args(["run", model, "-i", path])
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            args.func(args)
    except eie.EIEError as exc:
        return "rejected", f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001 - anything else is a finding
        return "error", f"eie run -i raised {type(exc).__module__}.{type(exc).__name__}: {exc}\n{traceback.format_exc()[-1500:]}"
    return "ran", "eie run -i"


def convert_one(path: str, rng) -> tuple[str, str]:
    """An ONNX mutant through `eie convert` (its handler, so the exception class is seen),
    then, when it converts, the .eie file through load-and-run."""
    from eie_runtime import cli

    out = path + ".eie"
    cli._EXTRA_COMMANDS[:] = cli._extra_commands()  # what cli.main does before parsing
    args = cli.build_parser().parse_args(["convert", path, "-o", out, "-q", "--pes", "4", "--density", "0.5"])
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            args.func(args)
    except eie.EIEError as exc:
        return "rejected", f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001 - anything else is a finding
        return "error", f"convert raised {type(exc).__module__}.{type(exc).__name__}: {exc}\n{traceback.format_exc()[-1500:]}"
    status, detail = run_one(out, rng)
    return ("ran" if status == "ran" else status), "converted; " + detail


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB. Linux's VmHWM counts this program only; getrusage's
    ru_maxrss also keeps the high-water mark of the process that spawned it (carried across exec), which
    was the pytest worker's 2.4-2.7 GB after the rest of the suite."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def warm_up(rng) -> None:
    """Compile (or load from Numba's cache) every kernel a mutant can reach, before the
    first mutant's clock starts: a cold compile on a busy machine is not a hang."""
    codes = rng.integers(0, 16, size=(40, 30)).astype(np.uint8)
    layer = eie.EIELinear(eie.InterleavedCSC.from_codes(codes, np.linspace(0, 1, 16, dtype=np.float32), 4),
                          bias=np.ones(40, np.float32), activation="relu")
    layer.calibrate(rng.standard_normal((4, 30)).astype(np.float32))
    exercise(layer, rng)
    for x in (np.ones(30, np.float32), np.zeros(30, np.float32), np.ones((2, 30), np.float32)):
        layer(x), layer(x, mode="fixed16")
    try:  # torch-modules files import torch: seconds, not to be charged to a mutant
        import eie_runtime.torch  # noqa: F401
    except ImportError:
        pass


def main(manifest: str, log: str, what: str = "eie") -> None:
    paths = Path(manifest).read_text().splitlines()
    rng = np.random.default_rng(0)
    warm_up(rng)
    if what == "onnx":  # the converted-ONNX path (EIE nodes inside ONNX, run by onnxruntime + EIE)
        from onnx_mutators import convert_and_run_onnx

        one = convert_and_run_onnx
    elif what == "input":  # CLI input arrays (.npy / .npz) through `eie run -i`
        one = run_input
    else:
        one = run_one
    with open(log, "a", buffering=1) as out:
        for i, path in enumerate(paths):
            out.write(f"B {i}\n")
            out.flush()
            t0 = time.perf_counter()
            status, detail = one(path, rng)
            # the child's peak resident memory so far: a bound on this mutant's peak (the parent reports the max)
            rss = peak_rss_mb()
            out.write("R " + json.dumps({"i": i, "status": status, "detail": detail[:3000],
                                         "seconds": time.perf_counter() - t0, "rss_mb": rss}) + "\n")
            out.flush()


if __name__ == "__main__":
    main(*sys.argv[1:4])
