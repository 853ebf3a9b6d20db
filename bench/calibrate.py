"""Measure this machine's per-thread kernel costs, from which execution layouts pick their kernels.

    python -m bench.calibrate                      # print measured vs default costs, write out/kernel-costs.json
    python -m bench.calibrate --write costs.json   # write them elsewhere

The defaults in ``eie_runtime.kernel_costs`` were measured on the 2-core
benchmark machine, and by default a layer chooses by costs measured on its
own CPU (``eie_runtime.kernel_calibration``: two synthetic layers, one
thread, a few seconds, cached). This times the same kernels on the paper
layers, longer and with every thread: each single-vector kernel a layer
would run, on the nine paper layers (``--layers`` to choose; ``--quick``: the three
smallest), interleaved round by round in blocks of back-to-back calls as
``bench.kernels`` does, divides each median call by its work per thread
(sliced-ELL steps, stored entries for the gather, entries in non-zero
columns for the scatters; fixed16 with clamps, as calibrated layers run)
and reports each cost's median over the layers.
Use the file with ``EIE_KERNEL_COSTS=out/kernel-costs.json`` or
``kernel_costs.use(KernelCosts.load(...))``; docs/speed.md says how far the
figures carry from one layer to another.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from bench.common import available_cores, set_threads, time_interleaved
from eie_runtime.atomic import atomic_open
from eie_runtime.paper_layers import PAPER_LAYERS, make_paper_input, make_paper_layer
from eie_runtime.execution import ExecLayout
from eie_runtime import kernel_calibration
from eie_runtime.kernel_costs import KernelCosts
from eie_runtime.kernels import sliced_ell as _ell


def _layout(name: str, seed: int) -> ExecLayout:
    layer = make_paper_layer(name, seed=seed)
    # the defaults (not this CPU's cached costs) decide nothing here: the sliced ELL whatever its cost, to be timed
    return ExecLayout(layer.matrix, sliced_ell=_ell.AVAILABLE, costs=KernelCosts())


def _cases(ex: ExecLayout, x: np.ndarray) -> dict:
    """{cost name: (callable, work units per call)}: the cases self-calibration times, on a paper layer."""
    return kernel_calibration.cases(ex, x)


QUICK_LAYERS = ("alex8", "ntwe", "ntlstm")  # the smallest paper layers, both scatters among them


def measure(threads: int, layers=None, quick: bool = False, seed: int = 0, progress=None) -> tuple[dict, dict]:
    """Each cost's median over the layers ({name: ns per unit and thread}), and per layer
    ({layer: {name: ns}} and its timing statistics)."""
    layers = list(layers or (QUICK_LAYERS if quick else PAPER_LAYERS))
    per_layer, stats = {}, {}
    for name in layers:
        ex = _layout(name, seed)
        x = make_paper_input(name, seed=seed).astype(np.float32)
        cases = _cases(ex, x)
        fns = {cost: fn for cost, (fn, _) in cases.items()}
        for fn in fns.values():  # compile and warm outside the clock
            fn()
        timings, stats[name] = time_interleaved(fns, rounds=3 if quick else 7, round_s=0.06 if quick else 0.2,
                                                max_foreign=0.25, max_rounds=12 if quick else 30, progress=progress)
        per_layer[name] = {cost: timings[cost].median_us * 1e3 * threads / max(1, units)
                           for cost, (_, units) in cases.items()}
    names = {cost for costs in per_layer.values() for cost in costs}
    measured = {cost: float(np.median([c[cost] for c in per_layer.values() if cost in c])) for cost in names}
    return measured, {"per_layer": per_layer, "stats": stats}


def table(measured: dict, per_layer: dict, default: KernelCosts) -> str:
    """Default, median measured and per-layer figures of every cost, one row each."""
    layers = list(per_layer)
    rows = ["| cost (ns per unit and thread) | default | median | median / default | " + " | ".join(layers) + " |",
            "|---" * (4 + len(layers)) + "|"]
    for name, value in default.to_dict().items():
        got = measured.get(name)
        cells = [f"{per_layer[lay][name]:.3g}" if name in per_layer[lay] else "-" for lay in layers]
        head = f"{got:.3g} | {got / value:.2f}" if got is not None else "not measured: default kept | "
        rows.append(f"| {name} | {value:.3g} | {head} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", help="comma list of paper layers (default: all nine; quick: "
                                    + ",".join(QUICK_LAYERS) + ")")
    p.add_argument("--threads", type=int, default=available_cores(), help="threads (default: all cores)")
    p.add_argument("--write", metavar="PATH", default="out/kernel-costs.json",
                   help="where to write the costs as JSON for EIE_KERNEL_COSTS (default: out/kernel-costs.json)")
    p.add_argument("--quick", action="store_true", help="the three smallest layers, few short rounds (a smoke run)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error(f"--threads must be at least 1, got {args.threads}")
    layers = None
    if args.layers:
        layers = [name.strip() for name in args.layers.split(",") if name.strip()]
        unknown = [name for name in layers if name not in PAPER_LAYERS]
        if unknown or not layers:
            p.error(f"--layers: unknown layer(s) {', '.join(unknown) or '(none given)'}; "
                    f"choose from {' '.join(PAPER_LAYERS)}")
    threads = set_threads(args.threads)["numba"]
    from tqdm import tqdm

    with tqdm(desc="timing rounds", unit="round", file=sys.stderr) as bar:
        measured, detail = measure(threads, layers, quick=args.quick, seed=args.seed, progress=bar)
    default = KernelCosts()
    costs = KernelCosts.from_dict({**default.to_dict(), **measured}, source="measured costs")
    print(f"# {threads} thread(s); rounds kept: " + ", ".join(f"{name} {s['kept']} of {s['tried']}"
                                                            for name, s in detail["stats"].items()))
    print(table(measured, detail["per_layer"], default))
    if args.write:
        Path(args.write).parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(args.write, "w") as f:
            json.dump(costs.to_dict(), f, indent=2)
            f.write("\n")
        print(f"wrote {args.write}: use it with EIE_KERNEL_COSTS={args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
