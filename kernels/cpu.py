"""Which SIMD kernels the CPU that Numba compiles for can run.

The AVX-512 kernels call x86 intrinsics by name; LLVM refuses to compile one
for a CPU without its feature ("cannot select"), so each such kernel module
names the features its intrinsics need and is used only where all are
present. Numba compiles for the host unless ``NUMBA_CPU_NAME`` /
``NUMBA_CPU_FEATURES`` say otherwise; its feature rule is followed here
(``jit.compile_target``), so ``NUMBA_CPU_FEATURES=""`` selects the portable
kernels everywhere.
"""

from __future__ import annotations

import functools

from .jit import compile_target


@functools.lru_cache(maxsize=None)
def compile_features() -> frozenset[str]:
    """The features enabled for the CPU Numba compiles for (``+name`` entries of its feature string)."""
    return frozenset(f[1:] for f in compile_target()[1].split(",") if f.startswith("+"))


def supports(*features: str) -> bool:
    """Whether Numba compiles for a CPU with every one of ``features`` (LLVM names, e.g. ``avx512bw``)."""
    try:
        have = compile_features()
    except Exception:  # noqa: BLE001 - no feature list: take the portable kernels
        return False
    return all(f in have for f in features)
