"""A cycle-level model of the EIE accelerator, with energy (paper Sections IV-VI).

>>> from eie_runtime.hardware import HardwareConfig, simulate
>>> report = simulate(layer, x)                       # paper defaults: 64 PEs, 800 MHz, FIFO 8
>>> report.time_us, report.load_efficiency, report.energy_uj, report.frames_per_j
>>> simulate([fc6, fc7, fc8], x, HardwareConfig(n_pe=256))   # a feed-forward chain
>>> simulate(lstm_core, x_seq)                        # any model: its EIE layer calls are traced
>>> sweep(["alex7", ("model.eie", x)], {"fifo_depth": [1, 2, 4, 8], "n_pe": [32, 64]})   # a table
>>> record_timeline(layer, x).to_html("run.html")   # per PE and cycle: busy / stalled / starved, queues

The per-cycle core is ``eie_runtime.hardware.cycle_model`` (Numba); timing
assumptions and the energy model are documented in ``docs/hardware.md``.
"""

from .config import HardwareConfig
from .energy import EnergyBreakdown
from .report import LayerReport, SimulationReport
from .simulate import prepare_layer, simulate, simulate_vector
from .sweep_table import SweepTable
from .sweeps import expand_grid, sweep
from .timeline import Timeline, record_timeline
from .trace import record_layer_calls, trace_model
from .workloads import Workload

__all__ = [
    "HardwareConfig", "simulate", "simulate_vector", "prepare_layer", "LayerReport", "SimulationReport",
    "EnergyBreakdown", "record_layer_calls", "trace_model", "sweep", "expand_grid", "SweepTable", "Workload",
    "record_timeline", "Timeline",
]
