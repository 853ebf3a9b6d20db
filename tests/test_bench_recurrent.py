"""bench.recurrent: its cases build real models, its targets read the ratios they name (no timing asserted)."""

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from bench import recurrent  # noqa: E402


def test_targets_read_the_named_ratios():
    recs = [{"case": "nt-lstm", "batch": 1, "eie_vs_torch": 2.5, "eie_vs_onnxruntime": 1.5},
            {"case": "vad-lstm", "batch": 1, "eie_us": 300.0, "onnxruntime_us": 150.0},
            {"case": "step-overhead", "batch": 1, "eie_us_per_step": 0.5}]
    got = {t["target"]: (t["measured"], t["met"]) for t in recurrent.targets(recs)}
    assert got["NT-LSTM b1: EIE >= 2x faster than torch"] == (2.5, True)
    assert got["NT-LSTM b1: EIE >= 2x faster than onnxruntime"] == (1.5, False)
    assert got["LSTM(128) x 40 b1: EIE within 1.5x of onnxruntime (EIE/ort time)"] == (2.0, False)
    assert got["sequence kernel per-step overhead < 2 us (LSTM(1,1), us/step)"] == (0.5, True)
    assert len(got) == 4  # cases not run are not reported


def test_a_small_run_checks_outputs_and_writes_files(tmp_path):
    args = recurrent.parse_args(["--cases", "fc-10x512,vad-lstm", "--batch", "1", "--rounds", "1",
                                 "--round-ms", "5", "--max-foreign", "100",
                                 "--json", str(tmp_path / "r.json"), "--plot", str(tmp_path / "r.png")])
    result = recurrent.run(args)
    assert [(r["case"], r["batch"]) for r in result["records"]] == [("vad-lstm", 1), ("fc-10x512", 1)]
    for r in result["records"]:
        assert r["eie_us"] > 0 and r["torch_us"] > 0 and r["onnxruntime_us"] > 0
        assert 0 < r["eie_rel_diff_vs_dense"] < np.inf  # pruned weights: a real model, not the dense one
    assert np.isclose(result["records"][0]["eie_us_per_step"], result["records"][0]["eie_us"] / 40)
    recurrent.plot(result, str(tmp_path / "r.png"))
    assert (tmp_path / "r.png").stat().st_size > 1000
