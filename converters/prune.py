"""Magnitude pruning to an exact density (Han et al., 2015; Deep Compression)."""

from __future__ import annotations

import numpy as np

from eie_runtime.errors import EIEInputError


def check_density(density) -> float:
    if isinstance(density, bool) or not isinstance(density, (int, float, np.floating, np.integer)):
        raise EIEInputError(f"density must be a number in (0, 1], got {density!r}")
    density = float(density)
    if not 0.0 < density <= 1.0:
        raise EIEInputError(f"density must be in (0, 1], got {density}")
    return density


def prune_mask(weight: np.ndarray, density: float) -> np.ndarray:
    """Boolean mask keeping exactly ``round(density * size)`` largest-magnitude weights.

    Ties at the threshold go to the lower flat (row-major) index, so the mask is
    a deterministic function of the weights.
    """
    density = check_density(density)
    w = np.asarray(weight)
    keep = int(round(density * w.size))
    mag = np.abs(w).ravel()
    mask = np.zeros(w.size, dtype=bool)
    if keep >= w.size:
        mask[:] = True
    elif keep > 0:
        threshold = np.partition(mag, w.size - keep)[w.size - keep]  # keep-th largest
        np.greater(mag, threshold, out=mask)
        need = keep - int(np.count_nonzero(mask))
        if need > 0:
            mask[np.flatnonzero(mag == threshold)[:need]] = True
    return mask.reshape(w.shape)


def magnitude_prune(weight: np.ndarray, density: float) -> np.ndarray:
    """A copy of ``weight`` with all but the largest-magnitude ``density`` fraction zeroed."""
    w = np.asarray(weight)
    return np.where(prune_mask(w, density), w, np.zeros((), dtype=w.dtype))
