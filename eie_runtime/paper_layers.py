"""The nine benchmark layers of the paper's Table III, generated at their densities.

The paper timed real pruned layers; these are uniformly random at the same
weight and activation densities (seeded). One real layer ships with the
package: AlexNet's FC8 after Deep Compression, with a real input
(``real_alex8``; provenance in ``eie_runtime/data/README.md``). Shared by the
benchmark harness (``bench/``), the simulator's CLI and the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import EIEInputError
from .format import InterleavedCSC
from .layer import EIELinear


REAL_ALEX8_FILE = Path(__file__).resolve().parent / "data" / "alexnet_fc8_real.npz"


@dataclass(frozen=True)
class PaperLayer:
    name: str
    m: int  # outputs (rows)
    k: int  # inputs (columns)
    weight_density: float
    act_density: float
    theoretical_us: float  # Table IV, EIE, 64 PEs
    actual_us: float
    description: str


# Table III (shapes, densities) and Table IV (EIE rows), Han et al. ISCA 2016.
PAPER_LAYERS = {
    layer.name: layer
    for layer in (
        PaperLayer("alex6", 4096, 9216, 0.09, 0.351, 28.1, 30.3, "AlexNet FC6"),
        PaperLayer("alex7", 4096, 4096, 0.09, 0.353, 11.7, 12.2, "AlexNet FC7"),
        PaperLayer("alex8", 1000, 4096, 0.25, 0.375, 8.9, 9.9, "AlexNet FC8"),
        PaperLayer("vgg6", 4096, 25088, 0.04, 0.183, 28.1, 34.4, "VGG-16 FC6"),
        PaperLayer("vgg7", 4096, 4096, 0.04, 0.375, 7.9, 8.7, "VGG-16 FC7"),
        PaperLayer("vgg8", 1000, 4096, 0.23, 0.411, 7.3, 8.4, "VGG-16 FC8"),
        PaperLayer("ntwe", 600, 4096, 0.10, 1.0, 5.2, 8.0, "NeuralTalk We"),
        PaperLayer("ntwd", 8791, 600, 0.11, 1.0, 13.0, 13.9, "NeuralTalk Wd"),
        PaperLayer("ntlstm", 2400, 1201, 0.10, 1.0, 6.5, 7.5, "NeuralTalk LSTM"),
    )
}


def paper_layer_spec(name: str) -> PaperLayer:
    try:
        return PAPER_LAYERS[name.lower()]
    except KeyError:
        raise EIEInputError(f"unknown paper layer {name!r}; choose from {', '.join(PAPER_LAYERS)}") from None


def random_codes(m: int, k: int, density: float, rng: np.random.Generator, bits: int = 4) -> np.ndarray:
    """(M, K) uint8 codes with exactly round(density*M*K) non-zeros at uniform random places."""
    n = m * k
    keep = int(round(density * n))
    codes = np.zeros(n, dtype=np.uint8)
    # a random permutation's first `keep` positions, without an O(n) int64 permutation:
    # rank uniform float32 keys (ties are measure-zero and harmless here)
    keys = rng.random(n, dtype=np.float32)
    if 0 < keep < n:
        thr = np.partition(keys, keep - 1)[keep - 1]
        sel = np.flatnonzero(keys <= thr)[:keep]
    else:
        sel = np.arange(keep)
    codes[sel] = rng.integers(1, 1 << bits, size=len(sel), dtype=np.uint8)
    return codes.reshape(m, k)


def shared_codebook(rng: np.random.Generator, bits: int = 4, scale: float = 0.05) -> np.ndarray:
    """A plausible weight-sharing codebook: sorted normal values, index 0 = 0.0."""
    cb = np.zeros(1 << bits, dtype=np.float32)
    cb[1:] = np.sort(rng.normal(0.0, scale, (1 << bits) - 1)).astype(np.float32)
    return cb


def random_activations(k: int, density: float, rng: np.random.Generator, batch: int | None = None) -> np.ndarray:
    """Non-negative (post-ReLU) inputs with exactly round(density*K) non-zeros per vector."""
    shape = (k,) if batch is None else (batch, k)
    x = np.zeros(shape, dtype=np.float32)
    nnz = int(round(density * k))
    rows = x.reshape(-1, k)
    for r in rows:
        idx = rng.choice(k, size=nnz, replace=False)
        r[idx] = np.abs(rng.normal(0.0, 1.0, nnz)).astype(np.float32) + 1e-3
    return x


def make_paper_layer(name: str, *, n_pe: int = 64, seed: int = 0, bits: int = 4,
                     activation: str | None = "relu") -> EIELinear:
    """The Table III layer ``name`` as an EIELinear, uniform random at its weight density."""
    spec = paper_layer_spec(name)
    rng = np.random.default_rng(seed)
    codes = random_codes(spec.m, spec.k, spec.weight_density, rng, bits)
    matrix = InterleavedCSC.from_codes(codes, shared_codebook(rng, bits), n_pe, name=spec.name)
    bias = rng.normal(0.0, 0.01, spec.m).astype(np.float32)
    return EIELinear(matrix, bias=bias, activation=activation, name=spec.name)


def make_paper_input(name: str, *, seed: int = 0, batch: int | None = None) -> np.ndarray:
    """An input for layer ``name`` at its Table III activation density."""
    spec = paper_layer_spec(name)
    return random_activations(spec.k, spec.act_density, np.random.default_rng(seed + 1), batch)


def real_alex8_arrays() -> dict[str, np.ndarray]:
    """The real Alex-8 layer as plain arrays: ``codes`` (1000, 4096) uint8 (0 = pruned), ``codebook`` (16,),
    ``bias`` (1000,) and ``activations`` (4096,) float32 (FC7's ReLU output for one image)."""
    with np.load(REAL_ALEX8_FILE, allow_pickle=False) as d:
        return {k: d[k] for k in ("codes", "codebook", "bias", "activations")}


def real_alex8(*, n_pe: int = 64, activation: str | None = "relu") -> tuple[EIELinear, np.ndarray]:
    """The real Alex-8 layer (Table IV: 9.9 us on 64 PEs) as an EIELinear, and its real input."""
    d = real_alex8_arrays()
    matrix = InterleavedCSC.from_codes(d["codes"], d["codebook"], n_pe, name="alex8-real")
    return EIELinear(matrix, bias=d["bias"], activation=activation, name="alex8-real"), d["activations"]
