"""Layers and inputs drawn by Hypothesis as arrays (hypothesis.extra.numpy), so a failing example shrinks to a
small matrix and vector rather than to a seed; and the float32 rounding bound results are checked against."""

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from eie_runtime import EIELinear, InterleavedCSC


def floats32(bound):
    """Finite float32 values in [-bound, bound]; no subnormals (a kernel may flush them, the reference does not)."""
    return st.floats(-bound, bound, width=32, allow_subnormal=False)


def _zero_or(values):
    # a fair coin between a zero background and a non-zero one (one_of would favour its first branch)
    nonzero = values.map(lambda v: v if v != 0 else 1)  # a map, not a filter: nothing to retry
    return st.booleans().flatmap(lambda dense: nonzero if dense else st.just(0))


def _thinned(arrays):
    # keep every p-th entry (row-major) and zero the rest: the densities between a sparse and a dense background
    def keep_every(case):
        a, p = case
        a = a.copy()
        a.reshape(-1)[np.arange(a.size) % p != 0] = 0
        return a
    return st.tuples(arrays, st.sampled_from([1, 2, 3, 7])).map(keep_every)


def codes(shape, bits=4):
    """uint8 codebook indices below 2**bits.

    Hypothesis draws about sqrt(size) entries one by one and fills the rest with one background value: a zero
    background gives a sparse matrix with long zero runs, a non-zero one a dense matrix, and keeping only every
    p-th entry the densities between. Shrinking goes to a zero background and p = 1.
    """
    top = (1 << bits) - 1
    return _thinned(hnp.arrays(np.uint8, shape, elements=st.integers(0, top), fill=_zero_or(st.integers(0, top))))


def codebooks(bits=4, bound=2.0):
    """2**bits float32 shared weights, index 0 pinned to 0.0 as EIE reserves it."""
    return hnp.arrays(np.float32, 1 << bits, elements=floats32(bound), fill=st.nothing()).map(
        lambda cb: np.concatenate([np.zeros(1, np.float32), cb[1:]]))


def activations(shape, bound=4.0):
    """float32 activations, sparse (as after ReLU) to dense as ``codes`` draws them."""
    return _thinned(hnp.arrays(np.float32, shape, elements=floats32(bound), fill=_zero_or(floats32(bound))))


def int16_activations(shape):
    """int16 activations at one of three scales: small, mid, and the whole int16 range (where sums clamp)."""
    def at(top):
        values = st.integers(-top - (top == 32767), top)
        return _thinned(hnp.arrays(np.int16, shape, elements=values, fill=_zero_or(values)))
    return st.sampled_from([15, 1000, 32767]).flatmap(at)


@st.composite
def layers(draw, m, k, n_pe, relu, bias=True, bits=4):
    """(EIELinear, codes, codebook, bias): a layer built from drawn codes, codebook and bias."""
    c = draw(codes((m, k), bits))
    cb = draw(codebooks(bits))
    b = draw(hnp.arrays(np.float32, m, elements=floats32(1.0))) if bias else None
    layer = EIELinear(InterleavedCSC.from_codes(c, cb, n_pe), bias=b, activation="relu" if relu else None)
    return layer, c, cb, b


def assert_float32_close(y, dense, x, bias=None, relu=False):
    """``y`` is act(x W^T + b) up to float32 rounding in any summation order.

    Each output may be off by (k + 4) * 2**-24 * (|x| |W|^T + |b|) (the forward error of a float32 sum of
    k + 1 rounded terms, Higham eq. 3.5) plus the half ulp the float64 reference loses rounding to float32;
    ReLU cannot widen that. Arithmetic mistakes show; rounding, however adversarial the drawn values, does not.
    """
    x = np.asarray(x, dtype=np.float32).astype(np.float64)
    w = np.asarray(dense, dtype=np.float64)
    exact = x @ w.T + (0.0 if bias is None else np.asarray(bias, np.float64))
    if relu:
        exact = np.maximum(exact, 0.0)
    magnitude = np.abs(x) @ np.abs(w).T + (0.0 if bias is None else np.abs(np.asarray(bias, np.float64)))
    tol = (w.shape[1] + 4) * 2.0 ** -24 * magnitude + 2.0 ** -24 * np.abs(exact) + 1e-30
    y = np.asarray(y)
    assert y.dtype == np.float32 and y.shape == exact.shape, (y.dtype, y.shape, exact.shape)
    err = np.abs(y.astype(np.float64) - exact)
    bad = ~(err <= tol)  # NaN counts as bad
    assert not bad.any(), f"{int(bad.sum())} outputs off: at {np.argwhere(bad)[:5].tolist()} got " \
                          f"{y[bad][:5].tolist()}, want {exact[bad][:5].tolist()} +- {tol[bad][:5].tolist()}"
