"""A sweep's result: one row per workload x configuration, as a small table object."""

from __future__ import annotations

import csv
import io
import json

from ..atomic import atomic_write_text


class SweepTable:
    """Rows (dicts with the same keys) in workload-major, grid order.

    Each row holds the workload's name, every ``HardwareConfig`` field, and
    the run's figures: ``cycles``, ``time_us``, ``theoretical_us``,
    ``load_efficiency``, ``alu_utilization``, ``energy_uj`` and
    ``energy_<component>_uj`` (clock, act_queue, ptr_read, spmat_read,
    arith, act_rw, lnzd), ``power_w``, ``frames_per_s``, ``frames_per_j``,
    SRAM traffic (``spmat_reads`` lines, ``spmat_bytes``, ``ptr_reads``
    pointer pairs, ``ptr_bytes``, ``queue_pushes``), ``useful_macs``,
    ``padding_issued``, ``empty_slices``, ``broadcast_stalls``,
    ``matches_kernel``; ``error`` is the message when that configuration
    could not run (e.g. pointers too narrow), else None.

    ``cached`` and ``computed`` count the rows read from the cache and run.
    """

    def __init__(self, rows: list[dict], *, cached: int = 0, computed: int = 0, seconds: float = 0.0):
        self.rows = rows
        self.cached = cached
        self.computed = computed
        self.seconds = seconds

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __getitem__(self, i):
        return self.rows[i]

    def __repr__(self) -> str:
        return (f"SweepTable({len(self.rows)} rows: {len(self.workloads())} workload(s); {self.computed} run, "
                f"{self.cached} from the cache, {self.seconds:.1f} s)")

    @property
    def columns(self) -> list[str]:
        return list(self.rows[0]) if self.rows else []

    def workloads(self) -> list[str]:
        return list(dict.fromkeys(r["workload"] for r in self.rows))

    def column(self, name: str) -> list:
        return [r.get(name) for r in self.rows]

    def where(self, **equal) -> "SweepTable":
        """The rows whose fields equal the given values (``table.where(workload="alex7", n_pe=64)``)."""
        return SweepTable([r for r in self.rows if all(r.get(k) == v for k, v in equal.items())])

    def varying(self) -> list[str]:
        """The configuration fields that take more than one value in this table."""
        from .config import HardwareConfig

        fields = HardwareConfig().to_dict()
        return [f for f in fields if len({r.get(f) for r in self.rows}) > 1]

    def to_csv(self, path=None) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        if path is not None:
            atomic_write_text(path, buf.getvalue())
        return buf.getvalue()

    def to_json(self, path=None) -> str:
        text = json.dumps(self.rows, indent=1) + "\n"
        if path is not None:
            atomic_write_text(path, text)
        return text

    def to_pandas(self):
        import pandas as pd  # optional: only this method needs it

        return pd.DataFrame(self.rows)
