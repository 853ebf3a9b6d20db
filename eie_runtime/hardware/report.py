"""What a simulation returns: one :class:`LayerReport` per layer run, summed in a :class:`SimulationReport`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from ..atomic import atomic_write_text
from .config import HardwareConfig
from .energy import EnergyBreakdown, dram_dense_uj


@dataclass
class LayerReport:
    """One layer's M x V (one input vector) on the simulated EIE.

    Attributes
    ----------
    name : str
    shape : (M, K)
    cycles : int
        Total cycles, from the first broadcast to the last accumulator write.
    theoretical_cycles : float
        Stored entries (padding included) x activation density / PEs (Section VI-A).
    busy, stalled, starved : int64 arrays (n_pe,)
        Per PE: cycles the arithmetic unit took an entry; cycles with work
        queued but nothing issued (pointer/SRAM reads, empty slices, hazards);
        cycles with nothing to do (Figure 8's bubbles).
    useful_macs, padding_issued : int
        Entries taken with a real weight / padding entries taken.
    padding_entries, stored_entries : int
        Of the stored matrix (all columns).
    nonzero_activations : int
    passes : int
        Output passes (rows per PE beyond the register file need several).
    ptr_reads, spmat_reads, queue_pushes, empty_slices, broadcast_stalls, hazard_stalls : int
    energy : EnergyBreakdown (uJ)
    output : int16 array (M,)
        The layer's outputs (``out_frac`` bits), equal to the fixed16 kernel's.
    fixed : dict
        ``in_frac``, ``w_frac``, ``out_frac`` used.
    calibrated : bool
        True when the layer had no fixed-point parameters and the simulator
        calibrated a copy on the given input.
    matches_kernel : bool or None
        Whether ``output`` equals ``EIELinear.run_fixed16_int`` (None if not checked).
    """

    name: str
    shape: tuple[int, int]
    config: HardwareConfig
    cycles: int
    theoretical_cycles: float
    busy: np.ndarray
    stalled: np.ndarray
    starved: np.ndarray
    useful_macs: int
    padding_issued: int
    padding_entries: int
    stored_entries: int
    nonzero_activations: int
    passes: int
    ptr_reads: int
    spmat_reads: int
    queue_pushes: int
    empty_slices: int
    broadcast_stalls: int
    hazard_stalls: int
    energy: EnergyBreakdown
    output: np.ndarray
    fixed: dict
    calibrated: bool = False
    matches_kernel: bool | None = None

    @property
    def time_us(self) -> float:
        return self.config.cycles_to_us(self.cycles)

    @property
    def theoretical_us(self) -> float:
        return self.config.cycles_to_us(self.theoretical_cycles)

    @property
    def activation_density(self) -> float:
        return self.nonzero_activations / max(1, self.shape[1])

    @property
    def load_efficiency(self) -> float:
        """Figure 8: 1 - starved (bubble) cycles / total cycles, over all PEs."""
        total = self.cycles * len(self.busy)
        return 1.0 - float(self.starved.sum()) / total if total else 1.0

    @property
    def alu_utilization(self) -> float:
        """Fraction of PE-cycles whose arithmetic unit took an entry."""
        total = self.cycles * len(self.busy)
        return float(self.busy.sum()) / total if total else 0.0

    def __repr__(self) -> str:
        m, k = self.shape
        return (f"LayerReport({self.name!r}, {m}x{k}, {self.cycles} cycles = {self.time_us:.2f} us "
                f"(theoretical {self.theoretical_us:.2f}), load efficiency {self.load_efficiency:.3f}, "
                f"{self.useful_macs} MACs, {self.energy.total:.4f} uJ)")

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "n_pe": self.config.n_pe,
            "cycles": int(self.cycles),
            "time_us": self.time_us,
            "theoretical_us": self.theoretical_us,
            "ratio_to_theoretical": self.time_us / self.theoretical_us if self.theoretical_us else None,
            "load_efficiency": self.load_efficiency,
            "alu_utilization": self.alu_utilization,
            "activation_density": self.activation_density,
            "nonzero_activations": int(self.nonzero_activations),
            "stored_entries": int(self.stored_entries),
            "padding_entries": int(self.padding_entries),
            "padding_issued": int(self.padding_issued),
            "useful_macs": int(self.useful_macs),
            "passes": int(self.passes),
            "sram_reads": {"spmat_lines": int(self.spmat_reads), "pointer_pairs": int(self.ptr_reads)},
            "activation_queue_pushes": int(self.queue_pushes),
            "accumulator_updates": int(self.useful_macs),
            "empty_slices": int(self.empty_slices),
            "broadcast_stall_cycles": int(self.broadcast_stalls),
            "hazard_stall_cycles": int(self.hazard_stalls),
            "busy_cycles": _summary(self.busy),
            "stalled_cycles": _summary(self.stalled),
            "starved_cycles": _summary(self.starved),
            "per_pe": {"busy": self.busy.tolist(), "stalled": self.stalled.tolist(), "starved": self.starved.tolist()},
            "energy_uj": self.energy.total,
            "energy_breakdown_uj": self.energy.to_dict(),
            "dram_dense_energy_uj": dram_dense_uj(*self.shape),
            "fixed": self.fixed,
            "calibrated": self.calibrated,
            "matches_kernel": self.matches_kernel,
        }


def _summary(a: np.ndarray) -> dict:
    if not a.size:
        return {"min": 0, "mean": 0.0, "max": 0}
    return {"min": int(a.min()), "mean": float(a.mean()), "max": int(a.max())}


@dataclass
class SimulationReport:
    """A whole run: the layers in execution order and their sums.

    Layers run one after another, the activation register files swapping
    roles between them (Section IV, "Activation Read/Write"), so times and
    energies add. ``frames`` is the number of input vectors (samples) run.
    """

    config: HardwareConfig
    layers: list[LayerReport] = field(default_factory=list)
    frames: int = 1

    @property
    def cycles(self) -> int:
        return int(sum(r.cycles for r in self.layers))

    @property
    def time_us(self) -> float:
        return self.config.cycles_to_us(self.cycles)

    @property
    def theoretical_us(self) -> float:
        return float(sum(r.theoretical_us for r in self.layers))

    @property
    def energy(self) -> EnergyBreakdown:
        total = EnergyBreakdown()
        for r in self.layers:
            total = total + r.energy
        return total

    @property
    def energy_uj(self) -> float:
        return self.energy.total

    @property
    def power_w(self) -> float:
        return self.energy_uj / self.time_us if self.time_us else 0.0

    @property
    def frames_per_s(self) -> float:
        return self.frames / (self.time_us * 1e-6) if self.time_us else float("inf")

    @property
    def frames_per_j(self) -> float:
        return self.frames / (self.energy_uj * 1e-6) if self.energy_uj else float("inf")

    @property
    def load_efficiency(self) -> float:
        """Figure 8's efficiency over the whole run (cycle-weighted)."""
        total = sum(r.cycles * len(r.busy) for r in self.layers)
        starved = sum(float(r.starved.sum()) for r in self.layers)
        return 1.0 - starved / total if total else 1.0

    @property
    def matches_kernel(self) -> bool | None:
        checked = [r.matches_kernel for r in self.layers if r.matches_kernel is not None]
        return all(checked) if checked else None

    def total_dict(self) -> dict:
        return {
            "layers": len(self.layers),
            "frames": self.frames,
            "cycles": self.cycles,
            "time_us": self.time_us,
            "theoretical_us": self.theoretical_us,
            "load_efficiency": self.load_efficiency,
            "useful_macs": int(sum(r.useful_macs for r in self.layers)),
            "padding_issued": int(sum(r.padding_issued for r in self.layers)),
            "energy_uj": self.energy_uj,
            "energy_breakdown_uj": self.energy.to_dict(),
            "power_w": self.power_w,
            "frames_per_s": self.frames_per_s,
            "frames_per_j": self.frames_per_j,
            "matches_kernel": self.matches_kernel,
        }

    def to_dict(self) -> dict:
        return {"config": self.config.to_dict(), "layers": [r.to_dict() for r in self.layers],
                "total": self.total_dict()}

    def write_json(self, path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    def rows(self) -> list[dict]:
        """Table rows (one per layer run) for ``format_table``."""
        out = []
        for r in self.layers:
            out.append({
                "layer": r.name, "shape": f"{r.shape[0]}x{r.shape[1]}", "act%": f"{100 * r.activation_density:.1f}",
                "cycles": r.cycles, "time_us": f"{r.time_us:.2f}", "theory_us": f"{r.theoretical_us:.2f}",
                "ratio": f"{r.time_us / r.theoretical_us:.3f}" if r.theoretical_us else "-",
                "load_eff": f"{r.load_efficiency:.3f}", "padding": r.padding_entries, "useful_macs": r.useful_macs,
                "energy_uj": f"{r.energy.total:.4f}",
                "bit_exact": {True: "yes", False: "NO", None: "-"}[r.matches_kernel],
            })
        return out

    def __repr__(self) -> str:
        return (f"SimulationReport({len(self.layers)} layer run(s), {self.cycles} cycles = {self.time_us:.2f} us "
                f"at {self.config.clock_mhz:g} MHz on {self.config.n_pe} PEs, {self.energy_uj:.4f} uJ, "
                f"load efficiency {self.load_efficiency:.3f})")
