"""torchvision's AlexNet and VGG-16 compress end to end (the paper's Alex-6..8 and VGG-6..8 layers)."""

import gc

import pytest

torch = pytest.importorskip("torch", reason="needs the [torch] extra")
torchvision = pytest.importorskip("torchvision", reason="needs the [torch] extra")
from torch import nn  # noqa: E402

import eie_runtime.torch as et  # noqa: E402

# Table III weight densities; classifier indices are torchvision's
CASES = {
    "alexnet": {"classifier.1": 0.09, "classifier.4": 0.09, "classifier.6": 0.25},
    "vgg16": {"classifier.0": 0.04, "classifier.3": 0.04, "classifier.6": 0.23},
}
SHAPES = {"alexnet": [(4096, 9216), (4096, 4096), (1000, 4096)],
          "vgg16": [(4096, 25088), (4096, 4096), (1000, 4096)]}


@pytest.mark.slow
@pytest.mark.parametrize("arch", list(CASES))
def test_torchvision_classifier_compresses_end_to_end(arch):
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(weights=None).eval()
    fc_before = model.classifier[-1].weight[:3, :3].clone()
    small = et.compress(model, density=CASES[arch], filter_fn=lambda m, name: name.startswith("classifier"))
    assert torch.equal(model.classifier[-1].weight[:3, :3], fc_before) and isinstance(model.classifier[-1], nn.Linear)
    fcs = [m for m in small.classifier if isinstance(m, et.EIELinear)]
    assert [(m.out_features, m.in_features) for m in fcs] == SHAPES[arch]
    for m, d in zip(fcs, CASES[arch].values()):
        assert m.layer.matrix.nnz == round(d * m.in_features * m.out_features)
    assert not any(isinstance(m, nn.Linear) for m in small.modules())
    assert sum(isinstance(m, nn.Conv2d) for m in small.features) == sum(isinstance(m, nn.Conv2d) for m in model.features)
    x = torch.randn(1, 3, 64, 64)  # AdaptiveAvgPool takes any size >= 63 x 63 for AlexNet
    with torch.no_grad():
        y = small(x)
        del model
        gc.collect()
        y_ref = et.to_dense(small)(x)
    assert y.shape == (1, 1000)
    assert float((y - y_ref).abs().max() / y_ref.abs().max()) < 1e-5
