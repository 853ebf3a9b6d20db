"""eie_runtime.torch: drop-in modules equal dense torch with the pruned-and-shared weights."""

import copy
import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs the [torch] extra")
from torch import nn  # noqa: E402

import eie_runtime as eie  # noqa: E402
import eie_runtime.torch as et  # noqa: E402
from eie_runtime.converters.compress import quantize_matrix  # noqa: E402
from eie_runtime.converters.lstm import LSTMDirectionWeights, lstm_matrix  # noqa: E402
from eie_runtime.errors import EIEError  # noqa: E402


def rel_err(a, b) -> float:
    a, b = torch.as_tensor(a).detach(), torch.as_tensor(b).detach()
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def shared(w, density, bits=4, seed=0):
    """The pruned-and-shared values of ``w``, computed independently of the front end."""
    codes, cb = quantize_matrix(np.asarray(w, dtype=np.float32), density=density, bits=bits, seed=seed)
    return torch.from_numpy(cb[codes])


# ------------------------------------------------------------------ Linear
@pytest.mark.parametrize("bias,n_pe", [(True, 1), (True, 3), (False, 64)])
def test_linear_equals_dense_with_shared_weights_on_1d_2d_3d(bias, n_pe):
    torch.manual_seed(1)
    lin = nn.Linear(37, 23, bias=bias)
    e = et.compress(lin, density=0.2, bits=4, n_pe=n_pe)
    assert isinstance(e, et.EIELinear) and (e.in_features, e.out_features) == (37, 23)
    ref = nn.Linear(37, 23, bias=bias)
    with torch.no_grad():
        ref.weight.copy_(shared(lin.weight.detach().numpy(), 0.2))
        if bias:
            ref.bias.copy_(lin.bias)
    for shape in [(37,), (5, 37), (2, 3, 37), (0, 37)]:
        x = torch.randn(*shape)
        y = e(x)
        assert y.shape == ref(x).shape == (*shape[:-1], 23) and y.dtype == torch.float32
        if x.numel():
            assert rel_err(y, ref(x)) < 1e-5
            assert rel_err(e.to_dense()(x), ref(x)) < 1e-6
    assert int((e.to_dense().weight != 0).sum()) == round(0.2 * 37 * 23)


def test_linear_one_sample_inputs_of_every_kind_give_the_batch_answer():
    """A (1, K) input takes a shortcut to the kernel: tensors it must not take (grad, strided, other
    dtypes or widths) still give the general path's answer or its error."""
    torch.manual_seed(2)
    e = et.compress(nn.Linear(40, 9), density=0.3, bits=4)
    batch = torch.randn(3, 40)
    want = e(batch)
    assert torch.equal(e(batch[1:2]), want[1:2])
    grad = batch[1:2].clone().requires_grad_(True)
    assert torch.equal(e(grad), want[1:2])
    wide = torch.randn(40, 3)
    assert torch.allclose(e(wide.T[1:2]), e(wide.T.contiguous())[1:2], atol=1e-6)  # non-contiguous row
    assert e(torch.randn(1, 40)[:, ::1]).shape == (1, 9)
    with pytest.raises(EIEError, match="float64.*float32"):
        e(torch.randn(1, 40, dtype=torch.float64))
    with pytest.raises(EIEError, match=r"expected \(\*, 40\)"):
        e(torch.randn(1, 41))
    e.calibrate(batch)
    e.mode = "fixed16"
    assert torch.equal(e(batch[1:2]), e(batch)[1:2])


# -------------------------------------------------------------------- LSTM
def reference_lstm(lstm: nn.LSTM, density, bits=4) -> nn.LSTM:
    """nn.LSTM loaded with the dequantized EIE matrices, built straight from torch's weights."""
    ref = copy.deepcopy(lstm)
    sfx = ["", "_reverse"][: 2 if lstm.bidirectional else 1]
    g = lambda n: getattr(lstm, n, None)
    with torch.no_grad():
        for l, s in itertools.product(range(lstm.num_layers), sfx):
            names = [f"{n}_l{l}{s}" for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")]
            w = LSTMDirectionWeights(*(g(n).detach().numpy() if g(n) is not None else None for n in names))
            deq = shared(lstm_matrix(w), density, bits)
            i_size, p_size = w.w_ih.shape[1], w.w_hh.shape[1]
            getattr(ref, names[0]).copy_(deq[:, :i_size])
            getattr(ref, names[1]).copy_(deq[:, i_size:i_size + p_size])
            if lstm.bias:
                getattr(ref, names[2]).copy_(deq[:, -1])
                getattr(ref, names[3]).zero_()
            if lstm.proj_size:
                getattr(ref, names[4]).copy_(shared(w.w_hr, density, bits))
    return ref


LSTM_CONFIGS = list(itertools.product([False, True], [1, 2], [False, True], [0, 3], [False, True]))


@pytest.mark.parametrize("batch_first,num_layers,bidirectional,proj_size,with_hx", LSTM_CONFIGS)
def test_lstm_equals_dense_with_shared_weights(batch_first, num_layers, bidirectional, proj_size, with_hx):
    torch.manual_seed(num_layers * 7 + proj_size)
    lstm = nn.LSTM(5, 7, num_layers=num_layers, batch_first=batch_first, bidirectional=bidirectional,
                   proj_size=proj_size)
    e = et.compress(lstm, density=0.3, bits=4, n_pe=4)
    assert isinstance(e, et.EIELSTM)
    ref = reference_lstm(lstm, 0.3)
    t, b = 6, 3
    x = torch.randn(b, t, 5) if batch_first else torch.randn(t, b, 5)
    d = 2 if bidirectional else 1
    hx = (torch.randn(num_layers * d, b, proj_size or 7), torch.randn(num_layers * d, b, 7)) if with_hx else None
    y, (h, c) = e(x, hx)
    y_ref, (h_ref, c_ref) = ref(x, hx)
    assert y.shape == y_ref.shape and h.shape == h_ref.shape and c.shape == c_ref.shape
    for a, r in ((y, y_ref), (h, h_ref), (c, c_ref)):
        assert rel_err(a, r) < 1e-5
    y_d, _ = e.to_dense()(x, hx)
    assert rel_err(y_d, y_ref) < 1e-6


def test_lstm_unbatched_and_packed_sequences():
    torch.manual_seed(3)
    lstm = nn.LSTM(4, 6, num_layers=2, bidirectional=True)
    e, ref = et.compress(lstm, density=0.5, n_pe=2), reference_lstm(lstm, 0.5)
    x = torch.randn(5, 4)
    hx = (torch.randn(4, 6), torch.randn(4, 6))
    for a, r in zip(e(x, hx)[1] + (e(x, hx)[0],), ref(x, hx)[1] + (ref(x, hx)[0],)):
        assert a.shape == r.shape and rel_err(a, r) < 1e-5
    seqs = [torch.randn(n, 4) for n in (3, 7, 1, 5)]
    for enforce in (False, True):
        s = sorted(seqs, key=len, reverse=True) if enforce else seqs
        pk = nn.utils.rnn.pack_sequence(s, enforce_sorted=enforce)
        h0 = (torch.randn(4, 4, 6), torch.randn(4, 4, 6))
        (y, (h, c)), (yr, (hr, cr)) = e(pk, h0), ref(pk, h0)
        assert isinstance(y, nn.utils.rnn.PackedSequence) and torch.equal(y.batch_sizes, yr.batch_sizes)
        assert rel_err(y.data, yr.data) < 1e-5 and rel_err(h, hr) < 1e-5 and rel_err(c, cr) < 1e-5


def test_lstm_cell_equals_dense():
    torch.manual_seed(4)
    cell = nn.LSTMCell(6, 5)
    e = et.compress(cell, density=0.4, n_pe=3)
    assert isinstance(e, et.EIELSTMCell)
    ref = nn.LSTMCell(6, 5)
    w = LSTMDirectionWeights(*(t.detach().numpy() for t in (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)))
    deq = shared(lstm_matrix(w), 0.4)
    with torch.no_grad():
        ref.weight_ih.copy_(deq[:, :6]); ref.weight_hh.copy_(deq[:, 6:11]); ref.bias_ih.copy_(deq[:, -1]); ref.bias_hh.zero_()
    x, hx = torch.randn(3, 6), (torch.randn(3, 5), torch.randn(3, 5))
    for a, r in zip(e(x, hx) + e(x) + e(x[0], (hx[0][0], hx[1][0])),
                    ref(x, hx) + ref(x) + ref(x[0], (hx[0][0], hx[1][0]))):
        assert a.shape == r.shape and rel_err(a, r) < 1e-5
    assert rel_err(e.to_dense()(x, hx)[0], ref(x, hx)[0]) < 1e-6


# ---------------------------------------------------------------- compress
class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(12, 12)
        self.gate = nn.Linear(12, 12)

    def forward(self, x):  # custom forward, module used twice
        return self.proj(torch.tanh(self.gate(x))) * torch.sigmoid(self.gate(x))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Sequential(nn.Linear(8, 12), nn.ReLU())
        self.blocks = nn.ModuleList([Block(), Block()])
        self.rnn = nn.LSTM(12, 6, batch_first=True)
        self.cell = nn.LSTMCell(6, 6)
        self.head = nn.Linear(6, 3)
        self.tied = self.head  # the same module under two names

    def forward(self, x):
        h = self.inp(x)
        for b in self.blocks:
            h = b(h)
        y, _ = self.rnn(h)
        hc = self.cell(y[:, -1])
        return self.head(hc[0]) + self.tied(hc[1])


def test_compress_leaves_model_untouched_and_matches_to_dense():
    torch.manual_seed(5)
    net = Net().eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(4, 5, 8)
    y0 = net(x)
    small = et.compress(net, density={"blocks.0.gate": 0.5, "head": None}, bits={"rnn": 3}, n_pe=4)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert torch.equal(net(x), y0)
    assert isinstance(net.head, nn.Linear) and isinstance(small.rnn, et.EIELSTM)
    assert isinstance(small.cell, et.EIELSTMCell) and isinstance(small.blocks[1].proj, et.EIELinear)
    assert isinstance(small.head, nn.Linear) and small.tied is small.head  # None: left dense
    s = et.summary(small)
    by_name = {r["module"]: r for r in s.rows}
    assert set(by_name) == {"inp.0", "blocks.0.proj", "blocks.0.gate", "blocks.1.proj", "blocks.1.gate", "rnn", "cell"}
    assert abs(by_name["blocks.0.gate"]["density"] - 0.5) < 0.01 and by_name["rnn"]["bits"] == 3
    assert by_name["inp.0"]["EIE bytes"] == small.inp[0].layer.matrix.nbytes + 4 * 12
    assert "blocks.0.gate" in str(s) and "total" in str(s)
    assert rel_err(small(x), et.to_dense(small)(x)) < 1e-5


def test_filter_fn_and_shared_modules():
    net = Net()
    small = et.compress(net, filter_fn=lambda m, name: name.startswith("head"), n_pe=2)
    assert isinstance(small.head, et.EIELinear) and small.tied is small.head
    assert isinstance(small.inp[0], nn.Linear) and isinstance(small.rnn, nn.LSTM)
    lstm2 = nn.LSTM(4, 5, num_layers=2)
    e = et.compress(lstm2, density={"": [0.5, 0.2]}, n_pe=1)
    dens = [l.matrix.nnz / (l.shape[0] * l.shape[1]) for l in e.eie_layers()]
    assert dens == pytest.approx([0.5, 0.2], abs=0.01)


def test_fixed16_mode_with_calibration():
    torch.manual_seed(6)
    net = Net().eval()
    x = torch.randn(16, 5, 8)
    f32 = et.compress(net, n_pe=8, density=0.5)
    f16 = et.compress(net, n_pe=8, density=0.5, mode="fixed16", calibration=[x[:8], (x[8:],)])
    assert {m.mode for m in et.eie_modules(f16).values()} == {"fixed16"}
    err = rel_err(f16(x), f32(x))
    assert 0 < err < 1e-2  # 16-bit arithmetic: close to, but not exactly, float32
    lin = f16.inp[0]
    xin = torch.relu(torch.randn(3, 8))
    assert torch.equal(lin(xin), torch.from_numpy(lin.layer.run_fixed16(xin.numpy())))
    with pytest.raises(EIEError, match="calibrat"):
        et.set_mode(et.compress(net, n_pe=8), "fixed16")


# ------------------------------------------------------------- persistence
def test_state_dict_round_trip(tmp_path):
    torch.manual_seed(7)
    net = Net().eval()
    x = torch.randn(2, 3, 8)
    a = et.compress(net, density=0.3, n_pe=4, mode="fixed16", calibration=[x])
    b = et.compress(net, density=0.6, n_pe=4)
    torch.save(a.state_dict(), tmp_path / "sd.pt")
    sd = torch.load(tmp_path / "sd.pt", weights_only=True)
    b.load_state_dict(sd)
    assert torch.equal(b(x), a(x)) and b.rnn.mode == "fixed16"
    bad = dict(sd)
    bad["inp.0.ptr"] = bad["inp.0.ptr"].flip(1)  # pointers no longer monotonic
    with pytest.raises(RuntimeError, match="ptr"):
        b.load_state_dict(bad)
    extra = dict(sd, **{"inp.0.surprise": torch.zeros(1)})
    with pytest.raises(RuntimeError, match="surprise"):
        b.load_state_dict(extra)


def test_save_load_model_files(tmp_path):
    torch.manual_seed(8)
    net = Net().eval()
    x = torch.randn(2, 3, 8)
    small = et.compress(net, density=0.3, n_pe=4)
    et.save(small, tmp_path / "net.eie")
    mods = et.load(tmp_path / "net.eie")
    assert set(mods) == set(et.eie_modules(small))
    back = et.load(tmp_path / "net.eie", into=net)
    assert torch.equal(back(x), small(x)) and back.tied is back.head
    # one module through the core's save/load (the torch-modules kind)
    eie.save(small.rnn, tmp_path / "rnn.eie")
    rnn = eie.load(tmp_path / "rnn.eie")
    h = torch.randn(2, 3, 12)
    assert isinstance(rnn, et.EIELSTM) and rnn.batch_first and torch.equal(rnn(h)[0], small.rnn(h)[0])
    with pytest.raises(EIEError, match="not in the given"):
        et.load(tmp_path / "net.eie", into=nn.Sequential(nn.Linear(2, 2)))


# --------------------------------------------------------------- bad input
def test_bad_modules_and_settings_are_refused_clearly():
    net = Net()
    with pytest.raises(EIEError, match="'nope'.*compressible modules"):
        et.compress(net, density={"nope": 0.1})
    with pytest.raises(EIEError, match="RNN.*supported: nn.Linear"):
        et.compress(nn.Sequential(nn.RNN(3, 4)), density={"0": 0.1})
    with pytest.raises(EIEError, match="float16.*float32"):
        et.compress(copy.deepcopy(net).half())
    with pytest.raises(EIEError, match="bfloat16.*float32"):
        et.compress(nn.LSTM(3, 4).to(torch.bfloat16))
    with pytest.raises(EIEError, match="meta.*CPU"):  # any non-CPU device, as CUDA would be
        et.compress(nn.Linear(3, 4, device="meta"))
    with pytest.raises(EIEError, match="density"):
        et.compress(net, density=1.5)
    with pytest.raises(EIEError, match="bits"):
        et.compress(net, bits=5)
    with pytest.raises(EIEError, match="calibration"):
        et.compress(net, mode="fixed16")
    e = et.compress(nn.Linear(4, 3))
    with pytest.raises(EIEError, match="float64.*float32"):
        e(torch.randn(2, 4, dtype=torch.float64))
    with pytest.raises(EIEError, match=r"expected \(\*, 4\)"):
        e(torch.randn(2, 5))
    lstm = et.compress(nn.LSTM(4, 3))
    with pytest.raises(EIEError, match="h0"):
        lstm(torch.randn(2, 1, 4), (torch.zeros(2, 1, 3), torch.zeros(1, 1, 3)))


def test_cells_refuse_bad_states_naming_them():
    lstm, gru = et.compress(nn.LSTMCell(4, 3)), et.compress(nn.GRUCell(4, 3))
    with pytest.raises(EIEError, match=r"tuple \(h, c\)"):
        lstm(torch.randn(2, 4), (torch.zeros(2, 3),))
    with pytest.raises(EIEError, match=r"LSTMCell c must have shape \(2, 3\), got \(1, 3\)"):
        lstm(torch.randn(2, 4), (torch.zeros(2, 3), torch.zeros(1, 3)))
    with pytest.raises(EIEError, match=r"GRUCell h must have shape \(2, 3\), got \(3,\)"):
        gru(torch.randn(2, 4), torch.zeros(3))
    with pytest.raises(EIEError, match=r"GRUCell input has shape \(5,\)"):
        gru(torch.randn(5))
    assert gru(torch.randn(4), torch.zeros(3)).shape == (3,) and lstm(torch.randn(4))[1].shape == (3,)


def test_lstm_without_bias_and_with_dropout_runs_as_in_eval_mode():
    torch.manual_seed(9)
    lstm = nn.LSTM(5, 6, num_layers=2, bias=False, dropout=0.3).eval()
    e, ref = et.compress(lstm, density=0.3, n_pe=2), reference_lstm(lstm, 0.3)
    x = torch.randn(4, 3, 5)
    assert rel_err(e(x)[0], ref(x)[0]) < 1e-5
    assert not e.to_dense().bias_ih_l0.any()  # no bias: its matrix column stays pruned
