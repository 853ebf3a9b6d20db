"""nn.GRU / nn.GRUCell in the torch front end: drop-in modules equal torch on the pruned-and-shared
weights, compress() finds them, fixed16 calibration, state dicts and .eie files, the simulator's trace."""

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import eie_runtime.torch as et  # noqa: E402
from eie_runtime.errors import EIEInputError  # noqa: E402
from eie_runtime.hardware.trace import trace_model  # noqa: E402


@pytest.mark.parametrize("kw", [dict(num_layers=2, bidirectional=True), dict(batch_first=True)])
def test_eiegru_equals_torch_on_its_weights(kw):
    torch.manual_seed(0)
    gru = nn.GRU(6, 10, **kw).eval()
    e = et.EIEGRU.from_gru(gru, density=0.3, n_pe=8)
    dense = e.to_dense().eval()
    x = torch.randn(3, 7, 6) if kw.get("batch_first") else torch.randn(7, 3, 6)
    nd = 2 if kw.get("bidirectional") else 1
    h0 = torch.randn(kw.get("num_layers", 1) * nd, 3, 10)
    with torch.no_grad():
        want, want_h = dense(x, h0)
    got, got_h = e(x, h0)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    torch.testing.assert_close(got_h, want_h, atol=1e-5, rtol=0)
    # unbatched
    with torch.no_grad():
        want1, _ = dense(x[0] if kw.get("batch_first") else x[:, 0])
    torch.testing.assert_close(e(x[0] if kw.get("batch_first") else x[:, 0])[0], want1, atol=1e-5, rtol=0)


def test_eiegru_packed_sequences():
    torch.manual_seed(1)
    gru = nn.GRU(4, 5, bidirectional=True)
    e = et.EIEGRU.from_gru(gru, density=0.5, n_pe=4)
    dense = e.to_dense()
    x = torch.randn(6, 3, 4)
    packed = nn.utils.rnn.pack_padded_sequence(x, torch.tensor([6, 2, 4]), enforce_sorted=False)
    with torch.no_grad():
        want, want_h = dense(packed)
    got, got_h = e(packed)
    torch.testing.assert_close(got.data, want.data, atol=1e-5, rtol=0)
    torch.testing.assert_close(got_h, want_h, atol=1e-5, rtol=0)


def test_gru_cell_and_compress_of_a_model(tmp_path):
    torch.manual_seed(2)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = nn.GRU(5, 8)
            self.cell = nn.GRUCell(8, 8)
            self.fc = nn.Linear(8, 3)

        def forward(self, x):
            y, h = self.gru(x)
            return self.fc(self.cell(y[-1], h[0]))

    net = Net().eval()
    small = et.compress(net, density=0.4, n_pe=4)
    assert isinstance(small.gru, et.EIEGRU) and isinstance(small.cell, et.EIEGRUCell)
    x = torch.randn(9, 2, 5)
    dense = et.to_dense(small).eval()
    with torch.no_grad():
        torch.testing.assert_close(small(x), dense(x), atol=1e-5, rtol=0)
    # fixed16 after calibration tracks float32
    fx = et.compress(net, density=0.4, n_pe=4, mode="fixed16", calibration=[x])
    y16, y32 = fx(x), small(x)
    assert 0 < (y16 - y32).abs().max() < 0.05 * y32.abs().max()
    # files and state dicts
    et.save(small, tmp_path / "m.eie")
    back = et.load(tmp_path / "m.eie", into=Net())
    with torch.no_grad():
        torch.testing.assert_close(back(x), small(x), atol=0, rtol=0)
    other = et.compress(Net(), density=0.4, n_pe=4)
    other.load_state_dict(small.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(other(x), small(x), atol=0, rtol=0)


def test_gru_traces_every_layer_call():
    torch.manual_seed(3)
    e = et.EIEGRU.from_gru(nn.GRU(3, 4, num_layers=2), density=0.5, n_pe=2)
    calls = trace_model(e, torch.randn(5, 1, 3))
    assert len(calls) == 5 * 2 * 3  # steps x layers x (input, r/z, candidate)
    assert {layer.name for layer, _ in calls} == {m.name for m in e.core.layers()}


def test_gru_refusals():
    with pytest.raises(EIEInputError, match="plain RNNs are not supported"):
        et.compress(nn.RNN(3, 4), density={"": 0.5})
    with pytest.raises(EIEInputError, match="fine-tuning nn.GRU"):
        et.prepare_finetune(nn.Sequential(nn.GRU(3, 4)))
    e = et.EIEGRUCell.from_gru_cell(nn.GRUCell(3, 4), density=0.5, n_pe=2)
    with pytest.raises(EIEInputError, match="GRUCell input"):
        e(torch.zeros(2, 5))
    with pytest.raises(EIEInputError, match="GRUCell h"):
        e(torch.zeros(2, 3), torch.zeros(3, 4))
