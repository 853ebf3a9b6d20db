"""k-means weight sharing (Deep Compression, Han et al., ICLR 2016, Section 3).

The surviving weights of a layer are clustered into ``2**bits - 1`` shared
values; index 0 is reserved for 0.0 (pruned / padding). Deep Compression found
linear initialisation over [min, max] best, since it keeps the rare large
weights represented. The data are 1-D, so Lloyd's algorithm runs exactly on
the sorted values: each cluster is a contiguous interval between the midpoints
of neighbouring centroids, and its mean comes from prefix sums. One sort plus
O(clusters * log n) per iteration: 10M weights cluster in about a second.
"""

from __future__ import annotations

import numpy as np

from eie_runtime.errors import EIEInputError

INITS = ("linear", "density", "quantile", "random")
"""Codebook initialisations (Deep Compression, Section 3.1 and Figure 4):

- ``linear``: equally spaced over [min, max] of the kept weights; keeps the rare
  large weights represented (Deep Compression's choice when the network is
  retrained afterwards);
- ``density`` (alias ``quantile``): equally spaced quantiles of the weights (the
  CDF spaced evenly on its y-axis); centroids crowd where the weights are, so
  the mean squared error of the shared values is lower on matrices with a few
  outliers (measured in bench/quality.py and docs/torch.md);
- ``random``: ``2**bits - 1`` distinct kept weights drawn with ``seed``.
"""


def check_bits(bits) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 4:
        raise EIEInputError(f"bits must be an integer in 1..4, got {bits!r}")
    return int(bits)


def check_init(init) -> str:
    if init not in INITS:
        raise EIEInputError(f"init must be one of {INITS}, got {init!r}")
    return init


def _initial_centroids(sorted_vals: np.ndarray, n: int, init: str, seed: int) -> np.ndarray:
    lo, hi = float(sorted_vals[0]), float(sorted_vals[-1])
    if init == "linear":
        return np.linspace(lo, hi, n)
    if init in ("density", "quantile"):  # equally spaced quantiles of the weights (CDF-based)
        return np.quantile(sorted_vals, np.linspace(0.0, 1.0, n))
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(sorted_vals, size=n, replace=len(sorted_vals) < n)).astype(np.float64)


def kmeans_share(values: np.ndarray, bits: int = 4, *, init: str = "linear", seed: int = 0,
                 max_iter: int = 1000, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cluster 1-D ``values`` into ``2**bits - 1`` centroids.

    ``weights`` (same length, >= 0) makes it a weighted k-means: each value's
    squared error counts ``weights[i]`` times, and a centroid is its cluster's
    weighted mean. With a weight's input activation's mean square as its
    weight, this minimises the layer's expected output error (diagonal
    approximation) instead of the weights' own error.

    Returns
    -------
    codebook : float32 (2**bits,)
        ``codebook[0] == 0.0``; the centroids, ascending, in 1..2**bits-1.
    codes : uint8 (len(values),)
        Index into ``codebook`` (1..2**bits-1) of each value.
    """
    bits = check_bits(bits)
    check_init(init)
    vals = np.asarray(values, dtype=np.float64).ravel()
    if not np.isfinite(vals).all():
        raise EIEInputError("weights to share hold NaN or Inf")
    if weights is not None:
        wts = np.asarray(weights, dtype=np.float64).ravel()
        if wts.shape != vals.shape or not np.isfinite(wts).all() or (wts < 0).any():
            raise EIEInputError(f"k-means weights must be {vals.size} finite values >= 0, got shape {wts.shape}")
    n = (1 << bits) - 1
    codebook = np.zeros(1 << bits, dtype=np.float32)
    if vals.size == 0:
        return codebook, np.zeros(0, dtype=np.uint8)
    order = np.argsort(vals, kind="stable")
    s = vals[order]
    if weights is None or not wts.any():
        ws = np.ones_like(s)
    else:  # a value of weight 0 still gets a code; a tiny floor keeps every cluster's mean defined
        ws = wts[order] + 1e-12 * wts.max()
    prefix_w = np.concatenate(([0.0], np.cumsum(ws)))
    prefix = np.concatenate(([0.0], np.cumsum(ws * s)))
    cent = _initial_centroids(s, n, init, seed)
    cuts = None
    for _ in range(max_iter):
        new_cuts = np.searchsorted(s, (cent[:-1] + cent[1:]) / 2.0, side="right")
        if cuts is not None and np.array_equal(new_cuts, cuts):
            break  # same partition as last time: Lloyd's fixed point
        cuts = new_cuts
        lo = np.concatenate(([0], cuts))
        hi = np.concatenate((cuts, [s.size]))
        count = prefix_w[hi] - prefix_w[lo]
        cent = np.sort(np.where(hi > lo, (prefix[hi] - prefix[lo]) / np.where(hi > lo, count, 1.0), cent))
    codebook[1:] = cent.astype(np.float32)
    # assign in float32, against the stored centroids, so codes and codebook agree exactly
    c32 = codebook[1:].astype(np.float64)
    mids = (c32[:-1] + c32[1:]) / 2.0
    codes = (np.searchsorted(mids, vals, side="right") + 1).astype(np.uint8)
    return codebook, codes
