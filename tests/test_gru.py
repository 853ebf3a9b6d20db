"""The GRU core (eie_runtime/gru.py, converters/gru.py): torch's nn.GRU and ONNX's GRU (both
linear_before_reset settings) on the pruned-and-shared weights, fused and step-by-step alike."""

import numpy as np
import pytest

from eie_runtime.converters.gru import GRUDirectionWeights, compress_gru, gru_matrices
from eie_runtime.errors import EIEFormatError, EIEInputError
from eie_runtime.gru import EIEGRUCore
from eie_runtime.hardware.trace import record_layer_calls


def _weights(rng, i, h, layers, dirs, bias=True):
    out = []
    for l in range(layers):
        isz = i if l == 0 else dirs * h
        out.append([GRUDirectionWeights(rng.normal(size=(3 * h, isz)).astype(np.float32) * 0.5,
                                        rng.normal(size=(3 * h, h)).astype(np.float32) * 0.5,
                                        rng.normal(size=3 * h).astype(np.float32) if bias else None,
                                        rng.normal(size=3 * h).astype(np.float32) if bias else None)
                    for _ in range(dirs)])
    return out


def _dense_parts(core, l, d):
    """(w_ih, w_hh, b_ih, b_hh) in torch's layout, from the EIE matrices, torch's bias convention."""
    w_x, w_hrz, w_hn = (m.dense() for m in core.cells[l][d])
    h = core.hidden_size
    w_hh = np.concatenate([w_hrz, w_hn[:, :-1]])
    b_hh = np.concatenate([np.zeros(2 * h, np.float32), w_hn[:, -1]])
    return w_x[:, :-1], w_hh, w_x[:, -1], b_hh


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def _onnx_reference(core, x, lens):
    """ONNX's GRU equations in float64 on the decoded matrices (either linear_before_reset)."""
    t_len, batch, _ = x.shape
    h = core.hidden_size
    layer_in = x.astype(np.float64)
    for l in range(core.num_layers):
        out = np.zeros((t_len, batch, core.num_directions * h))
        for d in range(core.num_directions):
            w_x, w_hrz, w_hn = (m.dense().astype(np.float64) for m in core.cells[l][d])
            state = np.zeros((batch, h))
            steps = range(t_len) if d == 0 else range(t_len - 1, -1, -1)
            for t in steps:
                gx = layer_in[t] @ w_x[:, :-1].T + w_x[:, -1]
                hrz = state @ w_hrz.T
                r, z = _sig(gx[:, :h] + hrz[:, :h]), _sig(gx[:, h:2 * h] + hrz[:, h:])
                v = state if core.linear_before_reset else r * state
                hn = v @ w_hn[:, :-1].T + w_hn[:, -1]
                n = np.tanh(gx[:, 2 * h:] + (r * hn if core.linear_before_reset else hn))
                new = (1 - z) * n + z * state
                live = (t < lens)[:, None]
                state = np.where(live, new, state)
                out[t, :, d * h:(d + 1) * h] = np.where(live, new, 0.0)
        layer_in = out
    return layer_in


@pytest.mark.parametrize("lbr", [True, False])
@pytest.mark.parametrize("fused", [True, False])
def test_gru_core_matches_onnx_equations(lbr, fused):
    rng = np.random.default_rng(1)
    core = compress_gru(_weights(rng, 5, 6, 2, 2), density=0.6, bits=4, n_pe=4, linear_before_reset=lbr)
    x = rng.normal(size=(7, 3, 5)).astype(np.float32)
    lens = np.array([7, 3, 0])
    y, h_n = core.forward(x, seq_lens=lens, fused=fused)
    ref = _onnx_reference(core, x, lens)
    assert y.shape == (7, 3, 12) and h_n.shape == (4, 3, 6)
    np.testing.assert_allclose(y, ref, atol=1e-5)
    np.testing.assert_allclose(core.forward(x[:, :1], fused=fused)[0], ref[:, :1], atol=1e-5)  # one sample
    np.testing.assert_array_equal(y[3:, 1], 0.0)
    np.testing.assert_array_equal(h_n[:, 2], 0.0)  # a zero-length sample keeps h0


@pytest.mark.parametrize("lbr", [True, False])
def test_gru_batches_across_16_sample_chunks(lbr):
    """The float32 batch kernel runs 16 samples side by side: 37 samples are 16 + 16 + 5 (padded)."""
    rng = np.random.default_rng(3)
    core = compress_gru(_weights(rng, 5, 6, 2, 2), density=0.6, bits=4, n_pe=4, linear_before_reset=lbr)
    x = rng.normal(size=(6, 37, 5)).astype(np.float32)
    lens = rng.integers(0, 7, size=37)
    y, h_n = core.forward(x, seq_lens=lens, fused=True)
    np.testing.assert_allclose(y, _onnx_reference(core, x, lens), atol=1e-5)
    y2, h_n2 = core.forward(x, seq_lens=lens, fused=False)
    np.testing.assert_allclose(h_n, h_n2, atol=2e-6)


def test_gru_matches_torch():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    gru = torch.nn.GRU(4, 8, num_layers=2, bidirectional=True)
    rng = np.random.default_rng(0)
    ws = [[GRUDirectionWeights(*(getattr(gru, f"{n}_l{l}{sfx}").detach().numpy() for n in
                                 ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))) for sfx in ("", "_reverse")]
          for l in range(2)]
    core = compress_gru(ws, density=0.3, bits=4, n_pe=8)
    ref = torch.nn.GRU(4, 8, num_layers=2, bidirectional=True)
    with torch.no_grad():
        for l in range(2):
            for d, sfx in enumerate(("", "_reverse")):
                for n, a in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), _dense_parts(core, l, d)):
                    getattr(ref, f"{n}_l{l}{sfx}").copy_(torch.from_numpy(a))
    x = rng.normal(size=(9, 2, 4)).astype(np.float32)
    h0 = rng.normal(size=(4, 2, 8)).astype(np.float32)
    with torch.no_grad():
        want, want_h = ref(torch.from_numpy(x), torch.from_numpy(h0))
    for fused in (True, False):
        y, h_n = core.forward(x, h0, fused=fused)
        np.testing.assert_allclose(y, want.numpy(), atol=1e-5)
        np.testing.assert_allclose(h_n, want_h.numpy(), atol=1e-5)


@pytest.mark.parametrize("lbr", [True, False])
def test_gru_fixed16_fused_equals_steps_bit_for_bit(lbr):
    rng = np.random.default_rng(2)
    core = compress_gru(_weights(rng, 6, 10, 2, 2), density=0.5, bits=4, n_pe=4, linear_before_reset=lbr)
    for layer in core.layers():
        layer.calibrate(rng.normal(size=(64, layer.in_features)).astype(np.float32))
    x = (rng.normal(size=(8, 3, 6)) * 2).astype(np.float32)
    lens = np.array([8, 5, 1])
    a = core.forward(x, seq_lens=lens, mode="fixed16", fused=True)
    b = core.forward(x, seq_lens=lens, mode="fixed16", fused=False)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    f = core.forward(x, seq_lens=lens, mode="float32")[0]
    assert np.abs(a[0] - f).mean() < 0.05  # fixed16 tracks float32 (calibrated on rough samples)


def test_gru_traces_one_call_per_matrix_and_step():
    rng = np.random.default_rng(3)
    core = compress_gru(_weights(rng, 3, 4, 1, 2), density=0.5, bits=4, n_pe=2)
    x = rng.normal(size=(5, 1, 3)).astype(np.float32)
    with record_layer_calls() as calls:
        y, _ = core.forward(x)
    assert len(calls) == 5 * 2 * 3
    names = {layer.name for layer, _ in calls}
    assert names == {m.name for m in core.layers()}
    np.testing.assert_allclose(y, core.forward(x)[0], atol=1e-6)


def test_gru_bad_input_and_shapes():
    rng = np.random.default_rng(4)
    core = compress_gru(_weights(rng, 3, 4, 1, 1), density=0.5, n_pe=2)
    with pytest.raises(EIEInputError, match="expected \\(seq_len, batch, 3\\)"):
        core.forward(np.zeros((2, 1, 4), np.float32))
    with pytest.raises(EIEInputError, match="h0"):
        core.forward(np.zeros((2, 1, 3), np.float32), h0=np.zeros((2, 1, 4), np.float32))
    with pytest.raises(EIEInputError, match="seq_lens"):
        core.forward(np.zeros((2, 1, 3), np.float32), seq_lens=[3])
    with pytest.raises(EIEInputError, match="calibrate"):
        core.forward(np.zeros((2, 1, 3), np.float32), mode="fixed16", fused=True)
    with pytest.raises(EIEFormatError, match="w_hrz shape"):
        EIEGRUCore([[(core.cells[0][0][0], core.cells[0][0][2], core.cells[0][0][2])]], 4)
    with pytest.raises(EIEInputError, match="w_hh"):
        gru_matrices(GRUDirectionWeights(np.zeros((12, 3)), np.zeros((12, 5))))


def test_gru_simulates_like_lstm():
    from eie_runtime.hardware import HardwareConfig, simulate

    rng = np.random.default_rng(5)
    core = compress_gru(_weights(rng, 6, 8, 1, 2), density=0.5, n_pe=4, linear_before_reset=False)
    x = rng.normal(size=(5, 2, 6)).astype(np.float32)
    rep = simulate(core, x, HardwareConfig(n_pe=4))
    assert len(rep.layers) == 5 * 2 * 2 * 3  # steps x batch x directions x matrices
    assert rep.matches_kernel
    assert {r.name.split("#")[0] for r in rep.layers} == {m.name for m in core.layers()}
