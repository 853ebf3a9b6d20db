"""Energy model of the simulated EIE, built on the paper's Table II and Table I.

Table II gives one PE's power at 800 MHz, 9.157 mW, broken down by module
(activation queue, pointer read, SpMat read, arithmetic unit, activation
read/write) and by component type (memory, clock network, register,
combinational). It was measured from the RTL's toggle rates on the paper's
benchmarks, i.e. in the steady state Section VI describes: the arithmetic
unit takes one entry per cycle and "both Spmat SRAM and Ptr SRAM are accessed
every 64/8 = 8 cycles".

The model turns those powers into energies per cycle and per event:

- **clock network** (1.874 mW per PE, Table II's "clock network" row): the
  clock toggles every cycle whatever the PE does, so it is charged per PE per
  cycle (2.34 pJ at any clock, the energy per cycle being what the RTL
  measured);
- **everything else** (the other 79.5 % of the power) is activity: each
  module's share of it is divided by the module's event rate in the steady
  state above, giving an energy per event:

  ============  ========  ====================================  ===================
  module        mW        event                                 steady-state rate
  ============  ========  ====================================  ===================
  Act queue     0.112     activation pushed into a queue        1 per 8 cycles
  PtrRead       1.807     pointer pair read (even+odd banks)    1 per 8 cycles
  SpmatRead     4.955     SpMat SRAM line read (64 bits)        1 per 8 cycles
  ArithmUnit    1.162     entry taken (useful or padding)       1 per cycle
  ActRW         1.122     accumulator read-modify-write         1 per cycle
  ============  ========  ====================================  ===================

  A SpMat read of another width costs ``width / 64`` times the 64-bit one (a
  first-order assumption: Cacti's curve, Figure 9, is not in the text).
- the **LNZD quadtree**: 0.023 mW per node (Section VI), charged per cycle.

So a layer that keeps every PE in that steady state draws exactly Table II's
9.157 mW per PE, and a PE starved for work draws only its clock power.

For scale, Table I (45 nm) prices the alternative EIE avoids: fetching the
dense, uncompressed float32 weights from DRAM (640 pJ per 32 bits) and doing
the float multiply-add (3.7 + 0.9 pJ). ``dram_dense_uj`` reports it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

# Table II, one PE at 800 MHz (mW)
PE_POWER_MW = 9.157
CLOCK_NETWORK_MW = 1.874
MODULE_POWER_MW = {
    "act_queue": 0.112,
    "ptr_read": 1.807,
    "spmat_read": 4.955,
    "arith": 1.162,
    "act_rw": 1.122,
}
TABLE_II_CLOCK_MHZ = 800.0
# Section VI: "one LNZD unit takes only 0.023mW"
LNZD_POWER_MW = 0.023
# Section VI steady state: events per cycle at which Table II was measured
REFERENCE_RATE = {"act_queue": 1 / 8, "ptr_read": 1 / 8, "spmat_read": 1 / 8, "arith": 1.0, "act_rw": 1.0}
REFERENCE_SRAM_WIDTH = 64

# Table I, 45 nm (pJ)
DRAM_32BIT_PJ = 640.0
SRAM_32BIT_PJ = 5.0
FLOAT_MULT_PJ = 3.7
FLOAT_ADD_PJ = 0.9
INT_ADD_PJ = 0.1
INT_MULT_PJ = 3.1

# the non-clock power, split in the modules' proportions (Table II's module rows sum to 9.158,
# its rounding; normalising keeps the steady state at exactly 9.157 mW)
_ACTIVITY_SHARE = (PE_POWER_MW - CLOCK_NETWORK_MW) / sum(MODULE_POWER_MW.values())


def _pj_per_cycle(mw: float) -> float:
    return mw * 1e-3 / (TABLE_II_CLOCK_MHZ * 1e6) * 1e12


CLOCK_PJ_PER_PE_CYCLE = _pj_per_cycle(CLOCK_NETWORK_MW)
LNZD_PJ_PER_CYCLE = _pj_per_cycle(LNZD_POWER_MW)
EVENT_PJ = {name: _pj_per_cycle(mw * _ACTIVITY_SHARE) / REFERENCE_RATE[name] for name, mw in MODULE_POWER_MW.items()}


@dataclass
class EnergyBreakdown:
    """Energy of one simulated run, in microjoules, by where it goes."""

    clock: float = 0.0
    act_queue: float = 0.0
    ptr_read: float = 0.0
    spmat_read: float = 0.0
    arith: float = 0.0
    act_rw: float = 0.0
    lnzd: float = 0.0

    @property
    def total(self) -> float:
        return (self.clock + self.act_queue + self.ptr_read + self.spmat_read + self.arith
                + self.act_rw + self.lnzd)

    def __add__(self, other: "EnergyBreakdown") -> "EnergyBreakdown":
        return EnergyBreakdown(**{k: v + getattr(other, k) for k, v in asdict(self).items()})

    def to_dict(self) -> dict:
        d = asdict(self)
        d["total"] = self.total
        return d


def layer_energy(*, cycles: int, n_pe: int, lnzd_units: int, queue_pushes: int, ptr_reads: int,
                 spmat_reads: int, entries_issued: int, useful_macs: int, sram_width: int) -> EnergyBreakdown:
    """Energy (uJ) of one layer run from its cycle count and event counts (see the module doc)."""
    uj = 1e-6  # pJ -> uJ
    return EnergyBreakdown(
        clock=cycles * n_pe * CLOCK_PJ_PER_PE_CYCLE * uj,
        act_queue=queue_pushes * EVENT_PJ["act_queue"] * uj,
        ptr_read=ptr_reads * EVENT_PJ["ptr_read"] * uj,
        spmat_read=spmat_reads * EVENT_PJ["spmat_read"] * (sram_width / REFERENCE_SRAM_WIDTH) * uj,
        arith=entries_issued * EVENT_PJ["arith"] * uj,
        act_rw=useful_macs * EVENT_PJ["act_rw"] * uj,
        lnzd=cycles * lnzd_units * LNZD_PJ_PER_CYCLE * uj,
    )


def dram_dense_uj(m: int, k: int) -> float:
    """Table I: a dense float32 M x V fetching every weight from DRAM (uJ)."""
    return m * k * (DRAM_32BIT_PJ + FLOAT_MULT_PJ + FLOAT_ADD_PJ) * 1e-6


def paper_power_w(n_pe: int, lnzd_units: int) -> float:
    """The paper's own accounting (Table V): every PE at Table II's 9.157 mW plus the LNZD nodes."""
    return (n_pe * PE_POWER_MW + lnzd_units * LNZD_POWER_MW) * 1e-3
