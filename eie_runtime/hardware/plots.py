"""Plots from a sweep (matplotlib, to files): the latency/energy Pareto front, load efficiency against queue
depth (Figure 8's axes) and scaling against the PE count (Figures 11-13's), for any workloads.

>>> from eie_runtime.hardware import sweep
>>> from eie_runtime.hardware.plots import plot_sweep
>>> plot_sweep(sweep(["alex7", ("mine.eie", x)], {"fifo_depth": [1, 2, 4, 8], "n_pe": [16, 32, 64]}), "plots/")

One-dimensional plots hold every other varying field at a reference value:
the paper's default where the sweep has it, else the field's first value.
Figures are drawn with ``matplotlib.figure.Figure`` (no pyplot state, no
display needed).
"""

from __future__ import annotations

import math
from pathlib import Path

from ..atomic import atomic_open
from .config import HardwareConfig
from .sweep_table import SweepTable


def _figure(n_panels: int = 1, width: float = 5.0, height: float = 3.6):
    from matplotlib.figure import Figure

    cols = min(n_panels, 3)
    rows = math.ceil(n_panels / cols)
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def _ok(rows):
    return [r for r in rows if not r.get("error")]


def reference_values(table: SweepTable) -> dict:
    """For each varying configuration field: the paper's default if swept, else the first value."""
    default = HardwareConfig().to_dict()
    out = {}
    for f in table.varying():
        values = list(dict.fromkeys(table.column(f)))
        out[f] = default[f] if default[f] in values else values[0]
    return out


def line_slice(table: SweepTable, axis: str, workload: str) -> list[dict]:
    """The rows of ``workload`` along ``axis`` with every other varying field at its reference value."""
    fixed = {k: v for k, v in reference_values(table).items() if k != axis}
    rows = [r for r in _ok(table.where(workload=workload, **fixed).rows)]
    return sorted(rows, key=lambda r: r[axis])


def pareto_front(rows, x: str = "time_us", y: str = "energy_uj") -> list[dict]:
    """The rows no other row beats on both ``x`` and ``y`` (lower is better), sorted by ``x``."""
    front, best_y = [], math.inf
    for r in sorted(_ok(rows), key=lambda r: (r[x], r[y])):
        if r[y] < best_y:
            front.append(r)
            best_y = r[y]
    return front


def _label(row: dict, fields: list[str]) -> str:
    short = {"n_pe": "PE", "fifo_depth": "D", "sram_width": "W", "clock_mhz": "MHz"}
    return " ".join(f"{short.get(f, f)}{row[f]}" if f in short else f"{f}={row[f]}" for f in fields)


def plot_pareto(table: SweepTable, path) -> Path:
    """Latency against energy per frame for every configuration, one panel per workload, front marked."""
    workloads = table.workloads()
    fig, axes = _figure(len(workloads))
    fields = table.varying()
    for ax, w in zip(axes, workloads):
        rows = _ok(table.where(workload=w).rows)
        ax.scatter([r["time_us"] / r["frames"] for r in rows], [r["energy_uj"] / r["frames"] for r in rows], s=12,
                   c="0.6", label="configurations")
        front = pareto_front(rows)
        ax.plot([r["time_us"] / r["frames"] for r in front], [r["energy_uj"] / r["frames"] for r in front], "o-",
                color="C3", ms=4, label="Pareto front")
        for i, r in enumerate(front[:8]):  # labels alternate above and below: front points sit close
            ax.annotate(_label(r, fields), (r["time_us"] / r["frames"], r["energy_uj"] / r["frames"]), fontsize=6,
                        xytext=(4, 4 if i % 2 == 0 else -10), textcoords="offset points")
        ax.set(title=w, xlabel="latency per frame (us)", ylabel="energy per frame (uJ)")
        ax.legend(fontsize=7)
    return _save(fig, path)


def plot_queue_depth(table: SweepTable, path) -> Path:
    """Load efficiency (and time) against FIFO depth, one line per workload (Figure 8's axes)."""
    fig, (eff, t) = _figure(2)
    for w in table.workloads():
        rows = line_slice(table, "fifo_depth", w)
        d = [r["fifo_depth"] for r in rows]
        eff.plot(d, [r["load_efficiency"] for r in rows], "o-", ms=3, label=w)
        first = rows[0]["time_us"] if rows else 1.0
        t.plot(d, [r["time_us"] / first for r in rows], "o-", ms=3, label=w)
    for ax in (eff, t):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("activation FIFO depth")
        ax.grid(alpha=0.3)
    eff.set(ylabel="load efficiency", ylim=(0, 1.02), title="Load efficiency vs queue depth")
    t.set(ylabel="time / time at the smallest depth", title="Time vs queue depth")
    eff.legend(fontsize=7)
    return _save(fig, path)


def plot_pe_scaling(table: SweepTable, path) -> Path:
    """Speedup, padding issued and load efficiency against the PE count (Figures 11, 12 and 13's axes)."""
    fig, (speed, pad, eff) = _figure(3)
    lowest = None
    for w in table.workloads():
        rows = line_slice(table, "n_pe", w)
        if not rows:
            continue
        pes = [r["n_pe"] for r in rows]
        lowest = pes[0]
        speed.plot(pes, [rows[0]["cycles"] / r["cycles"] for r in rows], "o-", ms=3, label=w)
        pad.plot(pes, [r["padding_issued"] for r in rows], "o-", ms=3, label=w)
        eff.plot(pes, [r["load_efficiency"] for r in rows], "o-", ms=3, label=w)
    for ax in (speed, pad, eff):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("PEs")
        ax.grid(alpha=0.3)
    if lowest:
        counts = sorted(set(table.column("n_pe")))
        speed.plot(counts, [c / lowest for c in counts], "--", color="0.5", lw=1, label="linear")
    speed.set_yscale("log", base=2)
    speed.set(ylabel=f"speedup over {lowest} PEs" if lowest else "speedup", title="Scalability")
    pad.set(ylabel="padding entries issued", title="Padding")
    eff.set(ylabel="load efficiency", ylim=(0, 1.02), title="Load balance")
    speed.legend(fontsize=7)
    return _save(fig, path)


def plot_sweep(table: SweepTable, folder) -> list[Path]:
    """Every plot the sweep supports, into ``folder``: the Pareto front always; queue depth if it varies;
    PE scaling if the PE count varies. Returns the files written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = [plot_pareto(table, folder / "sweep-pareto.png")]
    varying = table.varying()
    if "fifo_depth" in varying:
        out.append(plot_queue_depth(table, folder / "sweep-queue-depth.png"))
    if "n_pe" in varying:
        out.append(plot_pe_scaling(table, folder / "sweep-pe-scaling.png"))
    return out


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as f:
        fig.savefig(f, format=path.suffix.lstrip(".") or "png", dpi=120)
    return path
