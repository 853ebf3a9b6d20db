"""Time a design-space sweep: 9 Table III layers x 5 FIFO depths x 4 PE counts x 3 SRAM widths (540 runs).

    python -m bench.sweep [--modes one,processes,ray] [--workers 2] [--reduced] [--out out/sweep]

Runs the same sweep (no result cache) in one process, in ``--workers`` local
processes, and on a local Ray cluster of ``--workers`` workers; checks that
the three tables are identical and prints each one's wall time and speed-up
over one process. Writes ``sweep.csv``, ``sweep.md`` (the timings) and the
sweep's plots into ``--out`` (``out/`` is git-ignored). ``--reduced`` runs 3
layers x 3 depths x 2 PE counts x 2 widths (36 runs) for a quick look.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

from eie_runtime.atomic import atomic_write_text
from eie_runtime.hardware import sweep
from eie_runtime.paper_layers import PAPER_LAYERS

FULL = {"layers": list(PAPER_LAYERS), "fifo_depth": [1, 2, 4, 8, 16], "n_pe": [16, 32, 64, 128],
        "sram_width": [32, 64, 128]}
REDUCED = {"layers": ["alex7", "vgg8", "ntwe"], "fifo_depth": [1, 4, 8], "n_pe": [32, 64], "sram_width": [32, 64]}


def _run(mode: str, layers, grid, workers: int):
    """(table, sweep seconds, start-up seconds): Ray's cluster start is timed apart from the sweep;
    the local process pool's start is part of the sweep (it starts per call)."""
    if mode in ("one", "processes"):
        t0 = time.perf_counter()
        table = sweep(layers, grid, processes=1 if mode == "one" else workers, cache=False, progress=True)
        return table, time.perf_counter() - t0, 0.0
    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    started = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        table = sweep(layers, grid, ray_address="local", cache=False, progress=True)
        return table, time.perf_counter() - t0, started
    finally:
        ray.shutdown()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", default="one,processes,ray", help="comma-separated: one, processes, ray")
    ap.add_argument("--workers", type=int, default=2, help="local processes / Ray workers (default 2)")
    ap.add_argument("--reduced", action="store_true", help="36 runs instead of 540")
    ap.add_argument("--out", default="out/sweep", help="output folder (default out/sweep)")
    args = ap.parse_args(argv)
    spec = REDUCED if args.reduced else FULL
    layers = spec["layers"]
    grid = {k: v for k, v in spec.items() if k != "layers"}
    n_runs = len(layers) * len(grid["fifo_depth"]) * len(grid["n_pe"]) * len(grid["sram_width"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timings, reference = [], None
    for mode in args.modes.split(","):
        table, seconds, started = _run(mode, layers, grid, args.workers)
        if reference is None:
            reference = table
            table.to_csv(out / "sweep.csv")
        same = table.rows == reference.rows
        timings.append((mode, seconds, started, same))
        print(f"{mode}: {n_runs} runs in {seconds:.1f} s ({n_runs / seconds:.1f} runs/s)"
              f"{f' after a {started:.1f} s cluster start' if started else ''}, "
              f"table {'identical' if same else 'DIFFERENT'}", flush=True)
    base = timings[0][1]
    label = {"one": "one process", "processes": f"{args.workers} local processes",
             "ray": f"local Ray cluster, {args.workers} workers"}
    lines = [f"# Sweep timing: {len(layers)} layers x {len(grid['fifo_depth'])} depths x {len(grid['n_pe'])} PE counts "
             f"x {len(grid['sram_width'])} SRAM widths = {n_runs} runs", "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; no result cache.", "",
             "| where | wall time (s) | runs/s | speed-up over the first | cluster start (s, not included) | "
             "same table |", "|---|---|---|---|---|---|"]
    for mode, seconds, started, same in timings:
        lines.append(f"| {label[mode]} | {seconds:.1f} | {n_runs / seconds:.1f} | {base / seconds:.2f}x | "
                     f"{f'{started:.1f}' if started else '-'} | {'yes' if same else 'NO'} |")
    atomic_write_text(out / "sweep.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    try:
        import matplotlib  # noqa: F401  (the plots need it: extras 'bench' or 'dse')
    except ImportError:
        return 0
    from eie_runtime.hardware.plots import plot_sweep

    for path in plot_sweep(reference, out):
        print(f"wrote {path}")
    return 0 if all(t[-1] for t in timings) else 1


if __name__ == "__main__":
    raise SystemExit(main())
