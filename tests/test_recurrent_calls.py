"""Small recurrent calls (kernels/recurrent_calls.py via run_checked): the one-call kernels against the step
path for 1-5 samples and sequences whose input product spans several 16-sample groups, the reverse
direction run in place, and the per-layer plans rebuilt when a layer's arrays or run methods change."""

import numpy as np
import pytest

from eie_runtime.converters.gru import GRUDirectionWeights, compress_gru
from eie_runtime.converters.lstm import LSTMDirectionWeights, compress_lstm
from eie_runtime.errors import EIEInputError
from eie_runtime.graph.layer_ops import _reverse_by_length


def _lstm(rng, i=6, h=8):
    w = LSTMDirectionWeights(rng.normal(size=(4 * h, i)).astype(np.float32) * 0.6,
                             rng.normal(size=(4 * h, h)).astype(np.float32) * 0.6,
                             rng.normal(size=4 * h).astype(np.float32), None)
    return compress_lstm([[w]], density=0.6, bits=4, n_pe=2)


def _gru(rng, i=6, h=8, lbr=True):
    w = GRUDirectionWeights(rng.normal(size=(3 * h, i)).astype(np.float32) * 0.5,
                            rng.normal(size=(3 * h, h)).astype(np.float32) * 0.5,
                            rng.normal(size=3 * h).astype(np.float32), rng.normal(size=3 * h).astype(np.float32))
    return compress_gru([[w]], density=0.6, bits=4, n_pe=2, linear_before_reset=lbr)


def _calibrate(core, rng):
    for layer in core.layers():
        layer.calibrate(rng.normal(size=(16, layer.in_features)).astype(np.float32))


def _run(core, x, lens, mode, fused, reverse=False):
    if hasattr(core, "proj"):
        return core.run_checked(x, None, None, lens, mode, fused, reverse=reverse)
    return core.run_checked(x, None, lens, mode, fused, reverse=reverse)


def _check(a, b, mode):
    for u, v in zip(a, b):
        if mode == "fixed16":
            np.testing.assert_array_equal(u, v)
        else:
            np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["lstm", "gru", "gru-onnx"])
@pytest.mark.parametrize("mode", ["float32", "fixed16"])
@pytest.mark.parametrize("shape", [(1, 1), (1, 3), (7, 2), (17, 1), (4, 5)])
def test_one_call_equals_the_step_path(kind, mode, shape):
    rng = np.random.default_rng(sum(shape))
    core = _lstm(rng) if kind == "lstm" else _gru(rng, lbr=kind == "gru")
    _calibrate(core, rng)
    t_len, batch = shape
    x = np.ascontiguousarray(rng.normal(size=(t_len, batch, 6)).astype(np.float32))
    lens = np.ascontiguousarray(rng.integers(0, t_len + 1, batch), dtype=np.int64)
    for ln in (None, lens):
        for reverse in (False, True):
            fused = _run(core, x, ln, mode, True, reverse)
            _check(fused, _run(core, x, ln, mode, False, reverse), mode)
    # the public entry agrees with the checked one; no lengths = every sample's full length
    _check(_run(core, x, None, mode, None), core.forward(x, mode=mode), mode)
    _check(_run(core, x, None, mode, None),
           _run(core, x, np.full(batch, t_len, dtype=np.int64), mode, None), mode)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_reverse_runs_each_sample_from_its_last_step(kind):
    rng = np.random.default_rng(5)
    core = _lstm(rng) if kind == "lstm" else _gru(rng)
    x = rng.normal(size=(6, 3, 6)).astype(np.float32)
    lens = np.array([6, 2, 0], dtype=np.int64)
    y = _run(core, x, lens, "float32", None, reverse=True)
    ref = _run(core, np.ascontiguousarray(_reverse_by_length(x, lens)), lens, "float32", None)
    np.testing.assert_allclose(y[0], _reverse_by_length(ref[0], lens), rtol=1e-5, atol=1e-6)
    for u, v in zip(y[1:], ref[1:]):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)
    assert not y[0][2:, 1].any() and not y[0][:, 2].any()


def test_plans_follow_replaced_biases_fixed_point_and_run_methods():
    rng = np.random.default_rng(7)
    core = _gru(rng)
    x = rng.normal(size=(3, 1, 6)).astype(np.float32)
    before = core.forward(x)[0]
    w_x = core.cells[0][0][0]
    w_x.bias = np.full(w_x.out_features, 0.5, np.float32)
    after = core.forward(x)[0]
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, core.forward(x, fused=False)[0], rtol=1e-5, atol=1e-6)
    _calibrate(core, rng)
    y16 = core.forward(x, mode="fixed16")[0]
    w_x.calibrate(rng.normal(size=(16, 7)).astype(np.float32) * 8)  # new fixed-point parameters
    np.testing.assert_array_equal(core.forward(x, mode="fixed16")[0], core.forward(x, mode="fixed16", fused=False)[0])
    assert not np.array_equal(core.forward(x, mode="fixed16")[0], y16)
    w_x.run_float32 = w_x.run_float32  # a replaced run method (what a recorder does) stops the fused run
    assert not core.can_fuse()
    with pytest.raises(EIEInputError, match="run methods replaced"):
        core.forward(x, fused=True)
    del w_x.run_float32
    core.forward(x, fused=True)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_saturated_gates_match_the_step_path(kind):
    # pre-activations in the thousands: the float32 kernels' exp is clamped where it stays a normal float
    rng = np.random.default_rng(11)
    core = _lstm(rng) if kind == "lstm" else _gru(rng)
    x = (rng.normal(size=(4, 2, 6)) * 5e3).astype(np.float32)
    fused, steps = core.forward(x, fused=True), core.forward(x, fused=False)
    for u, v in zip(fused, steps):
        assert np.isfinite(u).all()
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("gru", [False, True])
def test_node_gives_zero_final_states_for_a_zero_length_sample(gru):
    # onnxruntime's rule for Y_h / Y_c; the cores keep the initial state
    from eie_runtime.onnx.nodes import GRUKernel, LSTMKernel

    rng = np.random.default_rng(13)
    cores = [_gru(rng), _gru(rng)] if gru else [_lstm(rng), _lstm(rng)]
    kernel = (GRUKernel if gru else LSTMKernel)(cores, {"layout": 0, "hidden_size": 8, "direction": "bidirectional"},
                                                "node")
    x = rng.normal(size=(4, 3, 6)).astype(np.float32)
    h0 = rng.normal(size=(2, 3, 8)).astype(np.float32)
    args = [x, np.array([0, 4, 2], np.int32), h0] + ([] if gru else [h0.copy()])
    outs = kernel.run(args, "float32")
    assert not outs[0][:, :, 0].any()
    for state in outs[1:]:
        assert not state[:, 0].any() and state[:, 1:].all()
