"""The fixed16 arithmetic's two steps (docs/design.md), defined once for every kernel and the cycle model."""

import numpy as np

from .jit import njit


@njit(cache=True, inline="always")
def round_shift(p, s):
    """The product shift: arithmetic right shift by ``s`` with round-half-up."""
    if s == 0:
        return p
    return (p + (np.int64(1) << (s - 1))) >> s


@njit(cache=True, inline="always")
def saturate(v):
    """Clamp to int16's range, as every accumulator add does."""
    if v > 32767:
        return 32767
    if v < -32768:
        return -32768
    return v
