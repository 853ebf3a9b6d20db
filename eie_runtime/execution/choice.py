"""Which strategy runs a call: the thresholds, and the crossovers the kernel costs give.

- float32, one vector: the sliced ELL where the layer keeps it (it beats the
  row gather on every input: ``cost() < RowGather.cost()``) and the input
  is finite with at least ``threshold`` non-zeros, the lesser of its
  crossover with the column scatter and the gather's ``GATHER_DENSITY``;
  else the row gather from ``GATHER_DENSITY`` of the activations non-zero;
  else the column scatter.
- float32 batches: up to ``SINGLE_VECTOR_MAX_BATCH`` vectors one at a time;
  up to ``SLICED_ELL_MAX_BATCH`` finite vectors the sliced ELL walked for
  8 at once, where kept; else the panels.
- fixed16, one vector (exact on every path): the sliced ELL (shift <= 29)
  above its crossovers with the scatter, one for terms that may not fit
  int16 and one for terms that do, each moved towards float32's threshold
  by up to a factor ``1 + LAYOUT_SHARING_MARGIN``; else the gather (shift
  <= 30) from ``GATHER_DENSITY``; else the scatter (its clamps vector or
  scalar, whichever costs less).
- fixed16 batches: past ``FIXED16_SINGLE_MAX_BATCH`` vectors the panels
  (AVX512BW hosts, shift <= 29); else, past
  ``FIXED16_CSR_SINGLE_MAX_BATCH``, the CSR times the batch block (the row
  gather's, shift <= 30); else one vector at a time.

Every path computes the same layer; fixed16 ones bit for bit, float32 ones
up to the rounding of reassociated sums (the table scatter adds each row's
terms in column order, as the hardware does).

Layers with at most ``SERIAL_MAX_NNZ`` non-zeros run every call on one
thread (``serial``): for them a parallel launch costs more than the work.
"""

from __future__ import annotations

import threading
from typing import NamedTuple

import numba
import numpy as np

from ..kernels import input_scan
from .column_scatter import ColumnScatter
from .fixed16 import Fixed16Plans
from .panel_batch import PanelBatch
from .row_gather import RowGather
from .rows import Rows
from .sliced_ell import SlicedEll

# Batches of at most this many vectors run one vector at a time: the batch kernel's 16 lanes cost
# the same from 2 to 16 samples, and per vector the kernels also skip zero activations (measured at
# 4 samples: 1.0-1.6x faster one at a time, at 8 samples 1.3-2.5x slower).
SINGLE_VECTOR_MAX_BATCH = 4
# fixed16 batches of at most this many vectors run one vector at a time: with the panel kernel
# (AVX-512 hosts, shift <= 29) as for float32 (at 4 vectors 1.3-3x faster, at 8 level or slower);
# with the CSR x block kernel, which reads a row of X^T from L2 per entry, up to 16 (1.05-3.6x
# faster at 2-16 vectors, level to 1.5x slower at 32-64).
FIXED16_SINGLE_MAX_BATCH = 4
FIXED16_CSR_SINGLE_MAX_BATCH = 16
# Up to this many (finite) vectors walk the sliced ELL together, where a layer keeps it: a step's
# decoding serves 8 vectors. Measured against the panel kernel's 16 lanes: 1.1-2.5x faster at 5-12
# vectors, slower at 16.
SLICED_ELL_MAX_BATCH = 12
# Without the sliced ELL, at or above this fraction of non-zero activations a call gathers instead
# of scattering. By the costs the crossover lies near 40-50%; the paper layers sit at 18-41%
# or 100%, where either threshold picks the same.
GATHER_DENSITY = 0.6
# Layers with at most this many stored non-zeros run their kernels on one thread: a parallel launch
# costs more than their arithmetic (a 10 x 512 layer at density 0.1, one vector: 16 us on one thread,
# 130-600 us through a two-thread launch on a busy machine). Same kernels, same row blocks, so the
# same results bit for bit. The nine Table III layers hold 245K non-zeros or more and stay parallel.
SERIAL_MAX_NNZ = 32768
# fixed16 single vectors take the kernel (sliced ELL or not) that float32 takes at the same non-zero count
# unless the costs make the other more than this much cheaper (a factor 1 + margin)
LAYOUT_SHARING_MARGIN = 0.15


_THREAD_FNS = None


def _thread_fns():
    """Numba's (get, set) of this thread's thread count: the pool's own ctypes functions once it is
    launched (``numba.set_num_threads`` relaunches the check each call: 3-4 us), else the public ones."""
    global _THREAD_FNS
    if _THREAD_FNS is None:
        from numba.np.ufunc import parallel
        parallel._launch_threads()
        get, set_ = getattr(parallel, "_get_num_threads", None), getattr(parallel, "_set_num_threads", None)
        _THREAD_FNS = (get, set_) if callable(get) and callable(set_) else (numba.get_num_threads,
                                                                            numba.set_num_threads)
    return _THREAD_FNS


def _one_thread(run):
    """``run`` with Numba's thread count set to 1 for the call (thread-local; restored after)."""
    def serial(*args):
        get, set_ = _THREAD_FNS or _thread_fns()
        n = get()
        if n == 1:
            return run(*args)
        set_(1)
        try:
            return run(*args)
        finally:
            set_(n)
    serial.__name__ = run.__name__
    serial.__doc__ = run.__doc__
    return serial


class EllChoice(NamedTuple):
    """Whether a layer keeps the sliced ELL, and from how many non-zero activations a call takes it."""

    kept: bool
    min_nonzero: float | None = None  # float32: where it costs what the column scatter does
    threshold: float | None = None  # float32 calls take it from here (the gather's calls too)
    min_nonzero_fixed16: tuple = (None, None)  # fixed16: the same, terms clamped in int32 / fitting int16


class Chooser:
    """The rules above, over a layout's strategies. ``ExecLayout`` is one: it sets the strategies,
    then calls ``_init_choice``; the run methods live here so that a call passes through no
    extra Python frame on its way to the kernel."""

    rows: Rows
    column_scatter: ColumnScatter
    row_gather: RowGather
    sliced_ell: SlicedEll
    panel_batch: PanelBatch
    fixed16: Fixed16Plans

    def _init_choice(self, sliced_ell: bool | None) -> None:
        self._m, self._k = self.rows.shape
        # decided here (the host, the caller's wish); whether it pays is decided on first need
        self._ell_wanted = bool((self.sliced_ell.available() if sliced_ell is None else sliced_ell) and self.rows.nnz)
        self._ell_forced = bool(sliced_ell)
        self._ell_choice = None
        self._choice_lock = threading.Lock()
        # small layers: the run methods on one thread (bound per instance, so big layers' calls pass
        # through no extra frame)
        self.serial = self.rows.nnz <= SERIAL_MAX_NNZ
        if self.serial:
            self.run_float32 = _one_thread(self.run_float32)
            self.run_fixed16 = _one_thread(self.run_fixed16)

    def ell_choice(self) -> EllChoice:
        """Whether the sliced ELL is kept and from how many non-zero activations calls take it: decided on
        first need, from its step count (read from the stored entries) and the kernel costs."""
        choice = self._ell_choice
        if choice is None:
            with self._choice_lock:
                choice = self._ell_choice
                if choice is None:
                    choice = self._decide_ell()
                    self._ell_choice = choice
        return choice

    def _decide_ell(self) -> EllChoice:
        ell, scatter = self.sliced_ell, self.column_scatter
        if not self._ell_wanted:
            return EllChoice(False)
        if not (self._ell_forced or ell.cost() < self.row_gather.cost()):  # too empty to beat the gather
            return EllChoice(False)
        k, nnz, steps, costs = self._k, self.rows.nnz, ell.steps, ell.costs
        # its cost == the scatter's at this many non-zero activations
        min_nonzero = k * costs.sliced_ell_ns_per_step * steps / (scatter.ns_per_entry() * nnz)
        # a kept sliced ELL beats the gather whatever the input, so it takes the gather's calls too
        threshold = min(min_nonzero, GATHER_DENSITY * k)
        # fixed16: its own crossovers, but it takes the kernel float32 takes at the same count unless the other
        # is more than LAYOUT_SHARING_MARGIN cheaper: one layout serves both modes, and near a crossover the
        # choice does not follow noise in the measured costs
        wide = 1 + LAYOUT_SHARING_MARGIN
        fixed16 = tuple(min(max(threshold, crossover / wide), crossover * wide) for crossover in (
            k * step_ns * steps / (scatter.ns_per_entry(fixed16=True) * nnz)
            for step_ns in (costs.sliced_ell_fixed16_ns_per_step, costs.sliced_ell_fixed16_words_ns_per_step)))
        return EllChoice(True, min_nonzero, threshold, fixed16)

    # --------------------------------------------------------------- float32
    def run_float32(self, x: np.ndarray, bias: np.ndarray, relu: bool) -> np.ndarray:
        """act(W x + bias) for validated float32 C-contiguous ``x`` of shape (K,) or (B, K)."""
        if x.ndim == 1:
            out = np.empty(self._m, dtype=np.float32)
            self._float32_vector(x, bias, relu, out)
            return out
        nb = x.shape[0]
        out = np.empty((nb, self._m), dtype=np.float32)
        if nb <= SINGLE_VECTOR_MAX_BATCH:
            for s in range(nb):
                self._float32_vector(x[s], bias, relu, out[s])
        elif nb <= SLICED_ELL_MAX_BATCH and self.ell_choice().kept and input_scan.count_nonzero_finite(x.reshape(-1))[1]:
            self.sliced_ell.run_float32_batch(x, bias, relu, out)
        else:
            self.panel_batch.run_float32(x, bias, relu, out)
        return out

    def _float32_vector(self, x, bias, relu, out) -> None:
        ell = self._ell_choice or self.ell_choice()
        if ell.kept:  # (never when K = 0) it counts the non-zeros itself and runs on enough of them
            found = self.sliced_ell.run_float32(x, bias, relu, out, ell.threshold)
            if found >= ell.threshold:
                return
            n_nz = found if found >= 0 else -1 - found  # too few non-zeros, or NaN/Inf
        else:
            n_nz, _ = input_scan.count_nonzero_finite(x)
        if self._k and n_nz >= GATHER_DENSITY * self._k:  # no sliced ELL, or NaN/Inf (its padding would spread them)
            self.row_gather.run_float32(x, bias, relu, out)
        else:
            self.column_scatter.run_float32(x, bias, relu, out)

    # --------------------------------------------------------------- fixed16
    def run_fixed16(self, x_q: np.ndarray, w_frac: int, bias_q: np.ndarray, shift: int, relu: bool) -> np.ndarray:
        """Bit-exact int16 layer (docs/design.md) for validated C-contiguous int16 ``x_q`` of shape (K,) or (B, K)."""
        plan = self.fixed16.plan(w_frac, bias_q, shift)
        out = np.empty((self._m,) if x_q.ndim == 1 else (x_q.shape[0], self._m), dtype=np.int16)
        if shift >= 63:
            # |w a| <= 2**30, so every rounded product is 0: only the bias remains
            out[...] = np.maximum(plan.bias32, 0) if relu else plan.bias32
        elif x_q.ndim == 1:
            self._fixed16_vector(x_q, plan, shift, relu, out)
        elif x_q.shape[0] > FIXED16_SINGLE_MAX_BATCH and plan.halves and self.panel_batch.fixed16_available() \
                and self._k:
            self.panel_batch.run_fixed16(x_q, plan, shift, relu, out)
        elif x_q.shape[0] > FIXED16_CSR_SINGLE_MAX_BATCH and shift <= 30:  # no AVX512BW (vpmaddwd), or shift 30
            self.row_gather.run_fixed16_batch(x_q, plan, shift, relu, out)
        else:
            for s in range(x_q.shape[0]):
                self._fixed16_vector(x_q[s], plan, shift, relu, out[s])
        return out

    def _fixed16_vector(self, x_q, plan, shift, relu, out) -> None:
        ell = (self._ell_choice or self.ell_choice()) if plan.halves else None
        if ell is not None and ell.kept:  # it counts the input itself and runs on enough non-zeros
            found = self.sliced_ell.run_fixed16(x_q, plan, shift, relu, out, ell.min_nonzero_fixed16)
            n_nz, amax = found >> 16, found & 0xFFFF
            if n_nz >= ell.min_nonzero_fixed16[amax <= plan.fit16_amax]:
                return
        else:
            n_nz, amax = input_scan.count_and_amax(x_q)
        if shift <= 30 and self._k and n_nz >= GATHER_DENSITY * self._k:  # the gather checks its own rows
            self.row_gather.run_fixed16(x_q, plan, shift, amax, relu, out)
        else:
            self.column_scatter.run_fixed16(x_q, plan, shift, amax, relu, out)
