"""Accuracy on scikit-learn's digits: Deep Compression fine-tuning and label-free distillation."""

import pytest

torch = pytest.importorskip("torch", reason="needs the [torch] extra")

import eie_runtime.torch as et  # noqa: E402
from eie_runtime import demo  # noqa: E402



@pytest.fixture(scope="module")
def digits():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models; also keeps clear of the kernels' thread pool
    torch.manual_seed(0)
    data = demo.load_digits_split(seed=0)
    x_tr, y_tr, _, _ = data
    dense = demo.train(demo.DigitsMLP(), x_tr, y_tr, epochs=40, progress=False)
    yield data, dense
    torch.set_num_threads(threads)


def test_mlp_at_density_01_and_4_bits_keeps_accuracy(digits):
    (x_tr, y_tr, x_te, y_te), dense = digits
    f32, f16 = demo.deep_compress(dense, x_tr, y_tr, density=0.1, bits=4, progress=False, calibration=[x_tr])
    acc_dense, acc32, acc16 = (demo.accuracy(m, x_te, y_te) for m in (dense, f32, f16))
    print(f"digits MLP: dense {acc_dense:.2f}%, EIE float32 {acc32:.2f}%, fixed16 {acc16:.2f}%")
    assert acc_dense > 95.0
    layers = [l for m in et.eie_modules(f32).values() for l in m.eie_layers()]
    assert len(layers) == 3 and all(l.matrix.bits == 4 for l in layers)
    assert sum(l.matrix.nnz for l in layers) <= 0.1 * sum(l.shape[0] * l.shape[1] for l in layers) + 3
    assert acc32 >= acc_dense - 1.0
    assert abs(acc16 - acc32) <= 0.5
    assert {m.mode for m in et.eie_modules(f16).values()} == {"fixed16"}


def test_distillation_without_labels_moves_closer_to_dense(digits):
    (x_tr, _, x_te, y_te), dense = digits
    unlabeled = list(torch.split(x_tr, 128))
    plain = et.compress(dense, density=0.1, bits=4)
    small, report = et.distill(dense, unlabeled, density=0.1, bits=4, epochs=30, lr=5e-3, eval_inputs=[x_te],
                               progress=False)
    print(report)
    assert report.after.top1 > report.before.top1 + 0.05
    assert report.after.cosine > report.before.cosine
    assert report.after.rel_error < report.before.rel_error
    # the returned EIE model is the one the report measured, and beats no fine-tuning on the labels too
    agree = et.agreement(dense, small, [x_te])
    assert agree.top1 == pytest.approx(report.after.top1, abs=1e-6)
    assert demo.accuracy(small, x_te, y_te) > demo.accuracy(plain, x_te, y_te)
