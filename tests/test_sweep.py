"""eie_runtime.hardware.sweep: grids, workloads of every kind, the result cache, processes, Ray, `eie sweep`."""

import csv
import json

import numpy as np
import pytest

from eie_runtime import EIEError, EIELinear, InterleavedCSC, save
from eie_runtime.cli import main as eie_main
from eie_runtime.converters.lstm import LSTMDirectionWeights, compress_lstm
from eie_runtime.hardware import HardwareConfig, SweepTable, Workload, expand_grid, simulate, sweep
from eie_runtime.hardware.sweep_cli import parse_grid


def small_layer(seed, m=40, k=32, n_pe=4, name="s"):
    rng = np.random.default_rng(seed)
    codes = np.where(rng.random((m, k)) < 0.3, rng.integers(1, 16, (m, k)), 0).astype(np.uint8)
    codebook = np.zeros(16, dtype=np.float32)
    codebook[1:] = rng.normal(0, 0.5, 15).astype(np.float32)
    layer = EIELinear(InterleavedCSC.from_codes(codes, codebook, n_pe), bias=rng.normal(0, .1, m).astype(np.float32),
                      activation="relu", name=name)
    x = np.where(rng.random(k) < 0.5, np.abs(rng.normal(0, 1, k)), 0).astype(np.float32)
    return layer, x


GRID = {"fifo_depth": [1, 4], "n_pe": [2, 4]}


def test_grid_expansion_and_parsing():
    configs = expand_grid({"fifo_depth": [1, 2, 4], "n_pe": 8, "pointer_reads": ["ahead", "in_order"]})
    assert len(configs) == 6 and {c.n_pe for c in configs} == {8}
    assert [(c.fifo_depth, c.pointer_reads) for c in configs[:2]] == [(1, "ahead"), (1, "in_order")]
    base = HardwareConfig.authors_simulator()
    assert expand_grid({"fifo_depth": [2]}, base)[0].queue_release == "pointer_read"
    assert expand_grid([{"n_pe": 4}, HardwareConfig(n_pe=2)])[1].n_pe == 2
    assert parse_grid(["fifo_depth=1,2", "bypass=no", "clock_mhz=1e3", "queue_release=pointer_read"]) == {
        "fifo_depth": [1, 2], "bypass": [False], "clock_mhz": [1000.0], "queue_release": ["pointer_read"]}
    for bad in (["fifo=1"], ["fifo_depth=two"], ["bypass=maybe"], ["fifo_depth"]):
        with pytest.raises(EIEError):
            parse_grid(bad)
    with pytest.raises(EIEError, match="no field"):
        expand_grid({"depth": [1]})
    with pytest.raises(EIEError):
        expand_grid({"fifo_depth": [0]})


def test_rows_equal_direct_simulation_and_are_cached(tmp_path):
    (a, xa), (b, xb) = small_layer(1, name="a"), small_layer(2, name="b")
    table = sweep([(a, xa), Workload("second", target=[b], x=xb)], GRID, processes=1, cache=tmp_path,
                  progress=False)
    assert isinstance(table, SweepTable) and len(table) == 8 and table.computed == 8 and table.cached == 0
    assert table.workloads() == ["a", "second"]
    assert table.varying() == ["n_pe", "fifo_depth"]
    for row in table:
        layer, x = (a, xa) if row["workload"] == "a" else (b, xb)
        config = HardwareConfig(n_pe=row["n_pe"], fifo_depth=row["fifo_depth"])
        direct = simulate(layer, x, config, reencode=True)
        assert row["cycles"] == direct.cycles and row["error"] is None and row["matches_kernel"]
        assert row["energy_uj"] == pytest.approx(direct.energy_uj)
        assert row["energy_uj"] == pytest.approx(sum(row[f"energy_{p}_uj"] for p in
                                                     ("clock", "act_queue", "ptr_read", "spmat_read", "arith",
                                                      "act_rw", "lnzd")))
        assert row["spmat_bytes"] == row["spmat_reads"] * 8 and row["ptr_bytes"] == row["ptr_reads"] * 4
        assert row["load_efficiency"] == pytest.approx(direct.load_efficiency)
    assert len(list(tmp_path.glob("*/*.json"))) == 8
    # again: everything from the cache; a wider grid runs only the new configurations
    again = sweep([(a, xa), Workload("second", target=[b], x=xb)], GRID, processes=1, cache=tmp_path,
                  progress=False)
    assert again.cached == 8 and again.computed == 0 and again.rows == table.rows
    wider = sweep([(a, xa)], {"fifo_depth": [1, 4, 8], "n_pe": [2, 4]}, processes=1, cache=tmp_path, progress=False)
    assert (wider.cached, wider.computed) == (4, 2)
    # the key is the content: another name for the same layer hits the cache, a changed input does not
    renamed = sweep([Workload("other", target=a, x=xa)], GRID, processes=1, cache=tmp_path, progress=False)
    assert renamed.cached == 4 and renamed.workloads() == ["other"]
    changed = sweep([(a, xa * 2)], GRID, processes=1, cache=tmp_path, progress=False)
    assert changed.computed == 4


def test_processes_match_one_process_and_errors_are_rows(tmp_path):
    layer, x = small_layer(3)
    grid = {"fifo_depth": [1, 8], "n_pe": [1, 4], "pointer_bits": [16, 3]}
    one = sweep([(layer, x)], grid, processes=1, cache=False, progress=False)
    two = sweep([(layer, x)], grid, processes=2, cache=False, progress=False)
    assert one.rows == two.rows
    failed = [r for r in one if r["error"]]
    assert failed and all(r["pointer_bits"] == 3 and "pointers" in r["error"] for r in failed)
    assert all(r["cycles"] > 0 for r in one if r["pointer_bits"] == 16)


def test_models_and_eie_files(tmp_path):
    rng = np.random.default_rng(4)
    h, i = 8, 6
    w = [[LSTMDirectionWeights(rng.normal(0, .3, (4 * h, i)), rng.normal(0, .3, (4 * h, h)), rng.normal(0, .1, 4 * h))]]
    core = compress_lstm(w, density=0.5, n_pe=4)
    xs = rng.normal(0, 1, (3, 1, i)).astype(np.float32)
    layer, x = small_layer(5)
    save(layer, tmp_path / "m.eie")
    np.save(tmp_path / "x.npy", x)
    table = sweep([Workload("lstm", target=core, x=xs), f"{tmp_path / 'm.eie'}:{tmp_path / 'x.npy'}",
                   (tmp_path / "m.eie", x)], {"fifo_depth": [2, 8]}, base=HardwareConfig(n_pe=4), processes=1,
                  cache=False, progress=False)
    assert table.workloads() == ["lstm", "m", "m#2"]
    lstm = table.where(workload="lstm", fifo_depth=2)[0]
    direct = simulate(core, xs, HardwareConfig(n_pe=4, fifo_depth=2))
    assert lstm["cycles"] == direct.cycles and lstm["layer_runs"] == 3 and lstm["matches_kernel"]
    assert table.where(workload="m")[0]["cycles"] == table.where(workload="m#2")[0]["cycles"]
    with pytest.raises(EIEError, match="cannot make a workload"):
        sweep([42], None, cache=False, progress=False)
    with pytest.raises(EIEError, match="unknown paper layer"):
        sweep(["alex9"], None, cache=False, progress=False)


def test_cli_sweep_writes_the_table(tmp_path, capsys):
    layer, x = small_layer(6)
    save(layer, tmp_path / "m.eie")
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "t.csv"
    args = ["sweep", f"{tmp_path / 'm.eie'}:{tmp_path / 'x.npy'}", "--grid", "fifo_depth=1,2", "n_pe=2,4",
            "--processes", "1", "--cache", str(tmp_path / "cache"), "--quiet", "--out", str(out)]
    assert eie_main(args) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 4 and {r["n_pe"] for r in rows} == {"2", "4"}
    assert "4 runs: 4 simulated, 0 from the cache" in capsys.readouterr().out
    assert eie_main(args[:-2] + ["--out", str(tmp_path / "t.json"), "--authors-model"]) == 0
    data = json.loads((tmp_path / "t.json").read_text())
    assert all(r["queue_release"] == "pointer_read" for r in data)
    assert eie_main(["sweep", "alex7", "--grid", "fifo=1"]) == 2


def test_paper_layer_workload_matches_the_simulator():
    table = sweep(["ntwe"], {"fifo_depth": [1]}, processes=1, cache=False, progress=False)
    assert table[0]["cycles"] == 26662  # docs/hardware.md, Alex-7 / NT-We sweep (defaults)


def test_ray_runs_the_same_rows():
    ray = pytest.importorskip("ray", reason="the Ray backend needs the optional ray package (extra 'dse')")
    layer, x = small_layer(7)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = sweep([(layer, x)], GRID, ray_address="local", cache=False, progress=False)
    finally:
        ray.shutdown()
    assert on_ray.rows == sweep([(layer, x)], GRID, processes=1, cache=False, progress=False).rows
