"""Label-free distillation through the whole Deep Compression pipeline (eie_runtime.torch.distill)."""

import pytest

torch = pytest.importorskip("torch", reason="needs the [torch] extra")
from torch import nn  # noqa: E402

import eie_runtime.torch as et  # noqa: E402
from eie_runtime.errors import EIEError  # noqa: E402


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(12, 64)
        self.lstm = nn.LSTM(64, 32, batch_first=True)
        self.head = nn.Linear(32, 5)

    def forward(self, x):
        y, _ = self.lstm(torch.tanh(self.fc(x)))
        return self.head(y[:, -1])


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model = Net().eval()
    data = [torch.randn(16, 6, 12) for _ in range(6)]
    yield model, data, [torch.randn(32, 6, 12)]
    torch.set_num_threads(threads)


@pytest.mark.parametrize("layer_loss,lstm_bias", [(0.0, "shared"), (1.0, "dense")])
def test_distill_runs_every_stage_and_recovers_agreement(setup, layer_loss, lstm_bias):
    model, data, held = setup
    small, report = et.distill(model, data, density=0.2, bits=4, epochs=12, lr=3e-3, init="density",
                               lstm_bias=lstm_bias, layer_loss=layer_loss, eval_inputs=held, progress=False)
    print(report)
    assert [n for n, _ in report.stages] == ["compressed", "pruned", "shared", "centroids", "eie"]
    assert report.before is report["compressed"] and report.after is report["eie"]
    # retraining the surviving weights wins back what one-shot pruning + sharing lost
    assert report["pruned"].rel_error < 0.7 * report["compressed"].rel_error
    assert report["centroids"].rel_error <= report["shared"].rel_error + 1e-6
    assert report["eie"].cosine == pytest.approx(report["centroids"].cosine, abs=1e-5)  # finalize keeps the model
    assert set(report.seconds) == {"pruned", "centroids"} and len(report.losses) == 12 + 6
    layers = [l for m in et.eie_modules(small).values() for l in m.eie_layers()]
    for l in layers:
        assert l.matrix.bits == 4
        assert l.matrix.nnz <= 0.2 * l.shape[0] * l.shape[1] + 1
    cell = small.lstm.eie_layers()[0]
    assert (cell.bias is not None) == (lstm_bias == "dense")
    assert isinstance(model.lstm, nn.LSTM) and not hasattr(model.fc, "parametrizations")  # teacher untouched


def test_pruning_step_reaches_the_density_on_schedule(setup):
    model, _, _ = setup
    ft = et.prepare_finetune(model, density=1.0)
    step = et.pruning_step(ft, 0.25, ramp_steps=40, every=5)
    kept = []
    for s in range(60):
        step(s, 60)
        kept.append(float(ft.fc.parametrizations.weight[0].mask.mean()))
    assert kept[0] == 1.0 and kept[-1] == pytest.approx(0.25, abs=1e-3)
    assert all(a >= b for a, b in zip(kept, kept[1:]))  # masks only shrink
    assert kept[20] > 0.25 + 0.05  # still on the way at half the ramp


def test_distill_refuses_bad_settings(setup):
    model, data, _ = setup
    with pytest.raises(EIEError, match="one density"):
        et.distill(model, data, density={"fc": 0.1}, epochs=1, progress=False)
    with pytest.raises(EIEError, match="epochs must be"):
        et.distill(model, data, epochs=-1, progress=False)
    with pytest.raises(EIEError, match="init must be one of"):
        et.distill(model, data, init="best", progress=False)


def test_sensitivity_and_plan_meet_their_budgets(setup, tmp_path):
    model, data, held = setup
    sens = et.sensitivity(model, held, densities=(0.1, 0.3, 1.0), progress=False)
    assert sens.modules() == ["fc", "lstm", "head"] and len(sens.rows) == 9
    for m in sens.modules():
        curve = sens.curve(m)
        assert [d for d, _ in curve] == [0.1, 0.3, 1.0] and curve[0][1] < curve[-1][1]
    assert "d=0.3" in str(sens)
    sens.to_png(str(tmp_path / "sens.png"))
    assert (tmp_path / "sens.png").read_bytes()[:4] == b"\x89PNG"
    q = et.plan(model, held, target=0.92, sens=sens)
    assert q.predicted_cosine >= 0.92 and q.achieved.cosine > 0.88 and q.kept < 1.0
    s = et.plan(model, held, target=0.4, budget="size", sens=sens)
    assert s.kept <= 0.4 and set(s.density) == {"fc", "lstm", "head"}
    small = et.compress(model, density=s.density, filter_fn=lambda m, n: n in s.density)
    assert et.agreement(model, small, held).cosine == pytest.approx(s.achieved.cosine)
    with pytest.raises(EIEError, match="budget must be"):
        et.plan(model, held, target=0.5, budget="speed", sens=sens)
