"""Hostile numeric inputs at every entry point that reaches a kernel.

Shapes, dtypes, NaN/Inf, empty arrays, non-contiguous and read-only arrays:
each either gives the right answer (checked against a plain numpy reference) or
raises an ``EIEError`` whose message names the expected shape or dtype. The
Numba kernels check no bounds, so these wrappers are what keeps them in bounds.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import eie_runtime as eie
from eie_runtime.fixed_point import to_fixed
from eie_runtime.lstm import EIELSTMCore

import layer_data
import reference

M, K = 13, 10


def _layer(m=M, k=K, n_pe=4, bias=True, relu=True, seed=0) -> eie.EIELinear:
    rng = np.random.default_rng(seed)
    codes = rng.integers(1, 16, size=(m, k), dtype=np.uint8)
    codes[rng.random((m, k)) < 0.5] = 0
    codebook = np.concatenate([[0.0], rng.uniform(-1, 1, 15)]).astype(np.float32)
    b = rng.uniform(-1, 1, m).astype(np.float32) if bias else None
    layer = eie.EIELinear(eie.InterleavedCSC.from_codes(codes, codebook, n_pe), bias=b,
                          activation="relu" if relu else None, name="probe")
    if k:
        layer.calibrate(rng.uniform(-2, 2, (8, k)).astype(np.float32))
    else:
        layer.fixed = eie.FixedPointParams(8, 8, 8)
    return layer


LAYER = _layer()


def _want(layer, x):
    x = np.asarray(x, dtype=np.float32)
    rows = [reference.float32_layer(layer.dense(), xi, layer.bias, layer.activation == "relu") for xi in x.reshape(-1, layer.in_features)]
    return np.array(rows, dtype=np.float32).reshape(x.shape[:-1] + (layer.out_features,))


def _want_q(layer, x):
    fp = layer.fixed
    xq = to_fixed(np.asarray(x, dtype=np.float32), fp.in_frac)
    rows = [reference.fixed16_layer(layer.matrix.tocodes(), layer.matrix.codebook, r, in_frac=fp.in_frac, w_frac=fp.w_frac,
                                    out_frac=fp.out_frac, bias=layer.bias, relu=layer.activation == "relu")
            for r in xq.reshape(-1, layer.in_features)]
    return np.array(rows, dtype=np.int16).reshape(xq.shape[:-1] + (layer.out_features,))


ENTRY_POINTS = {
    "call-float32": lambda layer, x: layer(x),
    "call-fixed16": lambda layer, x: layer(x, mode="fixed16"),
    "run_float32": lambda layer, x: layer.run_float32(x),
    "run_fixed16": lambda layer, x: layer.run_fixed16(x),
    "calibrate": lambda layer, x: _layer().calibrate(x),
}


# ---------------------------------------------------------------- shapes
@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("shape", [(), (K + 1,), (K - 1,), (1,), (2, K + 1), (K, 2), (2, 3, K), (1, 1, K), (0,), (K, 0)])
def test_wrong_shapes_name_the_expected_shape(entry, shape):
    x = np.ones(shape, dtype=np.float32)
    with pytest.raises(eie.EIEInputError, match=rf"expected \({K},\) or \(batch, {K}\)") as info:
        ENTRY_POINTS[entry](LAYER, x)
    assert str(shape) in str(info.value) and "probe" in str(info.value)


@pytest.mark.parametrize("shape", [(), (K + 1,), (2, K - 1), (2, 2, K)])
def test_fixed16_int_wrong_shapes(shape):
    with pytest.raises(eie.EIEInputError, match=rf"expected \({K},\) or \(batch, {K}\)"):
        LAYER.run_fixed16_int(np.zeros(shape, dtype=np.int16))


@pytest.mark.parametrize("dtype", ["int32", "int8", "uint16", "float32", "float64", ">i2", "bool"])
def test_fixed16_int_wrong_dtypes(dtype):
    with pytest.raises(eie.EIEInputError, match="must be int16"):
        LAYER.run_fixed16_int(np.zeros(K, dtype=dtype))


def _small_values(dtype):
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return hnp.from_dtype(dtype)
    if dtype.kind == "f":
        return hnp.from_dtype(dtype, min_value=-2, max_value=2, allow_nan=False, allow_infinity=False,
                              allow_subnormal=False)
    info = np.iinfo(dtype)
    return hnp.from_dtype(dtype, min_value=max(int(info.min), -2), max_value=min(int(info.max), 255))


@st.composite
def any_inputs(draw):
    # any shape up to 3-D, with the accepted (K,) and (batch, K) drawn often enough to check their answers
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=12)
                 | st.tuples(st.integers(0, 5), st.just(K)) | st.just((K,)))
    dtype = draw(st.sampled_from(["float32", "float64", "float16", "int8", "int64", "uint8", "bool", ">f4", "<f8"]))
    return draw(hnp.arrays(dtype, shape, elements=_small_values(dtype)))


@given(x=any_inputs(), mode=st.sampled_from(["float32", "fixed16"]))
def test_any_shape_and_dtype_is_right_or_refused(x, mode):
    shape = x.shape
    ok_shape = len(shape) in (1, 2) and shape[-1] == K
    if not ok_shape:
        with pytest.raises(eie.EIEInputError, match=rf"expected \({K},\) or \(batch, {K}\)"):
            LAYER(x, mode=mode)
        return
    y = LAYER(x, mode=mode)
    assert y.dtype == np.float32 and y.shape == shape[:-1] + (M,)
    if mode == "float32":
        layer_data.assert_float32_close(y, LAYER.dense(), x, LAYER.bias, relu=True)
    else:
        q = LAYER.run_fixed16_int(to_fixed(np.asarray(x, dtype=np.float32), LAYER.fixed.in_frac))
        assert np.array_equal(q, _want_q(LAYER, x))


# ---------------------------------------------------------------- dtypes
@pytest.mark.parametrize("make", [
    lambda: np.ones(K, dtype=np.complex64),
    lambda: np.array(["a"] * K),
    lambda: np.array([object()] * K, dtype=object),
    lambda: np.zeros(K, dtype="datetime64[s]"),
    lambda: np.zeros(K, dtype=[("a", "f4")]),
    lambda: [[1.0] * K, [1.0] * (K - 1)],  # ragged
    lambda: "not an array",
    lambda: None,
], ids=["complex", "str", "object", "datetime", "structured", "ragged", "string", "none"])
@pytest.mark.parametrize("mode", ["float32", "fixed16"])
def test_non_numeric_inputs_are_refused(make, mode):
    with pytest.raises(eie.EIEInputError, match="probe"):
        LAYER(make(), mode=mode)


def test_python_sequences_and_torch_tensors_work():
    x = [float(i % 3) for i in range(K)]
    np.testing.assert_allclose(LAYER(x), _want(LAYER, x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(LAYER(tuple(x)), _want(LAYER, x), rtol=1e-5, atol=1e-5)
    torch = pytest.importorskip("torch", reason="needs the [torch] extra")
    t = torch.tensor([x, x], dtype=torch.float64)
    np.testing.assert_allclose(LAYER(t), _want(LAYER, [x, x]), rtol=1e-5, atol=1e-5)
    with pytest.raises(eie.EIEInputError, match="converted"):
        LAYER(torch.ones(K, requires_grad=True))


def test_bad_mode_is_refused():
    with pytest.raises(eie.EIEInputError, match="mode"):
        LAYER(np.ones(K, np.float32), mode="int8")


# ------------------------------------------------------------- NaN / Inf
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf_float32_reach_exactly_the_rows_that_use_the_column(bad):
    layer = _layer(relu=False)
    dense = layer.dense()
    x = np.linspace(-1, 1, K).astype(np.float32)
    j = 3
    x[j] = bad
    for y in (layer(x), layer(np.stack([x, x]))[1]):
        hit = dense[:, j] != 0
        assert not np.isfinite(y[hit]).any()
        ok = x.copy()
        ok[j] = 0
        np.testing.assert_allclose(y[~hit], _want(layer, ok)[~hit], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e39])
@pytest.mark.parametrize("entry", ["call-fixed16", "run_fixed16", "calibrate"])
def test_nan_inf_refused_where_they_cannot_be_represented(bad, entry):
    x = np.zeros((2, K), dtype=np.float64)
    x[1, 4] = bad  # 1e39 overflows float32
    with pytest.raises(eie.EIEInputError, match="NaN or Inf"):
        ENTRY_POINTS[entry](LAYER, x)


def test_fixed16_saturates_out_of_range_inputs():
    x = np.full(K, 1e30, dtype=np.float32)
    q = LAYER.run_fixed16_int(to_fixed(x, LAYER.fixed.in_frac))
    assert np.array_equal(q, _want_q(LAYER, x))  # saturated at int16, not wrapped


# ------------------------------------------------------------ empty arrays
@pytest.mark.parametrize("mode", ["float32", "fixed16"])
def test_empty_batch(mode):
    y = LAYER(np.zeros((0, K), dtype=np.float32), mode=mode)
    assert y.shape == (0, M) and y.dtype == np.float32


@pytest.mark.parametrize("mk", [(0, 5), (6, 0), (0, 0)])
@pytest.mark.parametrize("mode", ["float32", "fixed16"])
def test_empty_layers(mk, mode):
    m, k = mk
    layer = _layer(m, k, n_pe=3)
    y = layer(np.ones(k, dtype=np.float32), mode=mode)
    assert y.shape == (m,)
    want = np.maximum(layer.bias, 0) if m else np.zeros(0)
    if mode == "float32":
        np.testing.assert_allclose(y, want, rtol=0, atol=1e-7)
    assert layer(np.ones((4, k), dtype=np.float32), mode=mode).shape == (4, m)


# --------------------------------------------- layouts: strides, order, flags
def _variants(x):
    big = np.zeros((x.shape[0] * 2, K * 3), dtype=np.float32)
    big[::2, ::3] = x
    ro = x.copy()
    ro.flags.writeable = False
    fortran = np.asfortranarray(x)
    return {"strided": big[::2, ::3], "fortran": fortran, "readonly": ro, "reversed": x[::-1][::-1],
            "transposed-view": np.ascontiguousarray(x.T).T, "float64-strided": big.astype(np.float64)[::2, ::3],
            "big-endian": x.astype(">f4")}


@pytest.mark.parametrize("mode", ["float32", "fixed16"])
def test_non_contiguous_and_read_only_inputs(mode):
    x = np.random.default_rng(1).uniform(-2, 2, (5, K)).astype(np.float32)
    x[x < 0] = 0
    want = LAYER(x, mode=mode)
    want_one = LAYER(x[2].copy(), mode=mode)  # one vector may take another kernel than a batch
    for name, v in _variants(x).items():
        assert not name.startswith("strided") or not v.flags.c_contiguous
        assert np.array_equal(LAYER(v, mode=mode), want), name
        assert np.array_equal(LAYER(v[2], mode=mode), want_one), name
    q = to_fixed(x, LAYER.fixed.in_frac)
    q_ro = q.copy()
    q_ro.flags.writeable = False
    qbig = np.zeros((10, 2 * K), dtype=np.int16)
    qbig[::2, ::2] = q
    for v in (q_ro, qbig[::2, ::2], np.asfortranarray(q)):
        assert np.array_equal(LAYER.run_fixed16_int(v), LAYER.run_fixed16_int(q))


def test_read_only_model_arrays():
    """A model whose arrays are read-only (e.g. memory-mapped) runs the same."""
    layer = _layer()
    x = np.linspace(-1, 1, K).astype(np.float32)
    want, want_q = layer(x), layer(x, mode="fixed16")
    mat = layer.matrix
    for arr in (mat.entries, mat.ptr, mat.codebook, layer.bias):
        arr.flags.writeable = False
    fresh = eie.EIELinear(eie.InterleavedCSC(mat.shape, mat.n_pe, mat.entries, mat.ptr, mat.codebook),
                          bias=layer.bias, activation=layer.activation, fixed=layer.fixed)
    assert np.array_equal(fresh(x), want) and np.array_equal(fresh(x, mode="fixed16"), want_q)


# ------------------------------------------------ building a matrix or layer
@pytest.mark.parametrize("codes, codebook, n_pe, match", [
    (np.ones(5, np.uint8), np.zeros(16, np.float32), 2, "2-D"),
    (np.ones((3, 4), np.float32), np.zeros(16, np.float32), 2, "integer"),
    (np.full((3, 4), -1, np.int32), np.zeros(16, np.float32), 2, r"\[0, 15\]"),
    (np.full((3, 4), 16, np.int32), np.zeros(16, np.float32), 2, r"\[0, 15\]"),
    (np.full((3, 4), 5, np.int32), np.zeros(4, np.float32), 2, r"\[0, 3\]"),
    (np.ones((3, 4), np.uint8), np.zeros(16, np.float32), 0, "n_pe"),
    (np.ones((3, 4), np.uint8), np.zeros(16, np.float32), True, "n_pe"),
    (np.ones((3, 4), np.uint8), np.zeros(16, np.float32), 2.0, "n_pe"),
    (np.ones((3, 4), np.uint8), np.zeros(5, np.float32), 2, "2\\*\\*bits"),
    (np.ones((3, 4), np.uint8), np.ones(16, np.float32), 2, r"codebook\[0\]"),
    (np.ones((3, 4), np.uint8), np.array([0] + [np.nan] * 15, np.float32), 2, "NaN"),
    (np.ones((3, 4), np.uint8), np.zeros(16, np.int32), 2, "floating"),
    (np.ones((3, 4), np.uint8), np.zeros((4, 4), np.float32), 2, "1-D"),
])
def test_from_codes_refuses_bad_arguments(codes, codebook, n_pe, match):
    with pytest.raises(eie.EIEFormatError, match=match):
        eie.InterleavedCSC.from_codes(codes, codebook, n_pe)


def test_matrix_constructor_refuses_bad_arrays():
    good = LAYER.matrix
    args = dict(shape=good.shape, n_pe=good.n_pe, entries=good.entries, ptr=good.ptr, codebook=good.codebook)
    bad = [
        ({"entries": list(good.entries)}, "numpy array"),
        ({"entries": good.entries.astype(np.int32)}, "dtype int32"),
        ({"entries": good.entries.astype(np.uint16)}, "uint8"),
        ({"entries": good.entries.reshape(1, -1)}, "1-D"),
        ({"ptr": good.ptr.astype(np.float64)}, "integer"),
        ({"ptr": good.ptr[:, :-1]}, r"expected \(n_pe, K \+ 1\)"),
        ({"ptr": good.ptr.T}, r"expected \(n_pe, K \+ 1\)"),
        ({"n_pe": good.n_pe + 1}, r"expected \(n_pe, K \+ 1\)"),
        ({"shape": (M, K + 1)}, r"expected \(n_pe, K \+ 1\)"),
        ({"shape": (M - 5, K)}, "runs past"),
        ({"codebook": good.codebook.astype(np.float64) * 1e300}, "overflow"),
    ]
    for change, match in bad:
        with pytest.raises(eie.EIEFormatError, match=match):
            eie.InterleavedCSC(**{**args, **change})


def test_layer_constructor_refuses_bad_bias_and_params():
    with pytest.raises(eie.EIEFormatError, match=rf"expected \({M},\)"):
        eie.EIELinear(LAYER.matrix, bias=np.zeros(M + 1, np.float32))
    with pytest.raises(eie.EIEFormatError, match="finite"):
        eie.EIELinear(LAYER.matrix, bias=np.full(M, np.nan, np.float32))
    with pytest.raises(eie.EIEInputError, match="activation"):
        eie.EIELinear(LAYER.matrix, activation="tanh")
    with pytest.raises(eie.EIEInputError, match="shift"):
        eie.FixedPointParams(in_frac=2, w_frac=2, out_frac=8)


# ------------------------------------------------------------------- LSTM
def _lstm() -> EIELSTMCore:
    h, i = 3, 4
    rng = np.random.default_rng(2)

    def cell(k):
        codes = rng.integers(0, 16, size=(4 * h, k), dtype=np.uint8)
        cb = np.concatenate([[0.0], rng.uniform(-0.5, 0.5, 15)]).astype(np.float32)
        return eie.EIELinear(eie.InterleavedCSC.from_codes(codes, cb, 2))

    return EIELSTMCore([[cell(i + h + 1)]], hidden_size=h)


@pytest.mark.parametrize("shape", [(4,), (2, 4), (2, 1, 5), (2, 1, 4, 1)])
def test_lstm_wrong_input_shapes(shape):
    with pytest.raises(eie.EIEInputError, match=r"expected \(seq_len, batch, 4\)"):
        _lstm().forward(np.zeros(shape, np.float32))


def test_lstm_wrong_states_and_lengths():
    core = _lstm()
    x = np.zeros((5, 2, 4), np.float32)
    with pytest.raises(eie.EIEInputError, match=r"expected \(1, 2, 3\)"):
        core.forward(x, h0=np.zeros((1, 3, 3), np.float32))
    with pytest.raises(eie.EIEInputError, match="seq_lens"):
        core.forward(x, seq_lens=[6, 1])
    y, h, c = core.forward(x[:, :, :][::-1].copy()[::-1], seq_lens=[0, 5])  # non-contiguous, a zero length
    assert y.shape == (5, 2, 3) and not y[:, 0].any()


def test_lstm_empty_batch_and_sequence():
    core = _lstm()
    y, h, c = core.forward(np.zeros((0, 2, 4), np.float32))
    assert y.shape == (0, 2, 3) and h.shape == (1, 2, 3)
    y, h, c = core.forward(np.zeros((3, 0, 4), np.float32))
    assert y.shape == (3, 0, 3)


@pytest.mark.parametrize("make", [
    lambda: np.full((2, 1, 4), "a"),
    lambda: np.ones((2, 1, 4), np.complex64),
    lambda: np.array([[[object()] * 4]] * 2),
    lambda: [[[1.0] * 4], [[1.0] * 2]],  # ragged
], ids=["str", "complex", "object", "ragged"])
def test_lstm_non_numeric_inputs_are_refused(make):
    with pytest.raises(eie.EIEInputError, match="LSTM"):
        _lstm().forward(make())
    with pytest.raises(eie.EIEInputError, match="h0"):
        _lstm().forward(np.zeros((2, 1, 4), np.float32), h0=np.full((1, 1, 3), "a"))


# ------------------------------------------------------- hardware simulator
def test_hardware_simulator_inputs():
    from eie_runtime.hardware import HardwareConfig, prepare_layer, simulate, simulate_vector

    cfg = HardwareConfig(n_pe=4)
    for shape in [(K + 1,), (2, K - 1), (1, 2, K), ()]:
        with pytest.raises(eie.EIEInputError, match=rf"expected \({K},\) or \(batch, {K}\)"):
            simulate(LAYER, np.ones(shape, np.float32), cfg)
    with pytest.raises(eie.EIEInputError, match="NaN or Inf"):
        simulate(LAYER, np.full(K, np.nan, np.float32), cfg)
    x = np.linspace(-1, 1, K).astype(np.float32)
    strided = np.zeros(2 * K, np.float32)[::2]
    strided[:] = x
    strided.flags.writeable = False
    assert simulate(LAYER, strided, cfg).layers[0].cycles == simulate(LAYER, x, cfg).layers[0].cycles
    prep = prepare_layer(LAYER, cfg)
    for bad in (np.zeros(K, np.int32), np.zeros(K + 1, np.int16), np.zeros((1, K), np.int16)):
        with pytest.raises(eie.EIEInputError, match=rf"int16 of shape \({K},\)"):
            simulate_vector(prep, bad, cfg)
