"""Every fast kernel variant (scatter, gather, batch block; fixed16 with and without
saturation) against the plain-Python references of tests/reference.py."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from eie_runtime.execution import (BY_CODE_MAX_ROWS, FIXED16_CSR_SINGLE_MAX_BATCH, FIXED16_SINGLE_MAX_BATCH,
                                   GATHER_DENSITY, ExecLayout, balanced_bounds, fit16_amax, term_bound)
from eie_runtime.fixed_point import FixedPointParams, to_fixed
from eie_runtime.format import InterleavedCSC
from eie_runtime.kernels import column_scatter, input_scan, panel_batch, sliced_ell
from eie_runtime.kernels import row_gather as kernels_row_gather
from eie_runtime.layer import EIELinear

import layer_data
import pe_walk
from reference import fixed16_layer, float32_layer


def _codes(rng, m, k, density):
    codes = rng.integers(1, 16, size=(m, k)).astype(np.uint8)
    codes[rng.random((m, k)) >= density] = 0
    return codes


def _codebook(rng):
    cb = np.zeros(16, dtype=np.float32)
    cb[1:] = rng.normal(0, 0.5, 15).astype(np.float32)
    return cb


def _acts(rng, shape, density):
    x = rng.normal(0, 1, shape).astype(np.float32)
    x[rng.random(shape) >= density] = 0
    return x


def _layer(rng, m, k, density, n_pe=4, relu=True, bias=True):
    codes = _codes(rng, m, k, density)
    cb = _codebook(rng)
    b = rng.normal(0, 0.3, m).astype(np.float32) if bias else None
    layer = EIELinear(InterleavedCSC.from_codes(codes, cb, n_pe), bias=b, activation="relu" if relu else None)
    return layer, codes, cb, b


@pytest.mark.parametrize("act_density", [0.0, 0.2, GATHER_DENSITY, 1.0])  # scatter and gather paths
@pytest.mark.parametrize("n_blocks", [1, 2, 5])
def test_float32_single_vector_matches_reference(act_density, n_blocks):
    rng = np.random.default_rng(int(act_density * 10) + n_blocks)
    layer, codes, cb, b = _layer(rng, 203, 70, 0.3, relu=False)
    layer._exec = ExecLayout(layer.matrix, n_blocks=n_blocks)
    x = _acts(rng, 70, act_density)
    y = layer(x)
    np.testing.assert_allclose(y, float32_layer(cb[codes], x, b), rtol=1e-5, atol=1e-5)


def test_float32_table_scatter_is_bit_identical_to_stored_format_kernel():
    rng = np.random.default_rng(1)
    layer, codes, cb, b = _layer(rng, 1900, 90, 0.2)
    layer._exec = ex = ExecLayout(layer.matrix, n_blocks=2, sliced_ell=False)
    assert not ex.column_scatter.by_code  # blocks above BY_CODE_MAX_ROWS: the table scatter
    x = _acts(rng, 90, 0.3)
    idx, val = pe_walk.nonzero_activations(x)
    ref = np.empty(1900, dtype=np.float32)
    mat = layer.matrix
    pe_walk.spmspv_f32(mat.entries, mat.ptr, mat.codebook, mat.n_pe, 1900, idx, val, b, True, ref)
    np.testing.assert_array_equal(layer(x), ref)


@pytest.mark.parametrize("m, n_blocks", [(300, 2), (1900, 2), (9000, 2)])
def test_float32_scatter_kinds_match_reference(m, n_blocks):
    # 300 rows: per-(row, code) accumulators; 1900: the table; 9000: blocks split at 4096 rows
    rng = np.random.default_rng(m)
    layer, codes, cb, b = _layer(rng, m, 60, 0.1)
    layer._exec = ex = ExecLayout(layer.matrix, n_blocks=n_blocks)
    assert ex.column_scatter.by_code == (m <= 2 * BY_CODE_MAX_ROWS)
    bounds = ex.rows.bounds
    assert np.diff(bounds).max() <= 4096 and (len(bounds) - 1) % n_blocks == 0  # same count per thread
    assert len(ex.rows.row_bounds) == n_blocks + 1  # gathers: one block per thread, any height
    x = _acts(rng, 60, 0.3)
    np.testing.assert_allclose(layer(x), float32_layer(cb[codes], x, b, relu=True), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 2, 17, 33, 48, 64, 100, 130])  # chunks of 16, 32, 48, 64 lanes; 130: 64 + 64 + 16
def test_float32_batch_matches_reference(batch):
    rng = np.random.default_rng(batch)
    # K = 600: three column panels, the last partial, and a transpose tail (600 % 16 = 8); M = 130 likewise
    layer, codes, cb, b = _layer(rng, 130, 600, 0.25)
    x = _acts(rng, (batch, 600), 0.4)
    y = layer(x)
    assert y.shape == (batch, 130)
    np.testing.assert_allclose(y, float32_layer(cb[codes], x, b, relu=True), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer(x[:0]), np.zeros((0, 130), np.float32))


def test_panel_entries_hold_every_entry_once_in_panel_order():
    rng = np.random.default_rng(4)
    m, k = 40, 700
    codes = _codes(rng, m, k, 0.2)
    ex = ExecLayout(InterleavedCSC.from_codes(codes, _codebook(rng), 4))
    decoded = np.zeros_like(codes)
    panel, (pptr, packed) = ex.panel_batch.panel, ex.panel_batch.arrays()
    for p in range(-(-k // panel)):
        for i in range(m):
            q = p * m + i
            entries = packed[pptr[q]:pptr[q + 1]]
            cols = p * panel + (entries >> 4)
            assert np.all(np.diff(cols) > 0)  # columns ascend within a pair
            decoded[i, cols] = entries & 15
    np.testing.assert_array_equal(decoded, codes)
    assert pptr[-1] == ex.nnz


@pytest.mark.parametrize("panel", [1, 17, 300, 4096])
def test_float32_batch_any_panel_width(panel):
    rng = np.random.default_rng(panel)
    layer, codes, cb, b = _layer(rng, 50, 333, 0.2)
    layer._exec = ExecLayout(layer.matrix, panel=panel)
    x = _acts(rng, (20, 333), 0.5)
    np.testing.assert_allclose(layer(x), float32_layer(cb[codes], x, b, relu=True), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("panel", [0, -3, 4097])
def test_panel_width_out_of_range_is_refused(panel):
    rng = np.random.default_rng(0)
    layer, *_ = _layer(rng, 10, 20, 0.3)
    with pytest.raises(ValueError, match="panel must be 1..4096"):
        ExecLayout(layer.matrix, panel=panel)


def test_panel_width_follows_density():
    widths = [panel_batch.panel_width(1000, 4096, int(d * 1000 * 4096)) for d in (0.5, 0.25, 0.1, 0.04, 0.001)]
    assert all(w % 16 == 0 for w in widths)
    assert widths == sorted(widths) and widths[0] == widths[1] == 128 and widths[-1] <= 1024
    assert panel_batch.panel_width(10, 40, 100) == 48  # K below the minimum: one panel, lanes of 16


def test_float32_wide_input_uses_int32_columns_everywhere():
    # K > 65536: column indices no longer fit uint16; every kernel reads int32 ones
    rng = np.random.default_rng(3)
    layer, codes, cb, b = _layer(rng, 24, 70_000, 0.002, relu=False)
    assert layer.execution_layout().row_gather.arrays().cols.dtype == np.int32
    for shape, act_density in (((70_000,), 0.2), ((70_000,), 1.0), ((5, 70_000), 0.5)):
        x = _acts(rng, shape, act_density)
        np.testing.assert_allclose(layer(x), float32_layer(cb[codes], x, b, relu=False), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("act_density", [0.1, 1.0])
def test_float32_nan_reaches_exactly_the_rows_with_a_weight_in_its_column(act_density, bad):
    # dense inputs would take the sliced ELL, whose zero-weight padding slots would spread NaN/Inf
    rng = np.random.default_rng(7)
    layer, codes, cb, b = _layer(rng, 64, 40, 0.3, relu=False)
    x = _acts(rng, 40, act_density)
    x[5] = bad
    y = layer(x)
    np.testing.assert_array_equal(~np.isfinite(y), codes[:, 5] != 0)
    if bad != bad:
        np.testing.assert_array_equal(np.isnan(y), codes[:, 5] != 0)
    yb = layer(np.stack([x, x]))
    np.testing.assert_array_equal(~np.isfinite(yb), np.stack([codes[:, 5] != 0] * 2))


needs_avx512 = pytest.mark.skipif(not sliced_ell.AVAILABLE, reason="the sliced ELL kernel needs an AVX-512 host")


def _decode_sliced_ell(ex):
    """The dense (M, K) matrix of codes that the sliced ELL's steps hold."""
    gptr, slots, segs, _ = ex.sliced_ell.arrays()
    m, k = ex.shape
    out = np.zeros((-(-m // 16) * 16, -(-k // 16) * 16), dtype=np.uint8)
    for g in range(len(gptr) - 1):
        for t in range(gptr[g], gptr[g + 1]):
            lanes = (slots[16 * (t // 4):16 * (t // 4) + 16] >> np.uint32(8 * (t % 4))) & 0xFF  # byte t % 4 of a block
            for lane in np.flatnonzero(lanes):
                nib = int(lanes[lane])
                row, col = 16 * g + int(lane), 16 * int(segs[t]) + (nib & 15)
                assert out[row, col] == 0, "an entry stored twice"
                out[row, col] = nib >> 4
    assert (np.diff(gptr) % sliced_ell.STEP_UNROLL == 0).all()
    return out[:m, :k]


@needs_avx512
@pytest.mark.parametrize("m, k, n_blocks", [(1, 2, 1), (17, 33, 2), (203, 70, 3), (600, 1201, 2), (40, 300, 1)])
def test_sliced_ell_holds_every_entry_once_and_matches_reference(m, k, n_blocks, monkeypatch):
    rng = np.random.default_rng(m + k)
    layer, codes, cb, b = _layer(rng, m, k, 0.3, relu=True)
    layer._exec = ex = ExecLayout(layer.matrix, n_blocks=n_blocks, sliced_ell=True)
    assert ex.ell_choice().kept
    np.testing.assert_array_equal(_decode_sliced_ell(ex), codes)
    ran = []
    kernel = sliced_ell.sliced_ell_f32

    def counting(*args):
        found = kernel(*args)
        ran.append(found >= args[-1])  # it ran exactly when the count reached the threshold
        return found

    monkeypatch.setattr(sliced_ell, "sliced_ell_f32", counting)
    chosen = 0
    for act_density in (1.0, 0.6, 0.05):
        x = _acts(rng, k, act_density)
        np.testing.assert_allclose(layer(x), float32_layer(cb[codes], x, b, relu=True), rtol=1e-5, atol=1e-5)
        n_nz = np.count_nonzero(x)
        chosen += n_nz >= ex.ell_choice().min_nonzero or n_nz >= GATHER_DENSITY * k  # cheaper than scatter, or than gather
    assert len(ran) == 3 and sum(ran) == chosen
    assert chosen >= 2 or m * k < 100  # a 1 x 2 layer's padded steps cost more than its scatter


@needs_avx512
def test_sliced_ell_counts_the_input_and_declines_what_it_should_not_run():
    rng = np.random.default_rng(5)
    layer, codes, cb, b = _layer(rng, 70, 100, 0.3, relu=False)
    ex = ExecLayout(layer.matrix, n_blocks=2, sliced_ell=True)
    bias = b.astype(np.float32)
    x = np.zeros(100, np.float32)
    x[rng.choice(100, 20, replace=False)] = rng.normal(0, 1, 20).astype(np.float32) + 3
    x[np.flatnonzero(x == 0)[:5]] = -0.0  # negative zeros are zeros
    out = np.full(70, 7.0, np.float32)
    ell, row_bounds = ex.sliced_ell.arrays(), ex.rows.row_bounds
    assert sliced_ell.sliced_ell_f32(*ell, row_bounds, x, bias, False, out, 21) == 20
    assert (out == 7.0).all()  # too few non-zeros: declined, the output untouched
    assert sliced_ell.sliced_ell_f32(*ell, row_bounds, x, bias, False, out, 20) == 20
    np.testing.assert_allclose(out, float32_layer(cb[codes], x, b, relu=False), rtol=1e-5, atol=1e-5)
    for bad in (np.nan, np.inf, -np.inf):
        x_bad = x.copy()
        x_bad[np.flatnonzero(x == 0)[-1]] = bad  # one more non-zero, and not finite
        out[:] = 7.0
        assert sliced_ell.sliced_ell_f32(*ell, row_bounds, x_bad, bias, False, out, 0) == -1 - 21
        assert (out == 7.0).all()


@needs_avx512
@pytest.mark.parametrize("batch", [5, 8, 9, 12, 13])  # one pass of 8 (3 padded); 8; 8 + 4; 8 + 4; panels
def test_small_batches_walk_the_sliced_ell_together(batch, monkeypatch):
    rng = np.random.default_rng(batch)
    layer, codes, cb, b = _layer(rng, 203, 333, 0.3)
    layer._exec = ex = ExecLayout(layer.matrix, n_blocks=2, sliced_ell=True)
    calls = []
    kernel = sliced_ell.sliced_ell_multi_f32
    monkeypatch.setattr(sliced_ell, "sliced_ell_multi_f32", lambda *a: calls.append(a[7]) or kernel(*a))
    x = _acts(rng, (batch, 333), 0.5)
    np.testing.assert_allclose(layer(x), float32_layer(cb[codes], x, b, relu=True), rtol=1e-5, atol=1e-5)
    assert sum(calls) == (0 if batch > 12 else -(-batch // 4) * 4) and all(n in (4, 8) for n in calls)
    x[2, 7] = np.nan  # NaN: the panel kernel, which has no padding to spread it
    calls.clear()
    y = layer(x)
    assert not calls and np.isnan(y[2]).sum() == (codes[:, 7] != 0).sum() and not np.isnan(np.delete(y, 2, 0)).any()


@needs_avx512
def test_sliced_ell_is_chosen_by_cost():
    rng = np.random.default_rng(11)
    layer, codes, cb, b = _layer(rng, 256, 512, 0.1)
    ex = ExecLayout(layer.matrix, n_blocks=2)
    assert ex.ell_choice().kept and 0 < ex.ell_choice().min_nonzero < 512
    # rows far sparser than 16 columns per entry leave the slots nearly empty: not worth keeping
    sparse, *_ = _layer(rng, 256, 4096, 0.002)
    assert not ExecLayout(sparse.matrix, n_blocks=2).ell_choice().kept


@needs_avx512
@pytest.mark.parametrize("shift", [0, 1, 12, 15, 16, 29])
@pytest.mark.parametrize("amax", [3, 32767])  # terms that fit int16 (one saturating add per step) and that do not
def test_sliced_ell_fixed16_is_bit_identical_to_stored_format_kernel(shift, amax):
    rng = np.random.default_rng(shift * 7 + amax)
    m, k = 75, 300
    codes = _codes(rng, m, k, 0.3)
    cb_q = np.zeros(16, dtype=np.int32)
    cb_q[1:] = rng.integers(-32768, 32768, 15)
    mat = InterleavedCSC.from_codes(codes, _codebook(rng), 4)
    ex = ExecLayout(mat, n_blocks=2, sliced_ell=True)
    x_q = rng.integers(-amax, amax + 1, (1, k)).astype(np.int16)
    bias = rng.integers(-32768, 32768, m).astype(np.int32)
    ref = np.empty((1, m), dtype=np.int16)
    pe_walk.spmspv_fixed16(mat.entries, mat.ptr, cb_q, mat.n_pe, m, x_q, bias, shift, False, ref)
    fits = (32768 * amax + (1 << 29)) >> shift < 32767
    x_hi, w_hi = sliced_ell.rounding_halves(shift)
    gptr, slots, segs, _ = ex.sliced_ell.arrays()
    for word_add in {False, fits}:
        out = np.empty(m, dtype=np.int16)
        found = sliced_ell.sliced_ell_fixed16(gptr, slots, segs, sliced_ell.codebook_words(cb_q, w_hi), ex.rows.row_bounds,
                                              x_q[0], bias, shift, x_hi, 32768 if word_add else -1, (0.0, 0.0), False,
                                              out)
        np.testing.assert_array_equal(out, ref[0])
        assert found == np.count_nonzero(x_q) << 16 | int(np.abs(x_q.astype(np.int32)).max())
    if amax == 32767 and shift < 16:
        assert ((ref == 32767) | (ref == -32768)).any()  # the big case does reach the clamps


@settings(max_examples=40, deadline=None)
@given(data=st.data(), m=st.integers(1, 90), k=st.integers(1, 50), n_pe=st.integers(1, 9),
       n_blocks=st.integers(1, 4))
def test_float32_property(data, m, k, n_pe, n_blocks):
    layer, codes, cb, b = data.draw(layer_data.layers(m, k, n_pe, relu=True), label="layer, codes, codebook, bias")
    layer._exec = ExecLayout(layer.matrix, n_blocks=n_blocks)
    x = data.draw(layer_data.activations((3, k)), label="x")
    layer_data.assert_float32_close(layer(x), cb[codes], x, b, relu=True)
    layer_data.assert_float32_close(layer(x[0]), cb[codes], x[0], b, relu=True)


def _fixed_case(rng, m, k, density, act_density, fp, act_scale, relu=True, n_pe=4):
    layer, codes, cb, b = _layer(rng, m, k, density, n_pe=n_pe, relu=relu)
    layer.fixed = fp
    # enough rows for a batch kernel: the panel one on AVX-512 hosts, else the CSR x block one
    x_q = to_fixed(_acts(rng, (FIXED16_CSR_SINGLE_MAX_BATCH + 1, k), act_density) * act_scale, fp.in_frac)
    return layer, x_q, _fixed16_rows(codes, cb, b, fp, relu, x_q)


def _fixed16_rows(codes, cb, b, fp, relu, x_q):
    return np.stack([fixed16_layer(codes, cb, xr, in_frac=fp.in_frac, w_frac=fp.w_frac, out_frac=fp.out_frac,
                                   bias=b, relu=relu) for xr in x_q])


def _count_csr_block_calls(mp):
    """Make fixed16 batches take the CSR x block kernel (as on hosts without AVX512BW); returns the list of
    the batch sizes it then runs."""
    calls, kernel = [], kernels_row_gather.csr_block_fixed16
    mp.setattr(panel_batch, "FIXED16_AVAILABLE", False)
    mp.setattr(kernels_row_gather, "csr_block_fixed16", lambda *a: calls.append(a[5].shape[1]) or kernel(*a))
    return calls


@pytest.mark.parametrize("act_density", [0.2, 1.0])  # scatter and gather
@pytest.mark.parametrize("act_scale", [0.01, 100.0])  # provably safe (no clamps) and saturating
@pytest.mark.parametrize("fracs", [(8, 12, 8), (12, 14, 26)])  # gather with int32 sums; shift 0: int64 sums
def test_fixed16_bit_exact(act_density, act_scale, fracs):
    rng = np.random.default_rng(3)
    fp = FixedPointParams(*fracs)
    layer, x_q, ref = _fixed_case(rng, 70, 60, 0.5, act_density, fp, act_scale)
    np.testing.assert_array_equal(layer.run_fixed16_int(x_q), ref)  # batch kernel
    np.testing.assert_array_equal(layer.run_fixed16_int(x_q[:FIXED16_SINGLE_MAX_BATCH]), ref[:FIXED16_SINGLE_MAX_BATCH])
    np.testing.assert_array_equal(layer.run_fixed16_int(x_q[1]), ref[1])
    with pytest.MonkeyPatch.context() as mp:  # the CSR x block kernel (hosts without AVX512BW)
        calls = _count_csr_block_calls(mp)
        np.testing.assert_array_equal(layer.run_fixed16_int(x_q), ref)
        assert calls == [len(x_q)]


@pytest.mark.parametrize("batch", [17, 48, 64, 130])  # chunks of 32, 48, 64 lanes; 130: 64 + 64 + 16
@pytest.mark.parametrize("act_scale", [0.01, 100.0])  # terms that fit int16 (one saturating add) and not
def test_fixed16_batch_is_the_single_vector_result(batch, act_scale):
    rng = np.random.default_rng(batch)
    layer, codes, cb, b = _layer(rng, 50, 600, 0.25)  # three column panels, the last partial
    layer.fixed = FixedPointParams(8, 12, 6)
    x_q = to_fixed(_acts(rng, (batch, 600), 0.5) * act_scale, 8)
    expected = np.stack([layer.run_fixed16_int(row) for row in x_q])  # the single-vector kernels, exact
    np.testing.assert_array_equal(layer.run_fixed16_int(x_q), expected)
    assert act_scale < 1 or (np.abs(expected) == 32767).any()  # the large inputs do saturate


def test_fixed16_saturation_order_matters_and_is_kept():
    # row 0: +30000 then +30000 (clamps to 32767) then -30000 -> 2767; an unclamped sum gives 30000
    codes = np.array([[1, 1, 2]], dtype=np.uint8)
    cb = np.zeros(16, dtype=np.float32)
    cb[1], cb[2] = 1.0, -1.0
    layer = EIELinear(InterleavedCSC.from_codes(codes, cb, 1))
    layer.fixed = FixedPointParams(in_frac=0, w_frac=0, out_frac=0)
    x_q = np.array([30000, 30000, 30000], dtype=np.int16)
    assert layer.run_fixed16_int(x_q)[0] == 2767  # single vector (gather)
    batch = np.stack([x_q] * (FIXED16_CSR_SINGLE_MAX_BATCH + 1))
    assert (layer.run_fixed16_int(batch)[:, 0] == 2767).all()  # batch kernel (panels on AVX-512 hosts)
    with pytest.MonkeyPatch.context() as mp:
        calls = _count_csr_block_calls(mp)
        assert (layer.run_fixed16_int(batch)[:, 0] == 2767).all() and calls  # CSR x block kernel
    assert fixed16_layer(codes, cb, x_q, in_frac=0, w_frac=0, out_frac=0)[0] == 2767


@pytest.mark.parametrize("vector", [True, False])  # clamps 16 at a time, or the checked scalar pass then clamps
@pytest.mark.parametrize("rows", [1, 16, 40])  # the vector scatter: one partial step, one full, full + tail
def test_fixed16_scatter_saturates_in_column_order(rows, vector, monkeypatch):
    from eie_runtime import kernel_costs

    monkeypatch.setattr(kernel_costs, "_chosen", kernel_costs.KernelCosts(
        scatter_fixed16_ns_per_entry=0.65 if vector else 3.0))
    # half the activations zero: the scatter path; every row clamps at +32767 and then comes back down
    codes = np.tile(np.array([[1, 0, 1, 0, 2, 0]], dtype=np.uint8), (rows, 1))
    codes[::3, 2] = 0  # some rows skip the second term: they never clamp
    cb = np.zeros(16, dtype=np.float32)
    cb[1], cb[2] = 1.0, -1.0
    layer = EIELinear(InterleavedCSC.from_codes(codes, cb, 4))
    layer.fixed = FixedPointParams(in_frac=0, w_frac=0, out_frac=0)
    x_q = np.array([30000, 0, 30000, 0, 30000, 0], dtype=np.int16)
    want = fixed16_layer(codes, cb, x_q, in_frac=0, w_frac=0, out_frac=0)
    assert set(want.tolist()) == {2767, 0} if rows > 1 else want.tolist() == [0]
    np.testing.assert_array_equal(layer.run_fixed16_int(x_q), want)
    assert layer.execution_layout().column_scatter.fixed16_vector == vector


@settings(max_examples=40, deadline=None)
@given(data=st.data(), m=st.integers(1, 60), k=st.integers(1, 40), in_frac=st.integers(0, 12),
       w_frac=st.integers(4, 14), drop=st.integers(0, 20), relu=st.booleans())
def test_fixed16_property(data, m, k, in_frac, w_frac, drop, relu):
    out_frac = max(-16, in_frac + w_frac - drop)
    fp = FixedPointParams(in_frac=in_frac, w_frac=w_frac, out_frac=out_frac)
    layer, codes, cb, b = data.draw(layer_data.layers(m, k, 4, relu), label="layer, codes, codebook, bias")
    layer.fixed = fp
    # enough rows for a batch kernel: the panel one on AVX-512 hosts, else the CSR x block one
    x_q = data.draw(layer_data.int16_activations((FIXED16_CSR_SINGLE_MAX_BATCH + 1, k)), label="x_q")
    ref = _fixed16_rows(codes, cb, b, fp, relu, x_q)
    np.testing.assert_array_equal(layer.run_fixed16_int(x_q), ref)  # batch kernel
    for row, expected in zip(x_q, ref):  # single-vector scatter/gather
        np.testing.assert_array_equal(layer.run_fixed16_int(row), expected)


def test_fixed16_unclamped_path_only_when_proven_safe():
    rng = np.random.default_rng(11)
    fp = FixedPointParams(in_frac=8, w_frac=12, out_frac=8)
    layer, x_q, ref = _fixed_case(rng, 50, 40, 0.5, 0.5, fp, 0.01)
    ex = layer.execution_layout()
    _, cb_q, row_abs, _ = ex.fixed16.tables(fp.w_frac)
    rowptr, csc = ex.rows.rowptr, ex.column_scatter.arrays()
    bias_q = layer.quantized_bias().astype(np.int32)
    n_nz, amax = input_scan.count_and_amax(x_q[0])
    assert n_nz == np.count_nonzero(x_q[0]) and amax == np.abs(x_q[0].astype(np.int32)).max()
    assert 0 < amax <= column_scatter.safe_amax(row_abs, rowptr, bias_q, fp.shift)
    for saturate in (False, True):
        out = np.empty(50, np.int16)
        column_scatter.scatter_fixed16(*csc, cb_q, ex.rows.bounds, x_q[0], bias_q, fp.shift, True, saturate, out)
        np.testing.assert_array_equal(out, ref[0])
    # a bias at the int16 edge leaves no room: never provably safe
    assert column_scatter.safe_amax(row_abs, rowptr, np.full(50, 32767, np.int32), fp.shift) == -1


@pytest.mark.parametrize("shift", [31, 40, 70])
def test_fixed16_huge_shifts(shift):
    rng = np.random.default_rng(shift)
    fp = FixedPointParams(in_frac=30, w_frac=30, out_frac=60 - shift) if shift < 70 else \
        FixedPointParams(in_frac=30, w_frac=30, out_frac=-10)
    layer, x_q, ref = _fixed_case(rng, 20, 30, 0.5, 1.0, fp, 2.0 ** -15)
    np.testing.assert_array_equal(layer.run_fixed16_int(x_q), ref)


def test_balanced_bounds_are_aligned_and_balanced():
    row_nnz = np.r_[np.full(1000, 1), np.full(1000, 9)]
    bounds = balanced_bounds(row_nnz, 2)
    assert bounds[0] == 0 and bounds[-1] == 2000 and np.all(bounds[1:-1] % 16 == 0)
    halves = [row_nnz[bounds[i]:bounds[i + 1]].sum() for i in range(2)]
    assert abs(halves[0] - halves[1]) <= 16 * 9
    assert list(balanced_bounds(np.ones(5, dtype=np.int64), 4)) == [0, 5]  # never more blocks than 16-row groups


def test_fixed16_tables_follow_parameter_changes():
    rng = np.random.default_rng(13)
    layer, codes, cb, b = _layer(rng, 40, 30, 0.5)
    x = _acts(rng, 30, 0.3)
    for fracs in [(8, 12, 8), (8, 10, 6), (8, 12, 8)]:
        layer.fixed = FixedPointParams(*fracs)
        x_q = to_fixed(x, fracs[0])
        ref = fixed16_layer(codes, cb, x_q, in_frac=fracs[0], w_frac=fracs[1], out_frac=fracs[2], bias=b, relu=True)
        np.testing.assert_array_equal(layer.run_fixed16_int(x_q), ref)


@settings(max_examples=300, deadline=None)
@given(wmax=st.integers(0, 32768), shift=st.integers(0, 29), amax=st.integers(0, 32768))
def test_fit16_amax_is_exactly_the_term_bound(wmax, shift, amax):
    # the kernels compare max |activation| with this bound instead of computing the term bound per call
    assert (amax <= fit16_amax(wmax, shift)) == (term_bound(wmax, amax, shift) < 32767)
