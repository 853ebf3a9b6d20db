"""The benchmark harness (bench/, not installed): a smoke run's outputs and its round sizing.
Nothing here times anything; speed is measured by ``python -m bench.kernels`` itself."""

import json
import time

import pytest

from bench.common import calls_for
from bench.kernels import main


def _bench_extras():
    # the smoke run times the torch baselines and draws the plot: the [torch] and [bench] extras
    pytest.importorskip("torch", reason="the benchmark's torch baselines need the [torch] extra")
    pytest.importorskip("matplotlib", reason="the benchmark's plot needs the [bench] extra")
    pytest.importorskip("threadpoolctl", reason="the benchmark's thread pinning needs the [bench] extra")


def test_smoke_run_writes_every_record_and_the_plot(tmp_path, capsys):
    _bench_extras()
    out_json, out_png = tmp_path / "k.json", tmp_path / "k.png"
    assert main(["--quick", "--layers", "ntwe", "--batch", "1,2", "--rounds", "1", "--round-ms", "20",
                 "--threads", "1", "--no-cuda", "--json", str(out_json), "--plot", str(out_png)]) == 0
    result = json.loads(out_json.read_text())
    methods = {"eie_float32", "eie_fixed16", "torch_dense", "torch_csr", "scipy_csr", "numpy_dense"}
    for batch in (1, 2):
        recs = {r["method"]: r for r in result["records"] if r["batch"] == batch}
        assert set(recs) == methods
        for r in recs.values():
            assert r["layer"] == "ntwe" and r["threads"] == 1 and r["repeats"] >= 1
            assert 0 < r["min_us"] <= r["median_us"]
    assert result["header"]["threads_set"]["numba"] == 1 and result["memory"][0]["stored_B_per_entry"] < 1.1
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "eie_float32 speedup vs best" in capsys.readouterr().out


def test_round_size_comes_from_the_fastest_call():
    # a first call slowed by waking thread pools must not shrink a round to one call
    state = {"calls": 0}

    def fn():
        state["calls"] += 1
        time.sleep(0.2 if state["calls"] == 1 else 0.001)

    assert calls_for(fn, 0.05) >= 10


def test_round_size_skips_a_slow_wake_up_spell():
    # a pool (or vCPU) that takes several calls to wake: the fastest of the first three calls is still slow
    state = {"calls": 0}

    def fn():
        state["calls"] += 1
        time.sleep(0.01 if state["calls"] <= 3 else 0.0005)

    assert calls_for(fn, 0.05) >= 25  # sized by the 0.5 ms calls (about 100), not the 10 ms ones (5)
