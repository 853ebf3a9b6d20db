"""The simulated EIE's parameters, defaulting to the paper's design point."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from ..errors import EIEInputError


QUEUE_RELEASE = ("finished", "pointer_read")
POINTER_READS = ("ahead", "in_order")
AUTHORS_SIMULATOR = {"queue_release": "pointer_read", "pointer_reads": "in_order", "output_passes": False}


@dataclass(frozen=True)
class HardwareConfig:
    """One EIE configuration. Every field is settable; the defaults are the paper's.

    Parameters
    ----------
    n_pe : int
        Processing elements (64; Section VI).
    clock_mhz : float
        Clock (800 MHz; Section VI, critical path 1.15 ns).
    fifo_depth : int
        Activation queue depth per PE (8; Section VI-C, Figure 8).
    sram_width : int
        SpMat SRAM line width in bits; ``sram_width // 8`` entries per read
        (64; Section IV "Sparse Matrix Read Unit").
    pointer_bits : int
        Width of the column pointers (16; Section IV "Pointer Read Unit").
    arith_stages : int
        Pipeline stages of the arithmetic unit (4; Section VI: codebook lookup
        and address accumulation, activation read and multiply, shift and
        add, activation write).
    bypass : bool
        The adder-output bypass for back-to-back updates of one accumulator
        (on; Section IV "Arithmetic Unit").
    pointer_read_cycles, spmat_read_cycles : int
        Latency of the pointer read (1: both pointers in one cycle from the
        even/odd banks) and of a SpMat SRAM read (1).
    regfile_entries : int
        Activations per PE in each activation register file (64; Section IV
        "Activation Read/Write"). Longer output slices run in several passes.

    Three modelling choices where the paper's text and the authors' C++
    simulator differ (``docs/hardware.md``, "Modelling choices"); the
    defaults follow the text, :meth:`authors_simulator` sets all three to
    the authors' model.

    queue_release : {"finished", "pointer_read"}
        When an activation leaves a PE's queue: when the PE has finished its
        column (a queue of depth D holds the column in progress and D - 1
        more; Section IV "each PE processes the activation at the head of
        its queue"), or when its pointers are read (the authors' model: D
        waiting activations besides the one being worked on).
    pointer_reads : {"ahead", "in_order"}
        The pointer read unit runs one column ahead of the arithmetic unit,
        hiding empty slices; or one unit reads pointers and issues addresses
        one column at a time, so each empty slice costs a cycle (the
        authors' model).
    output_passes : bool
        A PE with more output rows than ``regfile_entries`` runs the layer in
        passes, broadcasting the input again for each (Section IV "completed
        in several batches"); False: one activation memory of max(K, M)
        holds every output, one pass (the authors' model).
    """

    n_pe: int = 64
    clock_mhz: float = 800.0
    fifo_depth: int = 8
    sram_width: int = 64
    pointer_bits: int = 16
    arith_stages: int = 4
    bypass: bool = True
    pointer_read_cycles: int = 1
    spmat_read_cycles: int = 1
    regfile_entries: int = 64
    queue_release: str = "finished"
    pointer_reads: str = "ahead"
    output_passes: bool = True

    def __post_init__(self):
        for f in ("n_pe", "fifo_depth", "sram_width", "pointer_bits", "arith_stages",
                  "pointer_read_cycles", "spmat_read_cycles", "regfile_entries"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) and not hasattr(v, "__index__"):
                raise EIEInputError(f"hardware config: {f} must be an integer, got {v!r}")
            if int(v) < 1:
                what = "a FIFO depth of 0 cannot hold an activation" if f == "fifo_depth" else "sizes must be positive"
                raise EIEInputError(f"hardware config: {f}={v} must be >= 1 ({what})")
            object.__setattr__(self, f, int(v))
        if self.sram_width % 8:
            raise EIEInputError(f"hardware config: sram_width={self.sram_width} must be a multiple of 8 "
                                "(one SpMat entry is 8 bits)")
        if self.pointer_bits > 62:
            raise EIEInputError(f"hardware config: pointer_bits={self.pointer_bits} is beyond 62")
        try:
            clock = float(self.clock_mhz)
        except (TypeError, ValueError):
            raise EIEInputError(f"hardware config: clock_mhz must be a number, got {self.clock_mhz!r}") from None
        if not clock > 0 or clock == float("inf"):
            raise EIEInputError(f"hardware config: clock_mhz={self.clock_mhz} must be a positive finite number")
        object.__setattr__(self, "clock_mhz", clock)
        for f in ("bypass", "output_passes"):
            if not isinstance(getattr(self, f), bool):
                raise EIEInputError(f"hardware config: {f} must be True or False, got {getattr(self, f)!r}")
        for f, choices in (("queue_release", QUEUE_RELEASE), ("pointer_reads", POINTER_READS)):
            if getattr(self, f) not in choices:
                raise EIEInputError(f"hardware config: {f} must be one of {', '.join(map(repr, choices))}, "
                                    f"got {getattr(self, f)!r}")

    @classmethod
    def authors_simulator(cls, **changes) -> "HardwareConfig":
        """The three modelling choices set as in the authors' C++ simulator (RalphMao/EIE-simulator).

        Cycle counts then agree with that simulator run to completion (``docs/hardware.md``).
        """
        return cls(**{**AUTHORS_SIMULATOR, **changes})

    @property
    def entries_per_line(self) -> int:
        """SpMat entries (8 bits each) per SRAM read."""
        return self.sram_width // 8

    @property
    def front_latency(self) -> int:
        """Cycles from a column's pointer read to its first entry at the arithmetic unit."""
        return self.pointer_read_cycles + self.spmat_read_cycles

    @property
    def lnzd_units(self) -> int:
        """Leading-non-zero detection nodes of the quadtree (16 + 4 + 1 = 21 for 64 PEs)."""
        units, n = 0, self.n_pe
        while n > 1:
            n = -(-n // 4)
            units += n
        return max(units, 1)

    def cycles_to_us(self, cycles: float) -> float:
        return float(cycles) / self.clock_mhz

    def replace(self, **changes) -> "HardwareConfig":
        """A copy with some fields changed (validated again)."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise EIEInputError(f"hardware config has no field(s) {sorted(unknown)}")
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)
