"""Execution strategies are built lazily: a call builds only the layout of the kernel it runs, once,
even when many threads make their first calls at the same time."""

import threading
import time

import numpy as np
import pytest

from eie_runtime.execution import GATHER_DENSITY, ColumnScatter, ExecLayout
from eie_runtime.execution.choice import LAYOUT_SHARING_MARGIN
from eie_runtime.fixed_point import FixedPointParams, to_fixed
from eie_runtime.format import InterleavedCSC
from eie_runtime.kernels import panel_batch, sliced_ell
from eie_runtime.layer import EIELinear

from reference import float32_layer

needs_avx512 = pytest.mark.skipif(not sliced_ell.AVAILABLE, reason="the sliced ELL kernel needs an AVX-512 host")


def _layer(m=256, k=512, density=0.1, seed=0):
    rng = np.random.default_rng(seed)
    codes = rng.integers(1, 16, size=(m, k)).astype(np.uint8)
    codes[rng.random((m, k)) >= density] = 0
    cb = np.concatenate([[0.0], rng.normal(0, 0.5, 15)]).astype(np.float32)
    layer = EIELinear(InterleavedCSC.from_codes(codes, cb, 4), activation="relu")
    layer.fixed = FixedPointParams(in_frac=8, w_frac=12, out_frac=8)
    return layer, codes, cb


def _fast_layer(m, k, density, seed):
    """A ReLU layer with a bias, and its codes, codebook and bias."""
    layer, codes, cb = _layer(m, k, density, seed)
    layer.bias = np.random.default_rng(seed).normal(0, 0.3, m).astype(np.float32)
    return layer, codes, cb, layer.bias


def _acts(k, density, batch=None, seed=1):
    rng = np.random.default_rng(seed)
    shape = (k,) if batch is None else (batch, k)
    x = rng.normal(0, 1, shape).astype(np.float32)
    x[rng.random(shape) >= density] = 0
    return x


def _built(ex):
    return {s.name for s in ex.strategies if s.built}


@pytest.mark.parametrize("sliced", [None, False])
def test_construction_builds_nothing_per_entry(sliced):
    layer, codes, _ = _layer()
    ex = ExecLayout(layer.matrix, sliced_ell=sliced)
    assert not _built(ex)
    parts = ex.nbytes_by_strategy()
    assert parts == {"rows": ex.rows.nbytes(), "column_scatter": 0, "row_gather": 0, "sliced_ell": 0,
                     "panel_batch": 0, "fixed16": 0}
    assert ex.nbytes() < 0.1 * (codes != 0).sum()  # a few bytes per row, nothing per entry


@pytest.mark.parametrize("sliced", [None, False])
def test_a_sparse_float32_vector_builds_the_scatter_layout_only(sliced):
    layer, codes, cb = _layer()
    layer._exec = ex = ExecLayout(layer.matrix, sliced_ell=sliced)
    x = _acts(512, 0.02)  # ~10 non-zeros: below every threshold
    np.testing.assert_allclose(layer(x), float32_layer(cb[codes], x, relu=True), rtol=1e-5, atol=1e-5)
    assert _built(ex) == {"column_scatter"}
    parts = ex.nbytes_by_strategy()
    assert parts["row_gather"] == parts["panel_batch"] == parts["fixed16"] == 0
    # at most the sliced ELL's group starts (8 bytes per 16 rows), counted to decide whether to keep it
    assert parts["sliced_ell"] <= 8 * (256 // 16 + 1)


def test_a_dense_float32_vector_without_sliced_ell_builds_the_gather_only():
    layer, codes, cb = _layer()
    layer._exec = ex = ExecLayout(layer.matrix, sliced_ell=False)
    x = _acts(512, 1.0)
    np.testing.assert_allclose(layer(x), float32_layer(cb[codes], x, relu=True), rtol=1e-5, atol=1e-5)
    assert _built(ex) == {"row_gather"}


@needs_avx512
def test_the_sliced_ell_is_built_by_the_first_call_that_runs_it():
    layer, codes, cb = _layer()
    layer._exec = ex = ExecLayout(layer.matrix)
    choice = ex.ell_choice()
    assert choice.kept and 10 < choice.threshold < GATHER_DENSITY * 512
    below = _acts(512, 0.5 * choice.threshold / 512)
    bad = _acts(512, 1.0)
    bad[3] = np.nan  # NaN: never the sliced ELL, whose padding would spread it
    for x in (below, bad):
        layer(x)
        assert not ex.sliced_ell.built
    assert _built(ex) == {"column_scatter", "row_gather"}
    x = _acts(512, 1.0)
    np.testing.assert_allclose(layer(x), float32_layer(cb[codes], x, relu=True), rtol=1e-5, atol=1e-5)
    assert ex.sliced_ell.built
    # counted in Python before it was built, by the kernel after: the same answers
    out = np.empty(256, np.float32)
    for x in (below, bad):
        ex2 = ExecLayout(layer.matrix)
        before = ex2.sliced_ell.run_float32(x, np.zeros(256, np.float32), True, out, choice.threshold)
        assert not ex2.sliced_ell.built
        assert ex.sliced_ell.run_float32(x, np.zeros(256, np.float32), True, out, choice.threshold) == before


def test_float32_batches_build_the_panels_only():
    layer, codes, cb = _layer()
    layer._exec = ex = ExecLayout(layer.matrix)
    x = _acts(512, 0.4, batch=64)
    np.testing.assert_allclose(layer(x), float32_layer(cb[codes], x, relu=True), rtol=1e-5, atol=1e-5)
    assert _built(ex) == {"panel_batch"}


def test_fixed16_calls_build_what_they_run(monkeypatch):
    layer, codes, cb = _layer()
    layer._exec = ex = ExecLayout(layer.matrix, sliced_ell=False)
    x_q = to_fixed(_acts(512, 0.05), 8)
    layer.run_fixed16_int(x_q)
    assert _built(ex) == {"column_scatter"} and ex.nbytes_by_strategy()["fixed16"] == 8 * 256  # the saturation proof
    batch = to_fixed(_acts(512, 0.4, batch=32), 8)
    layer._exec = ex = ExecLayout(layer.matrix, sliced_ell=False)
    layer.run_fixed16_int(batch)
    assert _built(ex) == ({"panel_batch"} if panel_batch.FIXED16_AVAILABLE else {"row_gather"})
    monkeypatch.setattr(panel_batch, "FIXED16_AVAILABLE", False)  # as on hosts without AVX512BW
    layer._exec = ex = ExecLayout(layer.matrix, sliced_ell=False)
    layer.run_fixed16_int(batch)
    assert _built(ex) == {"row_gather"}  # the CSR x block kernel


def test_layout_memory_and_rebuild_on_new_matrix():
    layer, codes, cb, b = _fast_layer(256, 128, 0.1, seed=5)
    ex = layer.execution_layout()
    assert layer.execution_layout() is ex
    nnz = int((codes != 0).sum())
    assert ex.nnz == nnz
    rows = 4 * (256 + 1) + 8 * (ex.rows.bounds.size + ex.rows.row_bounds.size)  # rowptr and row blocks
    assert ex.nbytes() == rows  # nothing per entry before a call needs it
    for strategy in ex.strategies:
        strategy.arrays()
    ex.fixed16.tables(12)
    colptr, pptr = ex.column_scatter.arrays().colptr, ex.panel_batch.arrays().pptr
    ell = ex.sliced_ell.arrays()
    # per entry: 2 B (blocked CSC), 3 B (CSR), 2 B (panels), 16 B per sliced ELL step; then pointers
    assert ex.nbytes_by_strategy() == {
        "rows": rows, "column_scatter": 2 * nnz + 4 * colptr.size, "row_gather": 3 * nnz,
        "sliced_ell": 16 * ex.sliced_ell.steps + ell.segs.nbytes + ell.gptr.nbytes + 4 * 16,
        "panel_batch": 2 * nnz + 4 * pptr.size, "fixed16": 8 * 256}  # fixed16: an int64 per row
    assert ex.nbytes() == sum(ex.nbytes_by_strategy().values())
    layer.matrix = InterleavedCSC.from_codes(codes[::-1].copy(), cb, 4)
    assert layer.execution_layout() is not ex
    np.testing.assert_allclose(layer(np.ones(128, np.float32)), float32_layer(cb[codes[::-1]], np.ones(128), b,
                                                                               relu=True), rtol=1e-5, atol=1e-5)


def test_concurrent_first_calls_build_each_layout_once(monkeypatch):
    layer, codes, cb = _layer(m=600, k=700)
    x = _acts(700, 0.05)
    expected = float32_layer(cb[codes], x, relu=True)
    builds = []
    build = ColumnScatter._build

    def slow_build(self):
        builds.append(threading.get_ident())
        time.sleep(0.05)  # a wide window for the other threads to arrive while it builds
        return build(self)

    monkeypatch.setattr(ColumnScatter, "_build", slow_build)
    barrier = threading.Barrier(8)
    results, layouts = [], []

    def work():
        barrier.wait()
        results.append(layer(x))
        layouts.append(layer.execution_layout())

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1 and len(results) == 8 and all(lo is layouts[0] for lo in layouts)
    for y in results:
        np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


@needs_avx512
@pytest.mark.parametrize("density, sliced", [(0.1, None), (0.01, None), (0.01, True)])
def test_the_choices_are_where_the_strategies_costs_meet(density, sliced):
    layer, *_ = _layer(density=density)
    ex = ExecLayout(layer.matrix, sliced_ell=sliced)
    choice, ell, scatter = ex.ell_choice(), ex.sliced_ell, ex.column_scatter
    assert choice.kept == (sliced or ell.cost() < ex.row_gather.cost())  # kept where it beats the gather
    if not choice.kept:
        assert density == 0.01 and not sliced  # rows too sparse to fill its slots
        return
    # it is taken from the non-zero count where it costs what the scatter over the non-zeros does
    assert ell.cost() == pytest.approx(scatter.cost(choice.min_nonzero))
    assert choice.threshold == min(choice.min_nonzero, GATHER_DENSITY * 512)
    # fixed16: float32's threshold, moved towards its own crossover by at most a factor 1 + the margin
    wide = 1 + LAYOUT_SHARING_MARGIN
    for fits, n in zip((False, True), choice.min_nonzero_fixed16):
        own = choice.min_nonzero * ell.cost(fixed16=True, terms_fit16=fits) / scatter.cost(choice.min_nonzero,
                                                                                         fixed16=True)
        assert ell.cost(fixed16=True, terms_fit16=fits) == pytest.approx(scatter.cost(own, fixed16=True))
        assert n == pytest.approx(min(max(choice.threshold, own / wide), own * wide))
