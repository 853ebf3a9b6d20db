"""float32 and fixed16 kernels against the plain references in reference.py."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import eie_runtime as eie
from eie_runtime import EIEInputError, EIELinear, FixedPointParams, InterleavedCSC
from eie_runtime.execution import FIXED16_CSR_SINGLE_MAX_BATCH
from eie_runtime.fixed_point import to_fixed

import layer_data
from reference import fixed16_layer, float32_layer


def make_layer(m, k, density, n_pe, seed=0, relu=False, bias=True, bits=4):
    rng = np.random.default_rng(seed)
    codes = np.where(rng.random((m, k)) < density, rng.integers(1, 1 << bits, (m, k)), 0).astype(np.uint8)
    cb = np.zeros(1 << bits, dtype=np.float32)
    cb[1:] = rng.normal(0, 0.5, (1 << bits) - 1).astype(np.float32)
    b = rng.normal(0, 0.1, m).astype(np.float32) if bias else None
    return EIELinear(InterleavedCSC.from_codes(codes, cb, n_pe), bias=b, activation="relu" if relu else None), codes, cb


def sparse_input(rng, shape, density, negative=True):
    x = rng.normal(size=shape).astype(np.float32)
    if not negative:
        x = np.abs(x)
    return np.where(rng.random(shape) < density, x, 0).astype(np.float32)


def assert_close(y, ref):
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 * scale)


@settings(max_examples=60)
@given(data=st.data(), m=st.integers(1, 90), k=st.integers(1, 70), n_pe=st.sampled_from([1, 3, 8, 64, 128]),
       relu=st.booleans(), batch=st.sampled_from([None, 1, 5]))
def test_float32_matches_dense(data, m, k, n_pe, relu, batch):
    layer, _, _, bias = data.draw(layer_data.layers(m, k, n_pe, relu), label="layer, codes, codebook, bias")
    x = data.draw(layer_data.activations((k,) if batch is None else (batch, k)), label="x")
    y = layer(x)
    assert y.dtype == np.float32 and y.shape == ((m,) if batch is None else (batch, m))
    layer_data.assert_float32_close(y, layer.dense(), x, bias, relu)


@pytest.mark.parametrize("case", ["zeros", "all_nonzero", "negative"])
def test_float32_special_inputs(case):
    layer, _, _ = make_layer(300, 200, 0.1, 64, seed=2, relu=False)
    rng = np.random.default_rng(5)
    x = {"zeros": np.zeros(200, np.float32),
         "all_nonzero": rng.normal(size=200).astype(np.float32) + 10.0,
         "negative": -np.abs(sparse_input(rng, (200,), 0.4)) - 0.0}[case]
    y = layer(x)
    assert_close(y, float32_layer(layer.dense(), x, layer.bias))
    if case == "zeros":
        assert np.array_equal(y, layer.bias)  # only the bias survives
    if case == "negative":
        # a negative activation is a value, not a zero: the result must differ from bias alone
        assert not np.allclose(y, layer.bias)


def test_float32_real_alexnet_fc8(alexnet_fc8):
    codes, cb, bias, x = alexnet_fc8
    layer = EIELinear(InterleavedCSC.from_codes(codes, cb, 64), bias=bias)
    assert_close(layer(x), float32_layer(cb[codes], x, bias))


def test_nan_reaches_only_rows_it_touches():
    layer, codes, _ = make_layer(50, 20, 0.2, 4, seed=3)
    x = np.ones(20, np.float32)
    x[7] = np.nan
    y = layer(x)
    touched = codes[:, 7] != 0
    assert np.isnan(y[touched]).all()
    assert np.isfinite(y[~touched]).all()
    with pytest.raises(EIEInputError, match="NaN"):
        layer.calibrate(np.ones((2, 20), np.float32))
        layer(x, mode="fixed16")


@settings(max_examples=40)
@given(data=st.data(), m=st.integers(1, 60), k=st.integers(1, 40), n_pe=st.sampled_from([1, 4, 64]),
       relu=st.booleans(), in_frac=st.integers(0, 12), w_frac=st.integers(0, 14), out_drop=st.integers(0, 20))
def test_fixed16_bit_exact(data, m, k, n_pe, relu, in_frac, w_frac, out_drop):
    layer, codes, cb, _ = data.draw(layer_data.layers(m, k, n_pe, relu), label="layer, codes, codebook, bias")
    out_frac = max(-16, in_frac + w_frac - out_drop)
    layer.fixed = FixedPointParams(in_frac, w_frac, out_frac)
    x_q = data.draw(layer_data.int16_activations((k,)), label="x_q")
    got = layer.run_fixed16_int(x_q)
    ref = fixed16_layer(codes, cb, x_q, in_frac=in_frac, w_frac=w_frac, out_frac=out_frac, bias=layer.bias, relu=relu)
    assert np.array_equal(got, ref)
    for n_zero in (1, FIXED16_CSR_SINGLE_MAX_BATCH):  # a small batch (vector by vector), a large one (batch kernel)
        batch = np.stack([x_q, -x_q] + [np.zeros_like(x_q)] * n_zero)
        assert np.array_equal(layer.run_fixed16_int(batch)[0], ref)


def test_fixed16_saturation_and_order():
    # one row, weights that overflow int16 midway then come back: saturating in
    # ascending column order gives a different answer than exact arithmetic.
    cb = np.zeros(16, np.float32)
    cb[1], cb[2] = 1.0, -1.0
    codes = np.array([[1, 1, 1, 2, 2]], dtype=np.uint8)
    layer = EIELinear(InterleavedCSC.from_codes(codes, cb, 1), fixed=FixedPointParams(0, 0, 0))
    x_q = np.array([20000, 20000, 20000, 20000, 20000], dtype=np.int16)
    got = layer.run_fixed16_int(x_q)
    # 20000 -> sat(40000)=32767 -> 32767 -> 12767 -> -7233
    assert got.tolist() == [-7233]
    assert got.tolist() == fixed16_layer(codes, cb, x_q, in_frac=0, w_frac=0, out_frac=0).tolist()


def test_fixed16_round_half_up():
    cb = np.zeros(16, np.float32)
    cb[1] = 1.0
    codes = np.array([[1], [1]], dtype=np.uint8)
    layer = EIELinear(InterleavedCSC.from_codes(codes, cb, 2), fixed=FixedPointParams(0, 1, 0))  # shift 1
    assert layer.run_fixed16_int(np.array([3], np.int16)).tolist() == [3, 3]  # (6 + 1) >> 1 = 3 (3.0)
    assert layer.run_fixed16_int(np.array([-3], np.int16)).tolist() == [-3, -3]  # (-6 + 1) >> 1 = -3
    cb[1] = 0.5  # w = 1 with w_frac 1 -> product 5 * 1 = 5 -> (5 + 1) >> 1 = 3: 2.5 rounds up
    layer = EIELinear(InterleavedCSC.from_codes(codes, cb, 2), fixed=FixedPointParams(0, 1, 0))
    assert layer.run_fixed16_int(np.array([5], np.int16)).tolist() == [3, 3]
    assert layer.run_fixed16_int(np.array([-5], np.int16)).tolist() == [-2, -2]  # -2.5 rounds up to -2


def test_calibrate_and_fixed16_close_to_float(alexnet_fc8):
    codes, cb, bias, x = alexnet_fc8
    layer = EIELinear(InterleavedCSC.from_codes(codes, cb, 64), bias=bias)
    fp = layer.calibrate(x[None])
    assert fp.shift >= 0
    y32, y16 = layer(x), layer(x, mode="fixed16")
    assert np.abs(y16 - y32).max() <= 0.01 * np.abs(y32).max()
    q = to_fixed(x, fp.in_frac)
    assert np.array_equal(layer.run_fixed16_int(q), to_fixed(y16, fp.out_frac))


def test_calibrate_chain_links_fractions():
    l1, _, _ = make_layer(30, 20, 0.3, 4, seed=1, relu=True)
    l2, _, _ = make_layer(10, 30, 0.3, 4, seed=2)
    xs = np.abs(np.random.default_rng(0).normal(size=(16, 20))).astype(np.float32)
    eie.calibrate_chain([l1, l2], xs)
    assert l2.fixed.in_frac == l1.fixed.out_frac


@pytest.mark.parametrize("x, message", [
    (np.zeros(7, np.float32), r"\(20,\) or \(batch, 20\)"),
    (np.zeros((2, 3, 20), np.float32), r"expected \(20,\)"),
    (np.array(["a"] * 20), "real numbers"),
])
def test_bad_inputs(x, message):
    layer, _, _ = make_layer(10, 20, 0.3, 4)
    with pytest.raises(EIEInputError, match=message):
        layer(x)


def test_bad_mode_and_missing_fixed():
    layer, _, _ = make_layer(10, 20, 0.3, 4)
    with pytest.raises(EIEInputError, match="mode"):
        layer(np.zeros(20, np.float32), mode="int8")
    with pytest.raises(EIEInputError, match="calibrate"):
        layer(np.zeros(20, np.float32), mode="fixed16")
    with pytest.raises(EIEInputError, match="shift"):
        FixedPointParams(in_frac=0, w_frac=0, out_frac=3)


def test_copy_and_pickle_rebuild_the_execution_layout():
    import copy
    import pickle

    layer, _, _ = make_layer(40, 30, 0.3, 4, seed=9)
    x = np.abs(np.random.default_rng(0).normal(size=30)).astype(np.float32)
    y = layer(x)  # builds the layout (which holds a lock)
    for clone in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        assert np.array_equal(clone(x), y)
