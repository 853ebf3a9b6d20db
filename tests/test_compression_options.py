"""Choices that decide quality: GRU ``init`` / ``bias``, weighted k-means, activation-aware pruning
(``input_rms``) in the converters, ``prepare_finetune`` / ``set_density`` / ``share_weights`` and ``distill``."""

import numpy as np
import pytest
import torch
from torch import nn

import eie_runtime.torch as et
from eie_runtime.converters.compress import importance, quantize_matrix
from eie_runtime.converters.gru import GRUDirectionWeights, compress_gru, gru_matrices
from eie_runtime.converters.prune import prune_mask
from eie_runtime.converters.weight_sharing import kmeans_share
from eie_runtime.errors import EIEError


def _gru_weights(rng, i=5, h=6, layers=2, dirs=2):
    return [[GRUDirectionWeights(rng.normal(size=(3 * h, i if l == 0 else dirs * h)).astype(np.float32),
                                 rng.normal(size=(3 * h, h)).astype(np.float32),
                                 rng.normal(size=3 * h).astype(np.float32) * 3,
                                 rng.normal(size=3 * h).astype(np.float32) * 3) for _ in range(dirs)]
            for l in range(layers)]


# ------------------------------------------------------------------ GRU init / bias
@pytest.mark.parametrize("lbr", [True, False])
def test_gru_dense_bias_is_exact_and_runs_like_shared_layout(lbr):
    rng = np.random.default_rng(0)
    ws = _gru_weights(rng)
    core = compress_gru(ws, density=0.5, bits=2, n_pe=4, bias="dense", linear_before_reset=lbr)
    for l, dirs in enumerate(ws):
        for d, w in enumerate(dirs):
            w_x, w_hrz, w_hn = gru_matrices(w, lbr)
            m_x, m_hrz, m_hn = core.cells[l][d]
            np.testing.assert_array_equal(m_x.bias, w_x[:, -1])  # exact, not one of 3 shared values
            assert not m_x.dense()[:, -1].any() and not m_hn.dense()[:, -1].any()  # the columns hold no entries
            assert m_hrz.bias is None
            if lbr:
                np.testing.assert_array_equal(m_hn.bias, w_hn[:, -1])
            else:
                assert m_hn.bias is None  # ONNX's default form has no b_hn column
    shared = compress_gru(ws, density=0.5, bits=2, n_pe=4, linear_before_reset=lbr)
    assert len(np.unique(shared.cells[0][0][0].dense()[:, -1])) <= 4  # shared: the bias takes codebook values
    x = rng.normal(size=(7, 3, 5)).astype(np.float32)
    y_fused, h_fused = core.forward(x, fused=True)
    y_step, h_step = core.forward(x, fused=False)
    np.testing.assert_allclose(y_fused, y_step, atol=1e-5)  # float32: same sums, another order
    np.testing.assert_allclose(h_fused, h_step, atol=1e-5)
    for layer in core.layers():
        layer.calibrate(rng.normal(size=(4, layer.in_features)).astype(np.float32) * 2)
    y16f, _ = core.forward(x, mode="fixed16", fused=True)
    y16s, _ = core.forward(x, mode="fixed16", fused=False)
    np.testing.assert_array_equal(y16f, y16s)  # the fixed16 sequence kernel starts from the layer bias too


def test_gru_init_reaches_every_matrix_and_bad_options_are_refused():
    rng = np.random.default_rng(1)
    ws = _gru_weights(rng, layers=1, dirs=1)
    lin = compress_gru(ws, density=0.6, bits=4, n_pe=2)
    den = compress_gru(ws, density=0.6, bits=4, n_pe=2, init="density")
    for m_lin, m_den, mat in zip(lin.cells[0][0], den.cells[0][0], gru_matrices(ws[0][0])):
        codes, cb = quantize_matrix(mat, density=0.6, bits=4, init="density")
        np.testing.assert_array_equal(m_den.dense(), cb[codes])
    assert not np.array_equal(lin.cells[0][0][0].dense(), den.cells[0][0][0].dense())
    with pytest.raises(EIEError, match="GRU bias must be one of"):
        compress_gru(ws, density=0.5, bias="exact")
    with pytest.raises(EIEError, match="init must be one of"):
        compress_gru(ws, density=0.5, init="kmeans++")


def test_torch_gru_options_follow_compress(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.GRU(4, 8, num_layers=2, batch_first=True))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "bias" in name:
                p.mul_(20)  # biases far outside the weights' range: sharing them costs accuracy
    x = torch.randn(3, 6, 4)
    small = et.compress(model, density=0.7, bits=3, lstm_bias="dense", init="density", n_pe=4)
    gru = small[0]
    assert isinstance(gru, et.EIEGRU)
    ref = gru.to_dense()
    np.testing.assert_allclose(ref.bias_ih_l0.detach().numpy()[16:], model[0].bias_ih_l0.detach().numpy()[16:],
                               rtol=1e-6)  # b_in exact
    np.testing.assert_allclose(gru(x)[0].numpy(), ref(x)[0].detach().numpy(), atol=1e-5)
    shared = et.compress(model, density=0.7, bits=3, init="density", n_pe=4)
    err = lambda m: float((m(x)[0] - model(x)[0]).detach().abs().max())
    assert err(small) < err(shared)
    path = tmp_path / "gru.eie"
    et.save(small, str(path))  # the layer biases travel in .eie files and state dicts
    np.testing.assert_array_equal(et.load(str(path), into=model)(x)[0].numpy(), small(x)[0].numpy())
    other = et.compress(model, density=0.7, bits=3, n_pe=4)
    other.load_state_dict(small.state_dict())
    np.testing.assert_array_equal(other(x)[0].numpy(), small(x)[0].numpy())
    one = et.EIEGRU.from_gru(model[0], density=0.7, bits=3, n_pe=4, init="density", bias="dense")
    np.testing.assert_array_equal(one(x)[0].numpy(), gru(x)[0].numpy())
    cell = nn.GRUCell(4, 8)
    ec = et.EIEGRUCell.from_gru_cell(cell, density=0.7, bits=3, n_pe=4, bias="dense")
    np.testing.assert_allclose(ec(x[:, 0]).numpy(), ec.to_dense()(x[:, 0]).detach().numpy(), atol=1e-5)


# ------------------------------------------------------------------ weighted k-means, input_rms
def test_weighted_kmeans_lowers_weighted_error_and_uniform_weights_change_nothing():
    rng = np.random.default_rng(2)
    vals = rng.standard_t(3, size=4000)
    wts = rng.uniform(0, 1, size=4000) ** 4
    cb_u, c_u = kmeans_share(vals, 3, init="density")
    cb_w, c_w = kmeans_share(vals, 3, init="density", weights=wts)
    werr = lambda cb, c: float((wts * (cb[c] - vals) ** 2).sum())
    assert werr(cb_w, c_w) < werr(cb_u, c_u)
    cb_1, c_1 = kmeans_share(vals, 3, init="density", weights=np.full(4000, 0.5))
    np.testing.assert_array_equal(cb_1, cb_u)
    np.testing.assert_array_equal(c_1, c_u)
    for bad in (np.ones(3), -wts, np.full(4000, np.nan)):
        with pytest.raises(EIEError, match="k-means weights"):
            kmeans_share(vals, 3, weights=bad)


def test_quantize_matrix_input_rms_prunes_by_importance():
    rng = np.random.default_rng(3)
    w = rng.normal(size=(20, 30)).astype(np.float32)
    rms = rng.uniform(0.01, 5, size=30)
    codes, cb = quantize_matrix(w, density=0.4, bits=4, input_rms=rms)
    np.testing.assert_array_equal(codes != 0, prune_mask(np.abs(w) * rms[None, :], 0.4))
    assert not np.array_equal(codes != 0, prune_mask(w, 0.4))
    np.testing.assert_array_equal(importance(w, None), np.abs(w))
    with pytest.raises(EIEError, match="input_rms must be 30"):
        quantize_matrix(w, density=0.4, input_rms=np.ones(29))


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(6, 16), nn.Linear(16, 3)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def test_input_rms_and_prepare_finetune_masks():
    torch.manual_seed(0)
    net = _Net()
    scale = torch.tensor([10.0, 0.01, 1, 1, 1, 1])
    xs = [torch.randn(32, 6) * scale for _ in range(4)]
    rms = et.input_rms(net, xs)
    assert set(rms) == {"a", "b"}
    want = torch.cat(xs).pow(2).mean(0).sqrt().double().numpy()
    np.testing.assert_allclose(rms["a"], want, rtol=1e-6)
    ft = et.prepare_finetune(net, density=0.5, input_rms={"a": rms["a"]})
    mask = ft.a.parametrizations.weight[0].mask.numpy() > 0
    w = net.a.weight.detach().numpy()
    np.testing.assert_array_equal(mask, prune_mask(np.abs(w) * rms["a"][None, :], 0.5))
    assert mask[:, 0].mean() >= 0.75 and not mask[:, 1].any()  # the loud input column kept, the quiet one pruned
    et.set_density(ft, 0.25)
    mask2 = ft.a.parametrizations.weight[0].mask.numpy() > 0
    np.testing.assert_array_equal(mask2, prune_mask(np.abs(w) * rms["a"][None, :], 0.25))
    small = et.finalize(ft, n_pe=2)
    np.testing.assert_array_equal(small.a.to_dense().weight.detach().numpy() != 0, mask2)
    with pytest.raises(EIEError, match="not a module being prepared"):
        et.prepare_finetune(net, density=0.5, input_rms={"c": rms["a"]})
    with pytest.raises(EIEError, match="one per input column"):
        et.prepare_finetune(net, density=0.5, input_rms={"a": rms["b"]})
    with pytest.raises(EIEError, match="not nn.Linear"):
        et.input_rms(net, xs, names=["zzz"])


def test_distill_prune_by():
    torch.manual_seed(0)
    net = _Net()
    data = [torch.randn(32, 6) * torch.tensor([4.0, 0.05, 1, 1, 1, 1]) for _ in range(4)]
    small, rep = et.distill(net, data, density=0.5, epochs=2, lr=3e-3, progress=False)
    assert [n for n, _ in rep.stages] == ["compressed", "pruned", "shared", "centroids", "eie"]
    kept = small.a.to_dense().weight.detach().numpy() != 0
    assert kept[:, 0].mean() > 0.5 and not kept[:, 1].any()  # activation-aware: the near-silent input loses its weights
    with pytest.raises(EIEError, match="prune_by must be one of"):
        et.distill(net, data, density=0.5, prune_by="movement", progress=False)
