"""Deep Compression fine-tuning: masked gradients, centroid gradients, finalize == trained model."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs the [torch] extra")
from torch import nn  # noqa: E402

import eie_runtime.torch as et  # noqa: E402
from eie_runtime.errors import EIEError  # noqa: E402


def rel_err(a, b) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Linear(6, 10)
        self.lstm = nn.LSTM(10, 8, num_layers=2, bidirectional=True, proj_size=4, batch_first=True)
        self.cell = nn.LSTMCell(8, 5)
        self.out = nn.Linear(5, 3)

    def forward(self, x):
        y, _ = self.lstm(torch.relu(self.emb(x)))
        h, _ = self.cell(y[:, -1])
        return self.out(h)


def steps(model, x, n=5, opt=None):
    opt = opt or torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    for _ in range(n):
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()


def test_pruned_weights_stay_zero_through_training_and_gradual_pruning():
    torch.manual_seed(0)
    model, x = Tagger(), torch.randn(4, 5, 6)
    ft = et.prepare_finetune(model, density=0.5, bits=None)
    w_before = ft.lstm.weight_ih_l1_reverse.detach().clone()
    steps(ft, x)
    w = ft.lstm.weight_ih_l1_reverse.detach()
    assert torch.equal(w == 0, w_before == 0) and not torch.equal(w, w_before)  # trained, zeros kept
    assert int((ft.emb.weight != 0).sum()) == 30
    densities = [et.density_schedule(s, 10, 0.2) for s in range(0, 12, 2)]
    assert densities[0] == 1.0 and densities[-1] == pytest.approx(0.2) and densities == sorted(densities, reverse=True)
    et.set_density(ft, 0.2)
    assert int((ft.emb.weight != 0).sum()) == 12
    kept = ft.lstm.weight_hh_l0 != 0
    steps(ft, x)
    assert torch.equal(ft.lstm.weight_hh_l0 != 0, kept)
    with pytest.raises(EIEError, match="already shared"):
        et.set_density(et.share_weights(ft), 0.1)


def test_centroid_gradient_is_sum_of_its_weights_gradients():
    torch.manual_seed(1)
    lin = nn.Linear(20, 7)
    ft = et.prepare_finetune(lin, density=0.4, bits=3, stage="shared")
    param = ft.parametrizations.weight[0]
    x = torch.randn(9, 20)
    ft(x).sin().sum().backward()
    w = ft.weight.detach().clone().requires_grad_(True)  # the same values as a free leaf
    nn.functional.linear(x, w, ft.bias).sin().sum().backward()
    codes = param.codes
    expect = torch.stack([w.grad[codes == c].sum() for c in range(1, 8)])
    assert torch.allclose(param.centroids.grad, expect, rtol=1e-5, atol=1e-6)
    assert param.centroids.numel() == 7 and torch.equal(ft.weight == 0, codes == 0)


@pytest.mark.parametrize("two_stage", [False, True])
def test_finalize_equals_trained_model(two_stage):
    torch.manual_seed(2)
    model, x = Tagger().eval(), torch.randn(3, 6, 6)
    if two_stage:
        ft = et.prepare_finetune(model, density=0.4, bits=None)
        steps(ft, x)
        ft = et.share_weights(ft, bits={"lstm": 3})
    else:
        ft = et.prepare_finetune(model, density=0.4, bits=4, stage="shared")
    steps(ft, x, opt=torch.optim.Adam(ft.parameters(), lr=1e-2))
    vals = torch.cat([ft.lstm.weight_ih_l0.flatten(), ft.lstm.weight_hh_l0.flatten(), ft.lstm.bias_ih_l0])
    assert torch.unique(vals).numel() <= (8 if two_stage else 16)  # shared: at most 2**bits values
    assert not ft.lstm.bias_hh_l0.any()
    small = et.finalize(ft, n_pe=4)
    assert isinstance(small.lstm, et.EIELSTM) and isinstance(small.cell, et.EIELSTMCell)
    with torch.no_grad():
        assert rel_err(small(x), ft(x)) < 1e-5
    assert small.lstm.eie_layers()[0].matrix.bits == (3 if two_stage else 4)
    assert isinstance(model.lstm, nn.LSTM) and not hasattr(model.lstm, "parametrizations")  # untouched


def test_prepare_then_finalize_without_training_equals_compress():
    torch.manual_seed(3)
    model, x = Tagger().eval(), torch.randn(2, 4, 6)
    a = et.finalize(et.prepare_finetune(model, density=0.3, bits=4, seed=5), n_pe=8)
    b = et.compress(model, density=0.3, bits=4, seed=5, n_pe=8)
    for la, lb in zip(a.lstm.eie_layers(), b.lstm.eie_layers()):
        assert np.array_equal(la.matrix.entries, lb.matrix.entries) and np.array_equal(la.matrix.codebook, lb.matrix.codebook)
    assert torch.equal(a(x), b(x))


def test_agreement_and_bad_input():
    lin = nn.Linear(4, 3)
    a = et.agreement(lin, lin, [torch.randn(5, 4)])
    assert a.cosine == pytest.approx(1.0) and a.max_abs_error == 0 and a.top1 == 1.0
    with pytest.raises(EIEError, match="no nn.Linear"):
        et.prepare_finetune(nn.Sequential(nn.ReLU()))
    with pytest.raises(EIEError, match="at least one input"):
        et.distill(lin, [], progress=False)
    with pytest.raises(EIEError, match="not shared yet|prepare_finetune"):
        et.finalize(lin)


def test_prepare_defaults_to_the_pruned_stage_and_remembers_bits_and_init():
    torch.manual_seed(4)
    model, x = Tagger().eval(), torch.randn(3, 6, 6)
    ft = et.prepare_finetune(model, density=0.3, bits={"lstm": 3}, init="density")
    assert {n: s.shared for n, s in et.finetune_state(ft).items()} == dict.fromkeys(["emb", "lstm", "cell", "out"], False)
    steps(ft, x, opt=torch.optim.Adam(ft.parameters(), lr=1e-2))  # the weights themselves train
    small = et.finalize(ft, n_pe=4)
    assert small.lstm.eie_layers()[0].matrix.bits == 3 and small.emb.eie_layers()[0].matrix.bits == 4
    # the codebook is the density-initialised k-means over the trained, kept weights
    from eie_runtime.converters import quantize_matrix
    w = ft.emb.weight.detach().numpy()
    _, cb = quantize_matrix(w, density=1.0, bits=4, init="density", mask=w != 0)
    assert np.array_equal(small.emb.eie_layers()[0].matrix.codebook, cb)
    with torch.no_grad():
        assert rel_err(small(x), et.share_weights(ft)(x)) < 1e-5


@pytest.mark.parametrize("init", ["linear", "density", "quantile", "random"])
def test_compress_takes_the_codebook_init(init):
    torch.manual_seed(5)
    model, x = Tagger().eval(), torch.randn(2, 4, 6)
    a = et.finalize(et.prepare_finetune(model, density=0.3, init=init, seed=2), n_pe=8)
    b = et.compress(model, density=0.3, init=init, seed=2, n_pe=8)
    for la, lb in zip(a.lstm.eie_layers(), b.lstm.eie_layers()):
        assert np.array_equal(la.matrix.codebook, lb.matrix.codebook)
    assert torch.equal(a(x), b(x))
    with pytest.raises(EIEError, match="init must be one of"):
        et.compress(model, init="kmeans++")


def test_lstm_bias_dense_keeps_the_bias_exact_through_every_path():
    torch.manual_seed(6)
    model, x = Tagger().eval(), torch.randn(2, 4, 6)
    with torch.no_grad():
        model.lstm.bias_ih_l0.add_(3.0)  # a bias far from the weights' range
    b = et.compress(model, density=0.3, n_pe=8, lstm_bias="dense")
    cell = b.lstm.eie_layers()[0]
    exact = (model.lstm.bias_ih_l0 + model.lstm.bias_hh_l0).detach().numpy()
    assert np.allclose(cell.bias, exact) and not cell.dense()[:, -1].any()
    shared = et.compress(model, density=0.3, n_pe=8)
    assert shared.lstm.eie_layers()[0].bias is None
    ref = et.to_dense(b)  # the bias goes back into bias_ih
    assert torch.allclose(ref.lstm.bias_ih_l0, torch.from_numpy(exact))
    with torch.no_grad():
        assert rel_err(b(x), ref(x)) < 1e-5
    # fine-tuning: biases train freely, finalize keeps them as the cell layer's bias
    ft = et.prepare_finetune(model, density=0.3, lstm_bias="dense")
    assert not hasattr(ft.lstm.parametrizations, "bias_ih_l0")
    steps(ft, x, opt=torch.optim.Adam(ft.parameters(), lr=1e-2))
    et.set_density(ft, 0.2)
    shared_ft = et.share_weights(ft)
    steps(shared_ft, x, opt=torch.optim.Adam(shared_ft.parameters(), lr=1e-2))
    small = et.finalize(shared_ft, n_pe=4)
    got = small.lstm.eie_layers()[0].bias
    want = (shared_ft.lstm.bias_ih_l0 + shared_ft.lstm.bias_hh_l0).detach().numpy()
    assert np.allclose(got, want, atol=1e-6)
    with torch.no_grad():
        assert rel_err(small(x), shared_ft(x)) < 1e-5
    # untrained: prepare + finalize equals compress bit for bit in this mode too
    c = et.finalize(et.prepare_finetune(model, density=0.3, lstm_bias="dense"), n_pe=8)
    for la, lb in zip(c.lstm.eie_layers(), b.lstm.eie_layers()):
        assert np.array_equal(la.matrix.entries, lb.matrix.entries) and np.array_equal(la.bias, lb.bias)
    with pytest.raises(EIEError, match="lstm_bias must be one of"):
        et.compress(model, lstm_bias="exact")
    with pytest.raises(EIEError, match="stage must be one of"):
        et.prepare_finetune(model, stage="centroids")
