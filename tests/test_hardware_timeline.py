"""A picture of one run: the per-cycle record, its PNG, and its HTML page in a headless browser."""

import re
import shutil
import subprocess

import numpy as np
import pytest

from eie_runtime.hardware import HardwareConfig, simulate
from eie_runtime.hardware.timeline import record_timeline
from test_hardware_cycles import layer_of
from test_hardware_api import random_layer

BUSY, STALLED, STARVED = 0, 1, 2


def test_hand_worked_timeline():
    layer = layer_of(np.ones((3, 2), dtype=np.uint8))
    x = np.array([1.0, 1.0], dtype=np.float32)
    # depth 1 (tests/test_hardware_cycles.py): col 0 broadcast 0, pointers 1, SpMat 2, issues 3..5; the queue
    # holds it until then; col 1 broadcast 6 (PE starved), pointers 7, SpMat 8, issues 9..11; drain 12..14
    tl = record_timeline(layer, x, HardwareConfig(n_pe=1, fifo_depth=1))
    assert tl.state[:, 0].tolist() == [STARVED, STALLED, STALLED, BUSY, BUSY, BUSY,
                                       STARVED, STALLED, STALLED, BUSY, BUSY, BUSY, STARVED, STARVED, STARVED]
    assert tl.queue[:, 0].tolist() == [1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0]
    # released on the pointer read: the queue empties at the end of cycles 1 and 3, col 1 follows col 0
    tl = record_timeline(layer, x, HardwareConfig(n_pe=1, fifo_depth=1, queue_release="pointer_read"))
    assert tl.state[:, 0].tolist() == [STARVED, STALLED, STALLED] + [BUSY] * 6 + [STARVED] * 3
    assert tl.queue[:, 0].tolist() == [1, 0, 1] + [0] * 9


@pytest.mark.parametrize("config", [HardwareConfig(n_pe=4, fifo_depth=2, regfile_entries=4),
                                    HardwareConfig.authors_simulator(n_pe=4, fifo_depth=3)])
def test_record_agrees_with_the_report(config):
    layer = random_layer(np.random.default_rng(8), 60, 48, 0.3, 4)
    x = np.abs(np.random.default_rng(9).normal(0, 1, 48)).astype(np.float32)
    tl = record_timeline(layer, x, config)
    r = simulate(layer, x, config).layers[0]
    assert tl.cycles == r.cycles == tl.report.cycles and tl.report.matches_kernel
    for cls, counts in ((BUSY, r.busy), (STALLED, r.stalled), (STARVED, r.starved)):
        assert (tl.state == cls).sum(axis=0).tolist() == counts.tolist()
    assert 0 <= tl.queue.min() and tl.queue.max() <= config.fifo_depth
    shares, occupancy, width = tl.binned(max_bins=7)
    assert shares.shape == (4, -(-tl.cycles // width), 3) and np.allclose(shares.sum(axis=2), 1)
    assert occupancy.shape == shares.shape[:2]


def _browser():
    return next((b for b in ("chromium-headless-shell", "chromium", "google-chrome") if shutil.which(b)), None)


def test_png_and_html_pages(tmp_path):
    pytest.importorskip("matplotlib", reason="the PNG needs matplotlib (extras 'bench' or 'dse')")
    layer = random_layer(np.random.default_rng(10), 300, 200, 0.2, 8)
    x = np.abs(np.random.default_rng(11).normal(0, 1, 200)).astype(np.float32)
    tl = record_timeline(layer, x, HardwareConfig(n_pe=8, fifo_depth=2))
    png, page = tl.to_png(tmp_path / "run.png"), tl.to_html(tmp_path / "run.html", max_bins=100)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = page.read_text()
    assert "<script>" in text and not re.search(r"\b(src|href)\s*=|fetch\(|XMLHttpRequest", text)  # no fetches
    browser = _browser()
    if browser is None:
        pytest.skip("no headless browser (apt-get install chromium-headless-shell) to render the page")
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    assert 'data-status="rendered"' in dom
    assert f"rendered 8 PEs x {tl.cycles} cycles" in dom


def test_cli_simulate_draws_a_timeline(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="the PNG needs matplotlib (extras 'bench' or 'dse')")
    from eie_runtime.cli import main as eie_main

    prefix = tmp_path / "run"
    assert eie_main(["simulate", "--layer", "ntlstm", "--fifo", "2", "--timeline", str(prefix)]) == 0
    assert (tmp_path / "run.png").stat().st_size > 10_000
    assert '<canvas id="state">' in (tmp_path / "run.html").read_text()
    assert f"wrote {prefix}.html" in capsys.readouterr().out
