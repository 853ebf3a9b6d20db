"""Cost bounded by input size (issue 18): small files that declare huge shapes are either refused with an
EIEError before anything big is allocated, or run with work and memory bounded as SECURITY.md states."""

import resource

import numpy as np
import pytest

import eie_runtime as eie
from eie_runtime.execution.rows import MAX_BLOCK_ROWS, ROW_ALIGN, balanced_bounds
from eie_runtime.format import InterleavedCSC


def empty_layer(m, k, n_pe=1, name="big"):
    """A valid layer of shape (m, k) with no stored entries: a file of a few hundred bytes plus k pointers."""
    mat = InterleavedCSC((m, k), n_pe, np.zeros(0, np.uint8), np.zeros((n_pe, k + 1), np.int32),
                         np.array([0.0, 1.0], np.float32))
    return eie.EIELinear(mat, name=name)


def _reference_bounds(row_nnz, n_blocks, max_rows=MAX_BLOCK_ROWS):
    """balanced_bounds as first written (one search per block over all rows, then halving the largest
    block one at a time): the definition the fast version must reproduce exactly."""
    m = row_nnz.shape[0]
    n_blocks = max(1, n_blocks)
    if max_rows is not None:
        n_blocks *= -(-m // (max_rows * n_blocks)) or 1
    n_blocks = max(1, min(n_blocks, -(-m // ROW_ALIGN)))
    cum = np.concatenate(([0], np.cumsum(row_nnz)))
    total = cum[-1]
    bounds = [0]
    for b in range(1, n_blocks):
        r = int(np.searchsorted(cum, total * b / n_blocks))
        bounds.append(min(m, max(bounds[-1], int(round(r / ROW_ALIGN)) * ROW_ALIGN)))
    bounds.append(m)
    bounds = np.array(bounds, dtype=np.int64)
    while max_rows is not None and np.diff(bounds).max(initial=0) > max_rows:
        b = int(np.argmax(np.diff(bounds)))
        bounds = np.insert(bounds, b + 1, (bounds[b] + bounds[b + 1]) // 2 // ROW_ALIGN * ROW_ALIGN)
    return bounds


@pytest.mark.parametrize("seed", range(6))
def test_balanced_bounds_equal_the_reference_definition(seed):
    rng = np.random.default_rng(seed)
    for m in (0, 1, 15, 16, 17, 300, 4096, 4097, 9000, 33000):
        for row_nnz in (rng.integers(0, 6, m), np.zeros(m, np.int64), (rng.random(m) < 0.02) * rng.integers(0, 999, m),
                        rng.integers(0, 3, m) * (np.arange(m) < m // 3)):
            for n_blocks in (1, 2, 3, 8):
                for max_rows in (None, MAX_BLOCK_ROWS, 64):
                    got = balanced_bounds(row_nnz.astype(np.int32), n_blocks, max_rows)
                    assert np.array_equal(got, _reference_bounds(row_nnz, n_blocks, max_rows)), (m, n_blocks, max_rows)


def test_a_tiny_file_declaring_millions_of_rows_runs_with_memory_linear_in_rows(tmp_path):
    """M = 2**22, K = 1, no entries: a 488-byte file. Its first call built the row blocks with one search
    over all M rows per block (minutes at M = 2**24); now O(M) numpy work and O(blocks) Python."""
    path = tmp_path / "tall.eie"
    eie.save(empty_layer(1 << 22, 1), path)
    assert path.stat().st_size < 1024
    layer = eie.load(path)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    y = layer(np.ones(1, np.float32))
    assert y.shape == (1 << 22,) and not y.any()
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
    assert grown < 64 * (1 << 22)  # SECURITY.md: at most 64 bytes per declared row (about 30 measured)
    assert len(layer.execution_layout().rows.bounds) <= 2 * (1 << 22) // MAX_BLOCK_ROWS + 2


def test_calibrate_never_builds_the_dense_matrix(tmp_path):
    """A 66 KB file declaring 2**18 x 2**14 (16 GiB dense): calibrate() used ``x @ dense().T``."""
    path = tmp_path / "wide.eie"
    eie.save(empty_layer(1 << 18, 1 << 14), path)
    assert path.stat().st_size < 70_000
    layer = eie.load(path)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fp = layer.calibrate(np.ones((3, 1 << 14), np.float32))
    assert fp.in_frac == 14  # inputs of 1.0 in int16
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024 < 256 << 20
    y = layer(np.ones(1 << 14, np.float32), mode="fixed16")
    assert y.shape == (1 << 18,) and not y.any()


def test_calibrate_chunks_equal_one_pass():
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 16, (40, 30), dtype=np.uint8)
    codebook = np.concatenate([[0.0], rng.uniform(-1, 1, 15)]).astype(np.float32)
    layer = eie.EIELinear(InterleavedCSC.from_codes(codes, codebook, 4), bias=rng.uniform(-1, 1, 40), name="c")
    x = rng.uniform(-3, 3, (50, 30)).astype(np.float32)
    want = float(np.abs(x @ layer.dense().T + layer.bias).max())
    import eie_runtime.layer as layer_module

    old = layer_module.CALIBRATION_CHUNK_BYTES
    try:
        for chunk in (1, 4 * 40 * 7, old):  # one sample per chunk, 7 per chunk, all at once
            layer_module.CALIBRATION_CHUNK_BYTES = chunk
            assert layer._pre_activation_amax(x) == pytest.approx(want, rel=1e-6)
    finally:
        layer_module.CALIBRATION_CHUNK_BYTES = old
