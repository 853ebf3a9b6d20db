"""A picture of one run: per PE and cycle, busy / stalled / starved and the queue's occupancy.

>>> from eie_runtime.hardware.timeline import record_timeline
>>> tl = record_timeline(layer, x, HardwareConfig(fifo_depth=2))
>>> tl.to_png("run.png"); tl.to_html("run.html")     # the HTML page is self-contained

The classes are the simulator's (``docs/hardware.md``): **busy**, the
arithmetic unit took an entry; **stalled**, work is queued or in flight but
nothing issued (pointer and SpMat reads, empty slices, hazards); **starved**,
nothing to do (Figure 8's bubbles). Occupancy is the activations a PE's
queue holds at the end of the cycle. Long runs are drawn in bins of several
cycles, each pixel mixing the three classes' colours by their share.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_open
from ..errors import EIEInputError
from ..fixed_point import to_fixed
from ..layer import EIELinear
from . import cycle_model as _cm
from .config import HardwareConfig
from .report import LayerReport
from .simulate import prepare_layer, simulate_vector

CLASSES = ("busy", "stalled", "starved")
COLOURS = np.array([[0.20, 0.63, 0.17], [1.00, 0.60, 0.00], [0.85, 0.85, 0.85]])  # green, orange, light grey


@dataclass
class Timeline:
    """One layer run, cycle by cycle: ``state`` (cycles, n_pe) uint8 (0 busy, 1 stalled, 2 starved) and
    ``queue`` (cycles, n_pe) int16 occupancy, with the run's :class:`LayerReport`."""

    report: LayerReport
    state: np.ndarray
    queue: np.ndarray

    @property
    def config(self) -> HardwareConfig:
        return self.report.config

    @property
    def cycles(self) -> int:
        return self.state.shape[0]

    def binned(self, max_bins: int = 1200):
        """(shares (n_pe, bins, 3) of busy/stalled/starved, mean occupancy (n_pe, bins), cycles per bin)."""
        width = max(1, -(-self.cycles // max_bins))
        bins = -(-self.cycles // width)
        n_pe = self.state.shape[1]
        shares = np.zeros((n_pe, bins, 3))
        idx = np.arange(self.cycles) // width
        for c in range(3):
            np.add.at(shares[:, :, c].T, idx, (self.state == c).astype(np.float64))
        counts = np.bincount(idx, minlength=bins).astype(np.float64)
        shares /= counts[None, :, None]
        occupancy = np.zeros((bins, n_pe))
        np.add.at(occupancy, idx, self.queue.astype(np.float64))
        return shares, (occupancy / counts[:, None]).T, width

    def summary(self) -> dict:
        r = self.report
        return {"layer": r.name, "shape": f"{r.shape[0]}x{r.shape[1]}", "cycles": r.cycles,
                "time_us": round(r.time_us, 3), "load_efficiency": round(r.load_efficiency, 4),
                "alu_utilization": round(r.alu_utilization, 4), "n_pe": self.config.n_pe,
                "fifo_depth": self.config.fifo_depth, "sram_width": self.config.sram_width,
                "queue_release": self.config.queue_release, "pointer_reads": self.config.pointer_reads,
                "broadcast_stalls": r.broadcast_stalls, "max_occupancy": int(self.queue.max(initial=0))}

    def to_png(self, path, max_bins: int = 1200):
        """Three panels: the classes per PE over time, queue occupancy per PE, PEs per class over time."""
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch

        shares, occupancy, width = self.binned(max_bins)
        n_pe = shares.shape[0]
        extent = (0, self.cycles, n_pe - 0.5, -0.5)
        fig = Figure(figsize=(12, 8.5), layout="constrained")
        top, mid, bottom = fig.subplots(3, 1, sharex=True, height_ratios=[3, 3, 2])
        top.imshow(np.clip(shares @ COLOURS, 0, 1), aspect="auto", interpolation="nearest", extent=extent)
        top.set(ylabel="PE", title=self._title(width))
        top.legend(handles=[Patch(color=COLOURS[i], label=c) for i, c in enumerate(CLASSES)], loc="upper right",
                   fontsize=8, ncols=3)
        im = mid.imshow(occupancy, aspect="auto", interpolation="nearest", extent=extent, cmap="viridis", vmin=0,
                        vmax=max(1, self.config.fifo_depth))
        fig.colorbar(im, ax=mid, label="activations queued", pad=0.01)
        mid.set(ylabel="PE", title="activation queue occupancy")
        x = (np.arange(shares.shape[1]) + 0.5) * width
        bottom.stackplot(x, *(shares[:, :, c].sum(axis=0) for c in range(3)), colors=COLOURS, labels=CLASSES)
        bottom.set(xlabel="cycle", ylabel="PEs", ylim=(0, n_pe), xlim=(0, self.cycles))
        with atomic_open(path) as f:
            fig.savefig(f, format=Path(path).suffix.lstrip(".") or "png", dpi=110)
        return path

    def to_html(self, path, max_bins: int = 1200):
        """A self-contained page (inline data and script, no network): the same pictures, with a
        tooltip giving each PE's classes and occupancy at the pointer."""
        from ..atomic import atomic_write_text
        from .timeline_html import render_html

        shares, occupancy, width = self.binned(max_bins)
        atomic_write_text(path, render_html(self.summary(), shares, occupancy, width, COLOURS))
        return path

    def _title(self, width: int) -> str:
        s = self.summary()
        return (f"{s['layer']} {s['shape']} on {s['n_pe']} PEs, FIFO {s['fifo_depth']}: {s['cycles']} cycles, "
                f"load efficiency {s['load_efficiency']:.3f}" + (f" ({width} cycles per pixel)" if width > 1 else ""))


def record_timeline(layer: EIELinear, x, config: HardwareConfig | None = None, *, reencode: bool = False,
                    sample: int = 0) -> Timeline:
    """Simulate one input vector (row ``sample`` of a batch) through ``layer``, recording every cycle."""
    if not isinstance(layer, EIELinear):
        raise EIEInputError(f"a timeline records one EIELinear layer, got {type(layer).__name__}")
    config = config or HardwareConfig()
    samples = np.atleast_2d(layer.check_input(x))
    if not 0 <= sample < len(samples):
        raise EIEInputError(f"sample {sample} is out of range for {len(samples)} input row(s)")
    prep = prepare_layer(layer, config, reencode=reencode, calibrate_on=samples if layer.fixed is None else None)
    x_q = to_fixed(samples[sample], prep.layer.fixed.in_frac)
    cycles = simulate_vector(prep, x_q, config, verify=False).cycles  # to size the recording
    state = np.full((cycles, config.n_pe), _cm.TRACE_STARVED, dtype=np.uint8)
    queue = np.zeros((cycles, config.n_pe), dtype=np.int16)
    report = simulate_vector(prep, x_q, config, trace=(state, queue))
    return Timeline(report=report, state=state, queue=queue)
