"""Recurrent and small layers: EIE modules against dense torch and onnxruntime, side by side.

``python -m bench.recurrent`` times, at batch 1 and 16, in one run and
interleaved round by round (``bench.common.time_interleaved``):

- LSTMs: the paper's NT-LSTM size (600 input, 600 hidden, 100 steps), a
  speaker encoder's LSTM 40 -> 256 x 3 layers over 160 steps, a voice
  activity detector's LSTM(128) over 40 steps;
- GRUs of the same NT size and of 128 units over 40 steps;
- the demo's models (``eie_runtime.demo``: the digits MLP 64-512-512-10 and
  LSTM(8, 128) + Linear over 8 steps) and a 10 x 512 classifier layer;
- the sequence kernel's per-step overhead: an LSTM(1, 1) over 2000 steps,
  whose arithmetic is a few multiply-adds, so its time per step is what a
  step costs beyond its arithmetic.

Every EIE module is ``eie_runtime.torch.compress(module, density=0.1,
bits=4)`` of the dense one; "torch" is the dense module under
``torch.no_grad()``; "onnxruntime" is the dense module exported with
``torch.onnx.export`` (into memory) and run by an ``InferenceSession``. All three get the same thread count (``--threads``,
default 1: a recurrence is sequential, and the machine is shared).

Prints a table of median microseconds per call and the ratios, checks the
issue's targets ("What must hold") with their measured ratios, and writes
``out/recurrent.json`` and ``out/recurrent.png``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # torch's and Numba's pools share the cores

import numpy as np  # noqa: E402


@dataclass
class Case:
    name: str
    kind: str  # lstm, gru, demo-mlp, demo-lstm, linear
    shape: tuple  # (input, hidden, layers, steps) for rnn kinds; (in, out) for linear
    note: str = ""


CASES = [
    Case("nt-lstm", "lstm", (600, 600, 1, 100), "paper's NT-LSTM size"),
    Case("speaker-lstm", "lstm", (40, 256, 3, 160), "speaker encoder LSTM 40->256 x 3"),
    Case("vad-lstm", "lstm", (128, 128, 1, 40), "VAD LSTM(128), 40 steps"),
    Case("nt-gru", "gru", (600, 600, 1, 100), "GRU of NT size"),
    Case("gru-128", "gru", (128, 128, 1, 40), "GRU(128), 40 steps"),
    Case("demo-mlp", "demo-mlp", (64, 512), "demo MLP 64-512-512-10"),
    Case("demo-lstm", "demo-lstm", (8, 128, 1, 8), "demo LSTM(8,128)+Linear"),
    Case("fc-10x512", "linear", (512, 10), "10 x 512 classifier"),
    Case("step-overhead", "lstm", (1, 1, 1, 2000), "LSTM(1,1): per-step cost beyond arithmetic"),
]


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.recurrent", description=__doc__.split("\n")[0])
    p.add_argument("--cases", help="comma list of: " + " ".join(c.name for c in CASES) + " (default all)")
    p.add_argument("--batch", default="1,16", help="comma list of batch sizes (default 1,16)")
    p.add_argument("--threads", type=int, default=1, help="threads for torch, onnxruntime and Numba (default 1)")
    p.add_argument("--density", type=float, default=0.1)
    p.add_argument("--rounds", type=int, default=7, help="kept timing rounds per case and batch")
    p.add_argument("--round-ms", type=float, default=300.0, help="milliseconds per round, all methods")
    p.add_argument("--max-foreign", type=float, default=0.5,
                   help="a round is discarded when other processes took more than this many cores")
    p.add_argument("--json", default="out/recurrent.json")
    p.add_argument("--plot", default="out/recurrent.png")
    return p.parse_args(argv)


def build(case: Case, density: float, seed: int = 0):
    """(dense torch module, EIE module, input maker(batch) -> tensor) of a case."""
    import torch
    from torch import nn

    import eie_runtime.torch as et
    from eie_runtime.demo import DigitsLSTM, DigitsMLP

    torch.manual_seed(seed)
    if case.kind in ("lstm", "gru"):
        i, h, layers, steps = case.shape
        cls = nn.LSTM if case.kind == "lstm" else nn.GRU
        dense = cls(i, h, num_layers=layers).eval()
        make = lambda b: torch.randn(steps, b, i)  # noqa: E731
        dens = 1.0 if case.name == "step-overhead" else density
    elif case.kind == "demo-mlp":
        dense = DigitsMLP().eval()
        make = lambda b: torch.rand(b, 64)  # noqa: E731
        dens = density
    elif case.kind == "demo-lstm":
        dense = DigitsLSTM().eval()
        make = lambda b: torch.rand(b, 64)  # noqa: E731
        dens = density
    else:
        i, o = case.shape
        dense = nn.Linear(i, o).eval()
        make = lambda b: torch.randn(b, i)  # noqa: E731
        dens = density
    eie = et.compress(dense, density=dens, bits=4, n_pe="auto").eval()
    return dense, eie, make


def onnx_session(dense, x, threads: int):
    """An onnxruntime session on the dense module exported by ``torch.onnx.export`` (to memory), and its feed."""
    import onnxruntime as ort
    import torch

    buf = io.BytesIO()  # the exported bytes go straight to the session, no file left behind
    with torch.no_grad():
        torch.onnx.export(dense, (x,), buf, dynamo=False, input_names=["x"], opset_version=17)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
    feed = {"x": x.numpy()}
    return sess, feed


def check_outputs(case, dense, eie, x, sess, feed) -> float:
    """Largest |EIE - dense| on x, relative to the dense output's scale (EIE runs the pruned weights,
    so this shows it runs a real model of the same shape, not a match; the ort output is checked
    against torch to 1e-4)."""
    import torch

    with torch.no_grad():
        ref = dense(x)
        got = eie(x)
    ref = ref[0] if isinstance(ref, tuple) else ref
    got = got[0] if isinstance(got, tuple) else got
    ort_out = sess.run(None, feed)[0]
    if not np.allclose(ort_out, ref.numpy(), atol=1e-4):
        raise SystemExit(f"{case.name}: onnxruntime's output differs from torch's")
    return float((got - ref).abs().max() / max(1e-6, float(ref.abs().max())))


def run(args) -> dict:
    import torch
    from tqdm import tqdm

    from .common import machine_header, set_threads, time_interleaved

    threads = set_threads(args.threads)
    names = args.cases.split(",") if args.cases else [c.name for c in CASES]
    unknown = sorted(set(names) - {c.name for c in CASES})
    if unknown:
        raise SystemExit(f"unknown case(s) {unknown}; choose from {[c.name for c in CASES]}")
    batches = [int(b) for b in args.batch.split(",")]
    cases = [c for c in CASES if c.name in names]
    header = machine_header(args.threads)
    header["threads"] = threads
    header["load_before"] = os.getloadavg()
    records = []
    bar = tqdm(total=len(cases) * len(batches), desc="recurrent", file=sys.stderr)
    for case in cases:
        dense, eie, make = build(case, args.density)
        for b in batches:
            if case.name == "step-overhead" and b != 1:
                bar.update(1)
                continue
            x = make(b)
            sess, feed = onnx_session(dense, x, args.threads)
            rel = check_outputs(case, dense, eie, x, sess, feed)

            def t_dense(m=dense, x=x):
                with torch.no_grad():
                    m(x)

            def t_eie(m=eie, x=x):
                with torch.no_grad():
                    m(x)

            def t_ort(s=sess, f=feed):
                s.run(None, f)

            timings, info = time_interleaved({"torch": t_dense, "onnxruntime": t_ort, "eie": t_eie},
                                             rounds=args.rounds, round_s=args.round_ms / 1e3,
                                             max_foreign=args.max_foreign, max_rounds=3 * args.rounds)
            rec = {"case": case.name, "note": case.note, "batch": b,
                   **{f"{k}_us": timings[k].median_us for k in timings},
                   "eie_vs_torch": timings["torch"].median_us / timings["eie"].median_us,
                   "eie_vs_onnxruntime": timings["onnxruntime"].median_us / timings["eie"].median_us,
                   "rounds_kept": info["kept"], "rounds_tried": info["tried"], "noisy": info["noisy"],
                   "eie_rel_diff_vs_dense": rel}
            if case.kind in ("lstm", "gru"):
                rec["eie_us_per_step"] = timings["eie"].median_us / case.shape[3]
            records.append(rec)
            bar.update(1)
    bar.close()
    header["load_after"] = os.getloadavg()
    return {"header": header, "records": records, "targets": targets(records)}


def targets(records) -> list[dict]:
    """The issue's "What must hold", each with its measured ratio (ratios from this run)."""
    by = {(r["case"], r["batch"]): r for r in records}
    out = []

    def add(what, key, field, need, higher=True):
        r = by.get(key)
        if r is None:
            return
        v = r[field]
        out.append({"target": what, "measured": round(v, 2), "need": need,
                    "met": bool(v >= need if higher else v <= need)})

    add("NT-LSTM b1: EIE >= 2x faster than torch", ("nt-lstm", 1), "eie_vs_torch", 2.0)
    add("NT-LSTM b1: EIE >= 2x faster than onnxruntime", ("nt-lstm", 1), "eie_vs_onnxruntime", 2.0)
    add("speaker LSTM b1: EIE faster than torch", ("speaker-lstm", 1), "eie_vs_torch", 1.0)
    r = by.get(("vad-lstm", 1))
    if r is not None:
        v = r["eie_us"] / r["onnxruntime_us"]
        out.append({"target": "LSTM(128) x 40 b1: EIE within 1.5x of onnxruntime (EIE/ort time)",
                    "measured": round(v, 2), "need": 1.5, "met": bool(v <= 1.5)})
    add("sequence kernel per-step overhead < 2 us (LSTM(1,1), us/step)", ("step-overhead", 1), "eie_us_per_step",
        2.0, higher=False)
    add("demo MLP b1: EIE not slower than torch", ("demo-mlp", 1), "eie_vs_torch", 1.0)
    add("demo LSTM b1: EIE not slower than torch", ("demo-lstm", 1), "eie_vs_torch", 1.0)
    return out


def plot(result, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from eie_runtime.atomic import atomic_open

    recs = result["records"]
    labels = [f"{r['case']}\nb{r['batch']}" for r in recs]
    xs = np.arange(len(recs))
    fig, ax = plt.subplots(figsize=(max(8, 0.8 * len(recs)), 4.5))
    ax.bar(xs - 0.2, [r["eie_vs_torch"] for r in recs], 0.4, label="EIE vs dense torch")
    ax.bar(xs + 0.2, [r["eie_vs_onnxruntime"] for r in recs], 0.4, label="EIE vs onnxruntime")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_yscale("log")
    ax.set_xticks(xs, labels, fontsize=7)
    ax.set_ylabel("speedup (time of baseline / time of EIE)")
    ax.set_title(f"Recurrent and small layers, density 0.1, {result['header']['threads']['torch']} thread(s)")
    ax.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format=Path(path).suffix[1:] or "png", dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    from eie_runtime.atomic import atomic_open
    from eie_runtime.tables import format_table

    args = parse_args(argv)
    result = run(args)
    h = result["header"]
    print(f"# bench.recurrent: {h.get('cpu', '')}; threads {h['threads']}; "
          f"load before {h['load_before'][0]:.2f}, after {h['load_after'][0]:.2f}")
    rows = [{"case": r["case"], "batch": r["batch"], "torch us": f"{r['torch_us']:.1f}",
             "onnxruntime us": f"{r['onnxruntime_us']:.1f}", "EIE us": f"{r['eie_us']:.1f}",
             "EIE vs torch": f"{r['eie_vs_torch']:.2f}x", "EIE vs ort": f"{r['eie_vs_onnxruntime']:.2f}x",
             "us/step": f"{r['eie_us_per_step']:.2f}" if "eie_us_per_step" in r else "",
             "rounds": f"{r['rounds_kept']}/{r['rounds_tried']}" + (" noisy" if r["noisy"] else "")}
            for r in result["records"]]
    print(format_table(rows))
    print("\n## What must hold\n")
    print(format_table([{"target": t["target"], "measured": t["measured"], "need": t["need"],
                         "met": "yes" if t["met"] else "NO"} for t in result["targets"]]))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(args.json, "w") as f:
            json.dump(result, f, indent=1, default=str)
    if args.plot:
        plot(result, args.plot)
    print(f"\nwrote {args.json} and {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
