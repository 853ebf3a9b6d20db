"""Keep torch's intra-op thread count across calls that run EIE kernels."""

from __future__ import annotations

import functools

import torch


def keep_torch_threads(fn):
    """Run ``fn`` (any function calling kernels) and restore torch's intra-op thread count afterwards.

    Numba's OpenMP pool and torch share libgomp, and the pool's first parallel
    launch resets the process-wide thread count torch reads: a user who chose
    ``torch.set_num_threads(1)`` would silently get every thread back (and,
    on a loaded machine, torch ops many times slower).
    """
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        n = torch.get_num_threads()
        try:
            return fn(*args, **kwargs)
        finally:
            if torch.get_num_threads() != n:
                torch.set_num_threads(n)
    return wrapper
