"""``make demo``: Deep Compression + EIE on scikit-learn's digits, end to end.

Trains a small MLP and a small LSTM classifier (each 8 x 8 image read as 8
time steps of 8 pixels), compresses both to density 0.1 with 4-bit shared
weights, wins the accuracy back by fine-tuning (pruned retraining, then
centroid retraining), and prints per model: dense accuracy, compressed
accuracy (float32 and bit-exact fixed16), weights kept, bytes, and latency per
sample. Then it shows label-free recovery: distillation from the dense MLP.

Run ``python -m eie_runtime.demo`` (about a minute on two cores).
"""

from __future__ import annotations

import argparse
import copy
import os
import time

# Numba's and torch's OpenMP pools share the two cores here; spinning idle
# threads of one slow the other down by up to 100x. Passive waiting avoids
# that; it only takes effect if set before torch loads libgomp.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numba  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn

from . import torch as et
from .tables import format_table

DENSITY = 0.1
BITS = 4


# ----------------------------------------------------------------- data
def load_digits_split(seed: int = 0, test_fraction: float = 0.2):
    """Digits as float32 tensors in [0, 1]: ``(x_train, y_train, x_test, y_test)``, stratified split."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:  # pragma: no cover - a setup problem, said plainly
        raise SystemExit("the demo needs scikit-learn (its bundled digits data): pip install scikit-learn") from None
    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):  # stratified: the same share of every digit in the test set
        idx = rng.permutation(np.flatnonzero(y == c))
        test[idx[:int(round(test_fraction * len(idx)))]] = True
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))
    return t(x[~test]), t(y[~test]), t(x[test]), t(y[test])


class DigitsMLP(nn.Module):
    """64 -> 512 -> 512 -> 10."""

    def __init__(self, hidden: int = 512):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 10))

    def forward(self, x):
        return self.net(x)


class DigitsLSTM(nn.Module):
    """Each image as 8 time steps of 8 pixels; LSTM(8, hidden) then a Linear on the last hidden state."""

    def __init__(self, hidden: int = 128):
        super().__init__()
        self.lstm = nn.LSTM(8, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 10)

    def forward(self, x):
        y, _ = self.lstm(x.reshape(-1, 8, 8))
        return self.head(y[:, -1])


# ------------------------------------------------------------- training
def train(model: nn.Module, x, y, *, epochs: int, lr: float = 1e-3, batch: int = 64, seed: int = 0,
          desc: str = "train", progress: bool = True, on_step=None, cosine: bool = False) -> nn.Module:
    """Cross-entropy training with Adam (in place), optionally with a cosine learning-rate decay.

    ``on_step(step, total)`` runs before each step.
    """
    gen = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    n = len(y)
    steps_per_epoch = -(-n // batch)
    total = epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total) if cosine else None
    bar = range(epochs)
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(bar, desc=desc, unit="epoch", leave=False)
    model.train()
    step = 0
    for _ in bar:
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, batch):
            if on_step is not None:
                on_step(step, total)
            idx = order[i:i + batch]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            step += 1
    model.eval()
    return model


def accuracy(model: nn.Module, x, y) -> float:
    """Top-1 accuracy in percent."""
    with torch.no_grad():
        return 100.0 * float((model(x).argmax(-1) == y).float().mean())


def latency_us(models: dict, x, rounds: int = 40, calls: int = 25) -> dict:
    """Microseconds per single-sample call of each model: the median over rounds of ``calls`` consecutive
    calls each, the models interleaved round by round so that load hits all alike."""
    times = {k: [] for k in models}
    threads = numba.get_num_threads()
    numba.set_num_threads(1)  # as torch (see run): for layers this small a second thread costs more than it gives
    try:
        return _interleaved_us(models, x, rounds, calls, times)
    finally:
        numba.set_num_threads(threads)


def _interleaved_us(models, x, rounds, calls, times) -> dict:
    with torch.no_grad():
        for m in models.values():  # warm up (Numba compiles on first use)
            m(x[:1])
        for r in range(rounds):
            samples = [x[(r * calls + i) % len(x):][:1] for i in range(calls)]
            for k, m in models.items():
                t0 = time.perf_counter()
                for s in samples:
                    m(s)
                times[k].append((time.perf_counter() - t0) / calls)
    return {k: 1e6 * float(np.median(v)) for k, v in times.items()}


def deep_compress(model: nn.Module, x, y, *, density=DENSITY, bits=BITS, prune_epochs: int = 60,
                  share_epochs: int = 30, lr: float = 1e-3, n_pe="auto", calibration=None,
                  progress: bool = True, seed: int = 0):
    """The Deep Compression recipe with labels, on a copy of ``model``.

    1. Gradual magnitude pruning (cubic schedule, every 10 steps) to ``density``
       over the first 30% of ``prune_epochs``, masked retraining for the rest;
    2. k-means sharing into ``2**bits - 1`` centroids, then centroid retraining.
    Both with Adam and a cosine learning-rate decay. Returns
    ``(eie_float32_model, eie_fixed16_model)`` (fixed16 calibrated on ``calibration``, default ``[x]``).
    """
    ft = et.prepare_finetune(model, density=1.0, bits=None, seed=seed)

    def schedule(step, total):
        if step % 10 == 0:
            et.set_density(ft, et.density_schedule(step, int(0.3 * total), density))

    train(ft, x, y, epochs=prune_epochs, lr=lr, desc="prune + retrain", progress=progress, on_step=schedule,
          seed=seed, cosine=True)
    et.set_density(ft, density)
    shared = et.share_weights(ft, bits=bits, seed=seed)
    train(shared, x, y, epochs=share_epochs, lr=lr / 2, desc="share + retrain centroids", progress=progress,
          seed=seed, cosine=True)
    f32 = et.finalize(shared, n_pe=n_pe, calibration=calibration if calibration is not None else [x])
    f16 = et.set_mode(copy.deepcopy(f32), "fixed16")
    return f32, f16


def _report(name: str, dense: nn.Module, f32: nn.Module, f16: nn.Module, no_ft: nn.Module, data) -> dict:
    x_tr, y_tr, x_te, y_te = data
    s = et.summary(f32)
    lat = latency_us({"dense": dense, "eie": f32}, x_te)
    return {
        "model": name,
        "dense acc %": f"{accuracy(dense, x_te, y_te):.2f}",
        "EIE no fine-tune %": f"{accuracy(no_ft, x_te, y_te):.2f}",
        "EIE float32 %": f"{accuracy(f32, x_te, y_te):.2f}",
        "EIE fixed16 %": f"{accuracy(f16, x_te, y_te):.2f}",
        "weights kept": f"{sum(l.matrix.nnz for m in et.eie_modules(f32).values() for l in m.eie_layers())}"
                        f"/{sum(l.shape[0] * l.shape[1] for m in et.eie_modules(f32).values() for l in m.eie_layers())}",
        "bytes dense": s.dense_bytes,
        "bytes EIE": s.compressed_bytes,
        "us/sample dense": f"{lat['dense']:.0f}",
        "us/sample EIE": f"{lat['eie']:.0f}",
    }


def run(*, seed: int = 0, progress: bool = True, quick: bool = False) -> dict:
    """The whole demo; returns the printed rows (for tests)."""
    torch.manual_seed(seed)
    torch.set_num_threads(1)  # tiny models: one thread is fastest and immune to the other pool
    data = load_digits_split(seed)
    x_tr, y_tr, x_te, y_te = data
    scale = 0.3 if quick else 1.0
    ep = lambda e: max(1, int(e * scale))
    rows, extra = [], {}
    # (name, model, dense epochs, pruning epochs, centroid epochs, learning rate)
    recipes = (("MLP 64-512-512-10", DigitsMLP, 40, 60, 30, 1e-3),
               ("LSTM(8,128)+Linear", DigitsLSTM, 80, 120, 60, 3e-3))
    for name, make, dense_epochs, prune_epochs, share_epochs, lr in recipes:
        torch.manual_seed(seed)
        dense = train(make(), x_tr, y_tr, epochs=ep(dense_epochs), lr=lr, desc=f"{name}: dense", progress=progress,
                      seed=seed)
        no_ft = et.compress(dense, density=DENSITY, bits=BITS, seed=seed)
        f32, f16 = deep_compress(dense, x_tr, y_tr, prune_epochs=ep(prune_epochs), share_epochs=ep(share_epochs),
                                 lr=lr, progress=progress, calibration=[x_tr], seed=seed)
        rows.append(_report(name, dense, f32, f16, no_ft, data))
        extra[name] = (dense, f32)
    # label-free: distil the dense MLP into its compressed copy from unlabeled training images
    dense = extra["MLP 64-512-512-10"][0]
    batches = list(torch.split(x_tr, 128))
    dist, rep = et.distill(dense, batches, density=DENSITY, bits=BITS, epochs=ep(100), lr=5e-3, eval_inputs=[x_te],
                           seed=seed, progress=progress)
    plain = et.compress(dense, density=DENSITY, bits=BITS, seed=seed)  # what one call gives without training
    distill_rows = [{"MLP, no labels": label, "test acc %": f"{accuracy(m, x_te, y_te):.2f}",
                     "agreement with dense %": f"{100 * a.top1:.2f}", "output cosine": f"{a.cosine:.4f}",
                     "output rel. error": f"{a.rel_error:.3f}"}
                    for label, m, a in (("compressed, no training", plain, et.agreement(dense, plain, [x_te])),
                                        ("after distillation", dist, rep.after))]
    return {"models": rows, "distill": distill_rows, "summaries": {k: et.summary(v[1]) for k, v in extra.items()}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m eie_runtime.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="fewer epochs (a smoke run)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    out = run(seed=args.seed, quick=args.quick)
    print(f"\nDigits (sklearn), density {DENSITY}, {BITS}-bit shared weights, PEs per layer by its size (n_pe='auto'). "
          "Latency: one sample per call, median of 40 rounds of 25 calls, dense torch vs EIE float32.\n")
    print(format_table(out["models"]))
    for name, s in out["summaries"].items():
        print(f"\n{name}, compressed modules:\n{s}")
    print("\nDistillation without labels (MLP, same density/bits, trained on unlabeled images only):\n")
    print(format_table(out["distill"]))
    print(f"\ndone in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
