"""Numba kernels: plain functions over arrays, one concern each.

Floor 1 of the import ladder (docs/design.md): numpy and numba only. The
Python-level wrappers in ``eie_runtime`` validate and allocate; nothing here
checks bounds, so nothing here may be called with unvalidated arrays.
"""

import contextlib
import importlib
import threading

import numba


def _choose_threading_layer() -> bool:
    """Keep Numba off its ``workqueue`` layer, which aborts the whole process
    when two threads launch parallel kernels at once. Returns whether parallel
    kernels may be called from several threads concurrently."""
    if numba.config.THREADING_LAYER != "default":  # the user chose (NUMBA_THREADING_LAYER)
        return numba.config.THREADING_LAYER in ("tbb", "omp", "safe", "threadsafe")
    for pool in ("tbbpool", "omppool"):
        try:
            importlib.import_module(f"numba.np.ufunc.{pool}")
        except ImportError:
            continue
        numba.config.THREADING_LAYER = "threadsafe"  # tbb, else omp; takes effect at first launch
        return True
    return False


#: True when Numba runs on a thread-safe layer (tbb or omp); else callers serialize on KERNEL_LOCK.
THREAD_SAFE = _choose_threading_layer()
KERNEL_LOCK = threading.RLock()
_NO_LOCK = contextlib.nullcontext()  # reusable; one object instead of one per call (a small layer's call is ~5 us)


def kernel_section():
    """Context for a parallel kernel call: a no-op on tbb/omp, a process-wide lock on workqueue."""
    return _NO_LOCK if THREAD_SAFE else KERNEL_LOCK
