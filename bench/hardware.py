"""Reproduce the paper's hardware experiments on the cycle-level simulator.

    python -m bench.hardware [--out out] [--summary PATH]

Table IV's EIE rows (9 layers, 64 PEs, FIFO 8), the real Alex-8 layer,
Figure 8 (load efficiency vs FIFO depth 1..256), Figures 11-13 (speedup,
padding entries and load efficiency vs PE count 1..256) and Table V's EIE
column (frames/s, frames/J on Alex-7). The layers are Table III's, uniform
random at the paper's densities, seeded (``eie_runtime.paper_layers``).
Writes ``hardware.md`` (the report), ``hardware.json`` (every figure) and
``hardware-figure*.png`` into ``--out`` (``out/``, which git ignores), and,
given ``--summary PATH``, the same report without the plots to PATH: that is
how ``bench/HARDWARE.md``, the recorded result, is refreshed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench.common import available_cores, cpu_model
from eie_runtime.atomic import atomic_open, atomic_write_text
from eie_runtime.paper_layers import PAPER_LAYERS, make_paper_input, make_paper_layer, real_alex8
from eie_runtime.hardware import HardwareConfig, prepare_layer, simulate_vector
from eie_runtime.hardware.energy import paper_power_w
from eie_runtime.fixed_point import to_fixed
from eie_runtime.layer import EIELinear

DEPTHS = [1, 2, 4, 8, 16, 32, 64, 128, 256]
PE_COUNTS = [1, 2, 4, 8, 16, 32, 64, 128, 256]
PAPER_TABLE_V = {"frames_per_s": 81967, "power_w": 0.59, "frames_per_j": 138927}
PLOTS = {  # figure -> file name in --out
    "figure8": "hardware-figure8-fifo-depth.png",
    "figure11": "hardware-figure11-speedup.png",
    "figure12": "hardware-figure12-padding.png",
    "figure13": "hardware-figure13-load-balance.png",
}


class Runner:
    """Runs layers and keeps the simulated PE-cycles and wall time (throughput figure)."""

    def __init__(self):
        self.pe_cycles = 0
        self.seconds = 0.0
        self.runs = 0

    def run(self, layer: EIELinear, x: np.ndarray, config: HardwareConfig):
        prep = prepare_layer(layer, config)
        t = time.perf_counter()
        r = simulate_vector(prep, to_fixed(x, layer.fixed.in_frac), config, verify=False)
        self.seconds += time.perf_counter() - t
        self.pe_cycles += r.cycles * config.n_pe
        self.runs += 1
        return r


def _with_pes(layer: EIELinear, n_pe: int) -> EIELinear:
    if layer.matrix.n_pe == n_pe:
        return layer
    return EIELinear(layer.matrix.reencode(n_pe), bias=layer.bias, activation=layer.activation,
                     fixed=layer.fixed, name=layer.name)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.hardware", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="out", help="folder for hardware.md, hardware.json and the plots (default: out)")
    ap.add_argument("--summary", help="also write the report, without plots, here (e.g. bench/HARDWARE.md)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    runner = Runner()
    names = list(PAPER_LAYERS)

    # --- the nine layers (64 PEs), calibrated once on their input
    layers, inputs = {}, {}
    for name in tqdm(names, desc="building Table III layers", leave=False):
        layer = make_paper_layer(name, n_pe=64, seed=args.seed)
        x = make_paper_input(name, seed=args.seed)
        layer.calibrate(x)
        layers[name], inputs[name] = layer, x
    base = HardwareConfig()

    # --- Table IV (and a bit-exactness check of every layer)
    table4 = {}
    for name in names:
        prep = prepare_layer(layers[name], base)
        x_q = to_fixed(inputs[name], layers[name].fixed.in_frac)
        t = time.perf_counter()
        r = simulate_vector(prep, x_q, base, verify=True)
        runner.seconds += time.perf_counter() - t
        runner.pe_cycles += r.cycles * base.n_pe
        table4[name] = r

    # --- the real Alex-8 layer and input
    rl, real_x = real_alex8()
    rl.calibrate(real_x)
    real = simulate_vector(prepare_layer(rl, base), to_fixed(real_x, rl.fixed.in_frac), base, verify=True)

    # --- sweeps
    fig8 = {n: {} for n in names}
    fig11 = {n: {} for n in names}  # PEs -> (cycles, padding, efficiency)
    steps = len(names) * (len(DEPTHS) + len(PE_COUNTS))
    with tqdm(total=steps, desc="sweeps (Figures 8, 11-13)") as bar:
        for name in names:
            for d in DEPTHS:
                r = runner.run(layers[name], inputs[name], base.replace(fifo_depth=d))
                fig8[name][d] = {"load_efficiency": r.load_efficiency, "alu_utilization": r.alu_utilization,
                                 "cycles": r.cycles}
                bar.update()
            for n_pe in PE_COUNTS:
                layer = _with_pes(layers[name], n_pe)
                r = runner.run(layer, inputs[name], base.replace(n_pe=n_pe))
                fig11[name][n_pe] = {"cycles": r.cycles, "time_us": r.time_us, "padding_entries": r.padding_entries,
                                     "padding_pct": 100 * r.padding_entries / max(1, r.stored_entries - r.padding_entries),
                                     "load_efficiency": r.load_efficiency, "passes": r.passes}
                bar.update()
    for name in names:
        t1 = fig11[name][1]["cycles"]
        for n_pe in PE_COUNTS:
            fig11[name][n_pe]["speedup"] = t1 / fig11[name][n_pe]["cycles"]

    # --- Table V (Alex-7, 64 PEs)
    a7 = table4["alex7"]
    table5 = {
        "time_us": a7.time_us,
        "frames_per_s": 1e6 / a7.time_us,
        "energy_uj": a7.energy.total,
        "power_w": a7.energy.total / a7.time_us,
        "frames_per_j": 1e6 / a7.energy.total,
        "paper_method_power_w": paper_power_w(64, base.lnzd_units),
        "paper_method_frames_per_j": 1e6 / a7.time_us / paper_power_w(64, base.lnzd_units),
    }
    elapsed = time.perf_counter() - t_start
    throughput = runner.pe_cycles / runner.seconds if runner.seconds else 0.0

    results = {
        "config": base.to_dict(),
        "table4": {n: r.to_dict() for n, r in table4.items()},
        "alex8_real": real.to_dict() if real else None,
        "figure8": fig8, "figure11_12_13": fig11, "table5": table5,
        "elapsed_s": elapsed, "pe_cycles_per_s": throughput, "simulated_pe_cycles": runner.pe_cycles,
    }
    atomic_write_text(out / "hardware.json", json.dumps(results, indent=1, default=float) + "\n")
    _plots(out, names, fig8, fig11)
    parts = (names, table4, real, fig8, fig11, table5, elapsed, throughput, runner)
    report = _report(*parts)
    atomic_write_text(out / "hardware.md", report)
    written = [str(out / "hardware.md"), str(out / "hardware.json"), str(out / "hardware-figure*.png")]
    if args.summary:
        summary = Path(args.summary)
        summary.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(summary, _report(*parts, summary_path=args.summary))
        written.append(str(summary))
    print(report)
    print("wrote " + ", ".join(written))
    return 0


def _plots(out: Path, names, fig8, fig11) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def bars(data, xs, key, title, ylabel, fname, log=False):
        fig, ax = plt.subplots(figsize=(11, 4))
        width = 0.8 / len(xs)
        for i, xv in enumerate(xs):
            ax.bar(np.arange(len(names)) + i * width, [data[n][xv][key] for n in names], width, label=str(xv))
        ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2)
        ax.set_xticklabels(names)
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
        ax.legend(fontsize=7, ncol=len(xs), loc="lower center", bbox_to_anchor=(0.5, -0.3))
        fig.tight_layout()
        with atomic_open(out / fname) as f:
            fig.savefig(f, format="png", dpi=110)
        plt.close(fig)

    bars(fig8, DEPTHS, "load_efficiency", "Figure 8: load efficiency vs FIFO depth (64 PEs)", "load efficiency",
         PLOTS["figure8"])
    bars(fig11, PE_COUNTS, "speedup", "Figure 11: speedup over 1 PE vs PE count (FIFO 8)", "speedup",
         PLOTS["figure11"], log=True)
    bars(fig11, PE_COUNTS, "padding_pct", "Figure 12: padding entries vs PE count",
         "padding entries (% of non-zero weights)", PLOTS["figure12"])
    bars(fig11, PE_COUNTS, "load_efficiency", "Figure 13: load efficiency vs PE count (FIFO 8)", "load efficiency",
         PLOTS["figure13"])


def _report(names, table4, real, fig8, fig11, table5, elapsed, throughput, runner, summary_path=None) -> str:
    """The markdown report: linking the PNGs written beside it, or, as the copy at ``summary_path``, without them."""
    plots = summary_path is None
    L = []
    L.append("# EIE hardware simulation: the paper's experiments\n")
    L.append("Generated by `python -m bench.hardware` (`make hardware`), which writes this report, "
             "`hardware.json` and the plots to `out/`. Cycle-level simulator: `eie_runtime.hardware`. "
             "Layers: Table III's shapes and densities, uniform random, seed 0; paper defaults "
             "(64 PEs, 800 MHz, FIFO 8, 64-bit SpMat SRAM, 16-bit pointers, 4-stage arithmetic with bypass). "
             "Timing assumptions and the energy model: `docs/hardware.md`. The simulated figures depend on "
             "the seed only, not on the machine; the run time does."
             + (f" This copy, without the plots, is a recorded result: `python -m bench.hardware --summary "
                f"{summary_path}` rewrites it." if summary_path else "") + "\n")
    L.append(f"Whole run on {cpu_model()} ({available_cores()} cores): {elapsed:.0f} s; "
             f"{runner.runs + len(table4)} layer simulations, "
             f"{runner.pe_cycles / 1e6:.0f} M simulated PE-cycles at {throughput / 1e6:.0f} M PE-cycles/s.\n")
    L.append("## Table IV, EIE rows (64 PEs, us)\n")
    L.append("| layer | act. density | theoretical (ours) | simulated | sim / theor. | paper theor. | paper actual "
             "| sim vs paper actual | within 15% | load eff. | padding | bit-exact |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    within = 0
    for n in names:
        r, spec = table4[n], PAPER_LAYERS[n]
        dev = r.time_us / spec.actual_us - 1
        ok = abs(dev) <= 0.15
        within += ok
        L.append(f"| {n} | {100 * r.activation_density:.1f}% | {r.theoretical_us:.2f} | {r.time_us:.2f} | "
                 f"{r.time_us / r.theoretical_us:.3f} | {spec.theoretical_us} | {spec.actual_us} | {dev:+.1%} | "
                 f"{'yes' if ok else 'no'} | {r.load_efficiency:.3f} | {r.padding_entries} | "
                 f"{'yes' if r.matches_kernel else 'NO'} |")
    ratios = [table4[n].time_us / table4[n].theoretical_us for n in names]
    L.append(f"\nWithin 15% of the paper's actual time: {within} of 9. Simulated/theoretical ratios: "
             f"{min(ratios):.3f} .. {max(ratios):.3f} (paper's own actual/theoretical: 1.04 .. 1.54).\n")
    if real is not None:
        L.append("## The real Alex-8 layer (eie_runtime/data/alexnet_fc8_real.npz)\n")
        L.append(f"Simulated {real.time_us:.2f} us ({real.cycles} cycles) vs the paper's 9.9 us "
                 f"({real.time_us / 9.9 - 1:+.1%}); theoretical {real.theoretical_us:.2f} us; "
                 f"activation density {100 * real.activation_density:.1f}%; load efficiency {real.load_efficiency:.3f}; "
                 f"busy cycles per PE {real.busy.min()}..{real.busy.max()} (the real layer's rows are unevenly "
                 f"dense); bit-exact: {'yes' if real.matches_kernel else 'NO'}.\n")
    L.append("## Figure 8: load efficiency vs FIFO depth (64 PEs)\n")
    L.append("Load efficiency = 1 - starved cycles / total cycles (a PE is starved when its queue is empty and "
             "nothing is in flight). ALU utilization (entries taken / cycles) in parentheses.\n")
    L.append("| layer | " + " | ".join(str(d) for d in DEPTHS) + " |")
    L.append("|---|" + "---|" * len(DEPTHS))
    for n in names:
        L.append(f"| {n} | " + " | ".join(f"{fig8[n][d]['load_efficiency']:.2f} ({fig8[n][d]['alu_utilization']:.2f})"
                                          for d in DEPTHS) + " |")
    mean = {d: np.mean([fig8[n][d]["load_efficiency"] for n in names]) for d in DEPTHS}
    L.append("| mean | " + " | ".join(f"{mean[d]:.2f}" for d in DEPTHS) + " |")
    L.append("\nPaper: \"At FIFO size = 1, around half of the total cycles are idle ... Load imbalance is reduced "
             "as FIFO depth is increased but with diminishing returns beyond a depth of 8.\"\n")
    if plots:
        L.append(f"![Figure 8]({PLOTS['figure8']})\n")
    def pe_sweep_table(title, key, fmt, quote, image):
        L.append(f"## {title}\n")
        L.append("| layer | " + " | ".join(str(p) for p in PE_COUNTS) + " |")
        L.append("|---|" + "---|" * len(PE_COUNTS))
        for n in names:
            L.append(f"| {n} | " + " | ".join(fmt(fig11[n][p][key]) for p in PE_COUNTS) + " |")
        L.append(f"\nPaper: \"{quote}\"\n")
        if plots:
            L.append(f"![{title.split(':')[0]}]({PLOTS[image]})\n")

    pe_sweep_table("Figure 11: speedup over 1 PE (FIFO 8)", "speedup", "{:.1f}".format,
                   "EIE achieves good scalability on all benchmarks except NT-We.", "figure11")
    pe_sweep_table("Figure 12: padding entries vs PE count", "padding_entries", str,
                   "As the number of PEs goes up, the number of padding zeros decreases.", "figure12")
    pe_sweep_table("Figure 13: load efficiency vs PE count (FIFO 8)", "load_efficiency", "{:.2f}".format,
                   "With more PEs, load balance becomes worse, but padding zero overhead decreases.",
                   "figure13")
    L.append("## Table V, EIE column (Alex-7, 64 PEs, 45 nm, 800 MHz)\n")
    L.append("| | simulated | paper |")
    L.append("|---|---|---|")
    L.append(f"| time per frame (us) | {table5['time_us']:.2f} | 12.2 |")
    L.append(f"| throughput (frames/s) | {table5['frames_per_s']:,.0f} | {PAPER_TABLE_V['frames_per_s']:,} |")
    L.append(f"| power (W), activity model | {table5['power_w']:.3f} | {PAPER_TABLE_V['power_w']} |")
    L.append(f"| energy efficiency (frames/J), activity model | {table5['frames_per_j']:,.0f} | "
             f"{PAPER_TABLE_V['frames_per_j']:,} |")
    L.append(f"| energy efficiency (frames/J), paper's method (time x 64 x 9.157 mW + LNZD) | "
             f"{table5['paper_method_frames_per_j']:,.0f} | {PAPER_TABLE_V['frames_per_j']:,} |")
    L.append("")
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
