"""16-bit fixed-point arithmetic (paper Section IV "Arithmetic Unit", VI-C; docs/design.md).

The contract, shared by the kernel, the simulator and the tests' reference:

- activations are int16 with ``in_frac`` fractional bits; outputs int16 with
  ``out_frac``; the codebook is expanded to int16 with ``w_frac``;
- each product ``int32(w) * int32(a)`` is shifted right by
  ``s = w_frac + in_frac - out_frac`` with round-half-up
  (``(p + (1 << (s - 1))) >> s``, arithmetic shift; none when ``s == 0``);
- accumulators start at the bias rounded into ``out_frac`` and saturated;
  every add saturates to [-32768, 32767], in broadcast order (ascending column);
- ReLU on write-back.

Float values become int16 by round-half-up (``floor(x * 2**frac + 0.5)``) and
saturation, the same rounding the shifter uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import EIEInputError

INT16_MIN, INT16_MAX = -32768, 32767
FRAC_RANGE = (-16, 30)  # fractional bits a parameter may take


@dataclass(frozen=True)
class FixedPointParams:
    """Fractional bits of one layer's activations in, weights, and outputs."""

    in_frac: int
    w_frac: int
    out_frac: int

    def __post_init__(self):
        for field in ("in_frac", "w_frac", "out_frac"):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise EIEInputError(f"fixed-point {field} must be an int, got {v!r}")
            if not FRAC_RANGE[0] <= v <= FRAC_RANGE[1]:
                raise EIEInputError(f"fixed-point {field}={v} is outside {FRAC_RANGE}")
        if self.shift < 0:
            raise EIEInputError(
                f"fixed-point shift w_frac + in_frac - out_frac = {self.shift} must be >= 0 "
                f"(in_frac={self.in_frac}, w_frac={self.w_frac}, out_frac={self.out_frac})"
            )

    @property
    def shift(self) -> int:
        return self.w_frac + self.in_frac - self.out_frac

    def to_dict(self) -> dict:
        return {"in_frac": int(self.in_frac), "w_frac": int(self.w_frac), "out_frac": int(self.out_frac)}


def to_fixed(x, frac: int) -> np.ndarray:
    """Round-half-up and saturate float values into int16 with ``frac`` fractional bits."""
    x = np.asarray(x, dtype=np.float64)
    q = np.floor(x * (2.0 ** frac) + 0.5)
    return np.clip(q, INT16_MIN, INT16_MAX).astype(np.int16)


def from_fixed(q, frac: int) -> np.ndarray:
    """int16 values with ``frac`` fractional bits back to float32."""
    return (np.asarray(q, dtype=np.float64) * (2.0 ** -frac)).astype(np.float32)


def frac_bits_for(max_abs: float, headroom: float = 1.0) -> int:
    """Most fractional bits that keep ``max_abs * headroom`` inside int16."""
    m = float(max_abs) * headroom
    if not np.isfinite(m):
        raise EIEInputError(f"cannot choose fixed-point bits for a non-finite range ({max_abs})")
    if m <= 0.0:
        return FRAC_RANGE[1] // 2  # nothing to represent: any choice is exact
    frac = int(np.floor(np.log2(INT16_MAX / m)))
    return int(np.clip(frac, FRAC_RANGE[0], FRAC_RANGE[1]))
