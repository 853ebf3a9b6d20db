"""The LSTM sequence kernel (kernels/recurrent.py via EIELSTMCore.forward): one compiled call per
layer/direction, equal to the step-by-step path (fixed16 bit for bit), with every LSTM option."""

import numpy as np
import pytest

from eie_runtime.converters.lstm import LSTMDirectionWeights, compress_lstm
from eie_runtime.errors import EIEInputError
from eie_runtime.hardware.trace import record_layer_calls
from eie_runtime.layer import calls_observed


def _core(rng, i=5, h=8, p=0, layers=2, dirs=2, density=0.5, n_pe=4, bias=True):
    out_size = p or h
    ws = []
    for l in range(layers):
        isz = i if l == 0 else dirs * out_size
        ws.append([LSTMDirectionWeights(rng.normal(size=(4 * h, isz)).astype(np.float32) * 0.6,
                                        rng.normal(size=(4 * h, out_size)).astype(np.float32) * 0.6,
                                        rng.normal(size=4 * h).astype(np.float32) if bias else None, None,
                                        rng.normal(size=(p, h)).astype(np.float32) if p else None)
                   for _ in range(dirs)])
    return compress_lstm(ws, density=density, bits=4, n_pe=n_pe)


CASES = [dict(), dict(p=3), dict(layers=1, dirs=1), dict(layers=3, dirs=1, p=4, bias=False)]


@pytest.mark.parametrize("case", CASES)
def test_fused_float32_matches_steps(case):
    rng = np.random.default_rng(0)
    core = _core(rng, **case)
    x = rng.normal(size=(9, 3, 5)).astype(np.float32)
    h0 = rng.normal(size=(core.num_layers * core.num_directions, 3, core.out_size)).astype(np.float32)
    c0 = rng.normal(size=(core.num_layers * core.num_directions, 3, core.hidden_size)).astype(np.float32)
    lens = np.array([9, 4, 0])
    assert core.can_fuse()
    a = core.forward(x, h0, c0, seq_lens=lens, fused=True)
    b = core.forward(x, h0, c0, seq_lens=lens, fused=False)
    for u, v in zip(a, b):
        np.testing.assert_allclose(u, v, atol=2e-6)
    np.testing.assert_array_equal(a[0][4:, 1], 0.0)
    np.testing.assert_array_equal(a[1][:, 2], h0[:, 2])  # a zero-length sample keeps its state
    # one sample (the single-sample kernel) equals its share of the batch
    one = core.forward(x[:, :1], h0[:, :1], c0[:, :1], fused=True)
    for u, v in zip(one, a):
        np.testing.assert_allclose(u, v[:, :1], atol=2e-6)


@pytest.mark.parametrize("batch", [2, 6, 16, 37])
def test_fused_float32_batches_across_16_sample_chunks(batch):
    """From 6 samples the batch kernel runs 16 side by side: 37 are 16 + 16 + 5 (padded); 2 run one by one."""
    rng = np.random.default_rng(batch)
    core = _core(rng, p=3)
    x = rng.normal(size=(7, batch, 5)).astype(np.float32)
    lens = rng.integers(0, 8, size=batch)
    a = core.forward(x, seq_lens=lens, fused=True)
    b = core.forward(x, seq_lens=lens, fused=False)
    for u, v in zip(a, b):
        np.testing.assert_allclose(u, v, atol=2e-6)


@pytest.mark.parametrize("case", CASES)
def test_fused_fixed16_equals_steps_bit_for_bit(case):
    rng = np.random.default_rng(1)
    core = _core(rng, **case)
    for layer in core.layers():
        layer.calibrate(rng.normal(size=(64, layer.in_features)).astype(np.float32) * 1.5)
    x = (rng.normal(size=(9, 3, 5)) * 2).astype(np.float32)
    lens = np.array([9, 6, 2])
    a = core.forward(x, seq_lens=lens, mode="fixed16", fused=True)
    b = core.forward(x, seq_lens=lens, mode="fixed16", fused=False)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def test_fixed16_steps_are_the_layers_integer_products():
    """Each traced step's gate product is the layer's int16 computation on the quantized [x; h; 1]
    (what the simulator checks), so the fused run equals the hardware's products too."""
    rng = np.random.default_rng(2)
    core = _core(rng, layers=1, dirs=1)
    cell = core.cells[0][0]
    cell.calibrate(rng.normal(size=(64, cell.in_features)).astype(np.float32))
    x = rng.normal(size=(4, 1, 5)).astype(np.float32)
    with record_layer_calls() as calls:
        assert calls_observed() and not core.can_fuse("fixed16")
        y_steps = core.forward(x, mode="fixed16")[0]
    assert not calls_observed()
    assert len(calls) == 4
    from eie_runtime.fixed_point import from_fixed, to_fixed
    for layer, inp in calls:
        ints = layer.run_fixed16_int(to_fixed(inp, layer.fixed.in_frac))
        np.testing.assert_array_equal(from_fixed(ints, layer.fixed.out_frac), layer(inp, mode="fixed16"))
    np.testing.assert_array_equal(y_steps, core.forward(x, mode="fixed16", fused=True)[0])


def test_fused_cache_follows_a_replaced_matrix():
    rng = np.random.default_rng(3)
    core = _core(rng, layers=1, dirs=1)
    x = rng.normal(size=(3, 1, 5)).astype(np.float32)
    before = core.forward(x)[0]
    other = _core(np.random.default_rng(9), layers=1, dirs=1)
    core.cells[0][0].matrix = other.cells[0][0].matrix
    np.testing.assert_allclose(core.forward(x)[0], other.forward(x)[0], atol=1e-6)
    assert not np.allclose(before, other.forward(x)[0])


def test_fused_refusals():
    rng = np.random.default_rng(4)
    core = _core(rng, layers=1, dirs=1)
    x = np.zeros((2, 1, 5), np.float32)
    with pytest.raises(EIEInputError, match="calibrate"):
        core.forward(x, mode="fixed16", fused=True)
    with pytest.raises(EIEInputError, match="mode must be"):
        core.forward(x, mode="float16")
    with pytest.raises(EIEInputError, match="seq_lens"):
        core.forward(x, seq_lens=[1.5])
    for layer in core.layers():
        layer.calibrate(np.ones((2, layer.in_features), np.float32))
    x[0, 0, 0] = np.nan
    with pytest.raises(EIEInputError, match="NaN"):
        core.forward(x, mode="fixed16")
