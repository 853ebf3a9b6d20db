"""Plots from a sweep: the Pareto front, queue depth and PE scaling figures, written to files."""

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="plots need matplotlib (extras 'bench' or 'dse')")

from eie_runtime import EIELinear, InterleavedCSC  # noqa: E402
from eie_runtime.hardware import sweep  # noqa: E402
from eie_runtime.hardware.plots import line_slice, pareto_front, plot_sweep, reference_values  # noqa: E402


def test_pareto_front_keeps_only_unbeaten_rows():
    rows = [{"time_us": t, "energy_uj": e, "id": i} for i, (t, e) in enumerate([(1, 9), (2, 5), (3, 6), (4, 1),
                                                                                 (2, 7), (5, 1)])]
    rows.append({"time_us": 0.5, "energy_uj": 50, "id": 6, "error": "x"})  # failed runs are not candidates
    assert [r["id"] for r in pareto_front(rows)] == [0, 1, 3]


def test_sweep_plots_are_written(tmp_path):
    rng = np.random.default_rng(0)
    codes = np.where(rng.random((48, 40)) < 0.3, rng.integers(1, 16, (48, 40)), 0).astype(np.uint8)
    layer = EIELinear(InterleavedCSC.from_codes(codes, np.linspace(0, 1, 16, dtype=np.float32), 4), name="mine")
    x = np.abs(rng.normal(0, 1, 40)).astype(np.float32)
    table = sweep([(layer, x), "ntwe"], {"fifo_depth": [1, 2, 8], "n_pe": [16, 64], "sram_width": [32, 64]},
                  processes=1, cache=False, progress=False)
    assert reference_values(table) == {"n_pe": 64, "fifo_depth": 8, "sram_width": 64}
    depth_line = line_slice(table, "fifo_depth", "ntwe")
    assert [r["fifo_depth"] for r in depth_line] == [1, 2, 8] and {r["n_pe"] for r in depth_line} == {64}
    paths = plot_sweep(table, tmp_path / "plots")
    assert [p.name for p in paths] == ["sweep-pareto.png", "sweep-queue-depth.png", "sweep-pe-scaling.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000
