"""The load-time execution layout of one layer, derived from its stored :class:`InterleavedCSC`.

The stored format is what the hardware reads (1 byte per entry, relative row
indices, padding entries). Decoding it on every call costs more than the
multiply-adds, so a layer builds, once, these layouts of its non-zeros:

- a blocked CSC for EIE's column scatter (sparse activations): per row block
  (contiguous, balanced by non-zeros, aligned to 16 rows; one block per
  thread, at most 4096 rows) column pointers and one uint16 per entry packing
  the block-local row and the 4-bit codebook index, 2 bytes per entry;
- a CSR (columns ascending in each row) for row gathers (and fixed16
  batches on hosts without AVX-512): a uint16 (int32 if K > 65536) column and
  a uint8 codebook index per entry, 3 bytes per entry; fixed16 adds, on first
  use, every row's sum of |weight|, to prove when saturation cannot happen;
- the panel-major entries of ``kernels.panel_batch`` for batches (2 bytes
  per entry plus an int32 per (column panel, row) pair);
- on AVX-512 hosts, the sliced ELL of ``kernels.sliced_ell`` for single
  vectors with many non-zeros, float32 and fixed16 (2-3 bytes per entry).

Calls then pick a kernel from the input: float32 batches of more than
``SINGLE_VECTOR_MAX_BATCH`` vectors -> the sliced ELL walked for 8 vectors at
once (up to ``SLICED_ELL_MAX_BATCH`` finite vectors, where the layer keeps
it), else the panel kernel; fixed16 batches of more than
``FIXED16_SINGLE_MAX_BATCH`` vectors -> the fixed16 panel kernel (AVX-512
hosts, shift <= 29), else, past ``FIXED16_CSR_SINGLE_MAX_BATCH``, the CSR
times the batch block; one vector (and each vector of a small float32
batch) -> the sliced ELL when the layout's kernel costs
(``kernel_costs.KernelCosts``) make it cheaper than the scatter over the
vector's non-zeros (per (row, code) accumulators when
blocks have at most ``BY_CODE_MAX_ROWS`` rows); without the sliced ELL (and
for float32 inputs with NaN or Inf), the gather when at least
``GATHER_DENSITY`` of the activations are non-zero, else the scatter. The
exact fixed16 paths and the table scatter give the same numbers as
``kernels.spmspv``; the other float32 kernels may round differently (they
reassociate sums).
"""

from __future__ import annotations

import threading
from typing import NamedTuple

import numpy as np

from .fixed_point import to_fixed
from .format import InterleavedCSC
from .kernel_costs import KernelCosts, current as _current_costs
from .kernels import column_scatter as _scatter
from .kernels import input_scan as _scan
from .kernels import layout_build as _build
from .kernels import row_gather as _gather
from .kernels import sliced_ell as _ell
from .kernels import panel_batch as _pb
from .kernels.aligned import aligned_empty as _aligned_empty
from .kernels import kernel_section

ROW_ALIGN = 16  # rows per 64-byte cache line of float32 outputs
_MAX_BLOCK_ROWS = 1 << 12  # block-local row << 4 | code fits a uint16
# Blocks of at most this many rows keep their 16 accumulators per row (64 B) in
# a 48 KiB L1, where the per-(row, code) scatter is 1.3x faster than the table one.
BY_CODE_MAX_ROWS = 768
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
# of scattering. By the costs above the crossover lies near 40-50%; the paper layers sit at 18-41%
# or 100%, where either threshold picks the same.
GATHER_DENSITY = 0.6


class _Fixed16Plan(NamedTuple):
    """What fixed16 calls derive from (w_frac, shift, bias): built once, reused while they stay the same."""

    key: tuple  # (w_frac, shift)
    bias_q: np.ndarray  # the caller's bias object, kept alive so that its identity is not reused
    bias32: np.ndarray  # it as int32
    codebook_q: np.ndarray  # int32 weights
    wmax: int  # max |codebook_q|
    fit16_amax: int  # every rounded product fits int16 while max |activation| <= this (_fit16_amax)
    halves: tuple | None  # rounding_halves(shift) for the vpmaddwd kernels (shift <= 29), else None
    codebook_words: np.ndarray | None  # codebook_words(codebook_q, w_hi) for the vpmaddwd kernels
    safe_amax: int  # the scatter needs no saturation check up to this |activation| (fast_fixed16.safe_amax)


def _term_bound(wmax: int, amax: int, shift: int) -> int:
    """A bound on every rounded product ``|(w a + half) >> shift|`` for ``|w| <= wmax``, ``|a| <= amax``."""
    return (wmax * int(amax) + (1 << 29)) >> shift


def _fit16_amax(wmax: int, shift: int) -> int:
    """The largest ``amax`` (-1 for none, capped at 32768) with ``_term_bound(wmax, amax, shift) < 32767``."""
    room = (32767 << shift) - (1 << 29) - 1  # wmax * amax may reach this
    if room < 0:
        return -1
    return 32768 if wmax == 0 else min(32768, room // wmax)


def _default_blocks() -> int:
    import numba

    return max(1, int(numba.config.NUMBA_NUM_THREADS))


def _balanced_bounds(row_nnz: np.ndarray, n_blocks: int, max_rows: int | None = _MAX_BLOCK_ROWS) -> np.ndarray:
    """Row block boundaries at multiples of ROW_ALIGN, each block near total/n_blocks non-zeros.

    With ``max_rows``, tall layers get more blocks, the same number per thread
    (3 blocks on 2 threads ran 1.5x slower than 4).
    """
    m = row_nnz.shape[0]
    n_blocks = max(1, n_blocks)
    if max_rows is not None:
        n_blocks *= -(-m // (max_rows * n_blocks)) or 1
    n_blocks = max(1, min(n_blocks, -(-m // ROW_ALIGN)))
    cum = np.concatenate(([0], np.cumsum(row_nnz)))
    total = cum[-1]
    bounds = [0]
    for b in range(1, n_blocks):
        r = int(np.searchsorted(cum, total * b / n_blocks))
        r = min(m, max(bounds[-1], int(round(r / ROW_ALIGN)) * ROW_ALIGN))
        bounds.append(r)
    bounds.append(m)
    bounds = np.array(bounds, dtype=np.int64)
    # keep every block within the row limit (very uneven rows)
    while max_rows is not None and np.diff(bounds).max(initial=0) > max_rows:
        b = int(np.argmax(np.diff(bounds)))
        mid = (bounds[b] + bounds[b + 1]) // 2 // ROW_ALIGN * ROW_ALIGN
        bounds = np.insert(bounds, b + 1, mid)
    return bounds


class ExecLayout:
    """Execution layouts of one :class:`InterleavedCSC` (see the module docstring).

    Parameters
    ----------
    matrix : InterleavedCSC
        A validated stored matrix; the layout keeps a reference to it so a
        layer can tell when its matrix was replaced.
    n_blocks : int, optional
        Row blocks (parallel tasks); default: Numba's thread count.
    sliced_ell : bool, optional
        Build the sliced ELL: None (default) where the host has AVX-512 and
        the layer's rows fill its slots well enough to beat the gather; True
        always (AVX-512 hosts only); False never (float32 vectors then take
        the scatter and the gather).
    panel : int, optional
        Columns per panel of the batch kernels (1 to 4096); default
        ``kernels.panel_batch.panel_width`` of the layer's shape and density.
    costs : KernelCosts, optional
        The per-thread kernel costs that decide whether the sliced ELL is
        kept and from how many non-zero activations a call takes it; default
        ``kernel_costs.current()`` (the measured defaults, or
        ``$EIE_KERNEL_COSTS``).
    """

    def __init__(self, matrix: InterleavedCSC, n_blocks: int | None = None, sliced_ell: bool | None = None,
                 panel: int | None = None, costs: KernelCosts | None = None):
        if costs is None:
            costs = _current_costs()
        elif not isinstance(costs, KernelCosts):
            raise TypeError(f"costs must be a KernelCosts, got {type(costs).__name__}")
        self.costs = costs
        self.matrix = matrix
        m, k = matrix.shape
        self.shape = (m, k)
        row_nnz = _build.row_counts(matrix.entries, matrix.ptr, matrix.n_pe, m)
        nnz = int(row_nnz.sum())
        ptr_t = np.int32 if nnz < 2**31 else np.int64
        self.rowptr = np.zeros(m + 1, dtype=ptr_t)
        np.cumsum(row_nnz, out=self.rowptr[1:])
        self.cols = np.empty(nnz, dtype=np.uint16 if k <= 1 << 16 else np.int32)
        codes = np.empty(nnz, dtype=np.uint8)
        _build.fill_csr(matrix.entries, matrix.ptr, matrix.n_pe, self.rowptr, self.cols, codes)
        self.codes = codes
        n_blocks = n_blocks or _default_blocks()
        self.bounds = _balanced_bounds(row_nnz, n_blocks)  # scatter blocks: packed rows, at most 4096
        # gathers and batches: one block per thread whatever the height (5% faster on NT-Wd than 2 each)
        self.row_bounds = _balanced_bounds(row_nnz, n_blocks, max_rows=None)
        counts = _build.block_column_counts(self.rowptr, self.cols, self.bounds, k)
        self.colptr = np.zeros((counts.shape[0], k + 1), dtype=ptr_t)
        # absolute offsets: block b's columns follow all of block b-1's entries
        self.colptr[:, 1:] = np.cumsum(counts.ravel()).reshape(counts.shape)
        self.colptr[:, 0] = np.concatenate(([0], np.cumsum(counts.sum(axis=1))[:-1]))
        self.csc_packed = np.empty(nnz, dtype=np.uint16)
        _build.fill_blocked_csc(self.rowptr, self.cols, codes, self.bounds, self.colptr, self.csc_packed)
        if panel is not None and not 1 <= panel <= _pb.MAX_PACKED_PANEL:
            raise ValueError(f"panel must be 1..{_pb.MAX_PACKED_PANEL} columns, got {panel}")
        self.panel = panel or _pb.panel_width(m, k, nnz)
        n_pairs = -(-k // self.panel) * m
        self.panel_ptr = np.empty(n_pairs + 1, dtype=ptr_t)
        self.panel_entries = np.empty(nnz, dtype=np.uint16)
        _build.fill_panels(self.rowptr, self.cols, codes, m, self.panel, self.panel_ptr, self.panel_entries)
        self.scatter_by_code = int(np.diff(self.bounds).max(initial=0)) <= BY_CODE_MAX_ROWS
        self.ell = None  # (gptr, slots, segs, codebook16)
        self.ell_min_nonzero = None  # from how many non-zero activations it beats the scatter
        self.ell_threshold = None  # from how many a float32 call takes it (also for the gather's calls)
        self.ell_min_nonzero_fixed16 = (None, None)  # the same for fixed16, without and with int16 terms
        if sliced_ell and not _ell.AVAILABLE:
            raise ValueError(f"sliced_ell=True needs Numba compiling for a CPU with {', '.join(_ell.REQUIRES)}")
        if (_ell.AVAILABLE if sliced_ell is None else sliced_ell) and nnz:
            ell = self._sliced_ell(codes)
            steps = int(ell[0][-1])
            if sliced_ell or costs.sliced_ell_ns_per_step * steps < costs.gather_ns_per_entry * nnz:  # else: too empty
                self.ell = ell
                # cost of the sliced ELL == the scatter's at this many non-zero activations
                scatter_ns = costs.scatter_by_code_ns_per_entry if self.scatter_by_code else costs.scatter_ns_per_entry
                self.ell_min_nonzero = k * costs.sliced_ell_ns_per_step * steps / (scatter_ns * nnz)
                # a kept sliced ELL beats the gather whatever the input, so it takes the gather's calls too
                self.ell_threshold = min(self.ell_min_nonzero, GATHER_DENSITY * k)
                self.ell_min_nonzero_fixed16 = tuple(
                    k * step_ns * steps / (costs.scatter_fixed16_ns_per_entry * nnz)
                    for step_ns in (costs.sliced_ell_fixed16_ns_per_step, costs.sliced_ell_fixed16_words_ns_per_step))
        self.nnz = nnz
        self.max_row = int(row_nnz.max(initial=0))
        self._q16 = None  # (w_frac, codebook_q, row sums of |weight_q|, max |codebook_q|), on first use
        self._plan16 = None  # the _Fixed16Plan of the last fixed16 call
        self._lock = threading.Lock()

    def _sliced_ell(self, codes: np.ndarray):
        m, k = self.shape
        steps = _build.sliced_ell_group_steps(self.matrix.entries, self.matrix.ptr, self.matrix.n_pe, m, k, _ell.STEP_UNROLL)
        gptr = np.zeros(steps.shape[0] + 1, dtype=np.int64)
        np.cumsum(steps, out=gptr[1:])
        slots = _aligned_empty(int(gptr[-1]) * 16 // _ell.STEP_UNROLL, np.uint32)  # 64-byte blocks of 4 steps
        slots[:] = 0
        segs = np.zeros(int(gptr[-1]), dtype=np.uint16 if k <= 16 << 16 else np.uint32)
        _build.fill_sliced_ell(self.rowptr, self.cols, codes, m, k, gptr, slots, segs)
        codebook16 = np.zeros(16, dtype=np.float32)
        codebook16[: self.matrix.codebook.shape[0]] = self.matrix.codebook
        return gptr, slots, segs, codebook16

    # ---------------------------------------------------------------- memory
    def nbytes(self) -> int:
        """Bytes of every run-time array built so far (fixed16's only after its first use)."""
        arrays = [self.rowptr, self.cols, self.codes, self.bounds, self.row_bounds, self.colptr, self.csc_packed,
                  self.panel_ptr, self.panel_entries]
        if self.ell is not None:
            arrays += list(self.ell)
        if self._q16 is not None:
            arrays += [self._q16[2]]  # row sums
        return int(sum(a.nbytes for a in arrays))

    def nbytes_with_fixed16(self) -> int:
        """Bytes once fixed16 has been used too (an int64 per row)."""
        extra = 0 if self._q16 is not None else 8 * self.shape[0]
        return self.nbytes() + extra

    # --------------------------------------------------------------- float32
    def run_float32(self, x: np.ndarray, bias: np.ndarray, relu: bool) -> np.ndarray:
        """act(W x + bias) for validated float32 C-contiguous ``x`` of shape (K,) or (B, K)."""
        m, k = self.shape
        if x.ndim == 2:
            out = np.empty((x.shape[0], m), dtype=np.float32)
            if x.shape[0] <= SINGLE_VECTOR_MAX_BATCH:
                for s in range(x.shape[0]):
                    out[s] = self.run_float32(x[s], bias, relu)
                return out
            if (self.ell is not None and x.shape[0] <= SLICED_ELL_MAX_BATCH
                    and _scan.count_nonzero_finite(x.reshape(-1))[1]):
                gptr, slots, segs, codebook16 = self.ell
                with kernel_section():
                    _ell.sliced_ell_batch_f32(gptr, slots, segs, codebook16, self.row_bounds, x, bias, relu, out)
                return out
            with kernel_section():  # serialized only on Numba's thread-unsafe workqueue layer
                _pb.panel_batch_f32(self.panel_ptr, self.panel_entries, self.matrix.codebook, self.row_bounds,
                                    self.panel, x, bias, relu, out)
            return out
        out = np.empty(m, dtype=np.float32)
        if self.ell is not None:  # (none when K = 0) it counts the non-zeros itself and runs on enough of them
            gptr, slots, segs, codebook16 = self.ell
            with kernel_section():
                found = _ell.sliced_ell_f32(gptr, slots, segs, codebook16, self.row_bounds, x, bias, relu, out,
                                            self.ell_threshold)
            if found >= self.ell_threshold:
                return out
            n_nz = found if found >= 0 else -1 - found  # too few non-zeros, or NaN/Inf
        else:
            n_nz, _ = _scan.count_nonzero_finite(x)
        if k and n_nz >= GATHER_DENSITY * k:  # no sliced ELL, or NaN/Inf (its padding would spread them)
            with kernel_section():
                _gather.gather_f32(self.rowptr, self.cols, self.codes, self.matrix.codebook, self.row_bounds, x, bias,
                                relu, out)
        else:
            scatter = _scatter.scatter_by_code_f32 if self.scatter_by_code else _scatter.scatter_f32
            with kernel_section():
                scatter(self.colptr, self.csc_packed, self.matrix.codebook, self.bounds, x, bias, relu, out)
        return out

    # --------------------------------------------------------------- fixed16
    def _fixed16_tables(self, w_frac: int):
        q = self._q16
        if q is None or q[0] != w_frac:
            with self._lock:
                q = self._q16
                if q is None or q[0] != w_frac:
                    codebook_q = to_fixed(self.matrix.codebook, w_frac).astype(np.int32)
                    row_abs = _build.row_abs_sums(self.matrix.entries, self.matrix.ptr, self.matrix.n_pe, self.shape[0], np.abs(codebook_q).astype(np.int64))
                    wmax = int(np.abs(codebook_q).max(initial=0))
                    q = (w_frac, codebook_q, row_abs, wmax)
                    self._q16 = q
        return q

    def _fixed16_plan(self, w_frac: int, bias_q: np.ndarray, shift: int) -> _Fixed16Plan:
        """The plan for these parameters and this bias object (layers pass the same cached one), remembered:
        a single-vector call then costs a count, a few comparisons and the kernel (deriving these on
        every call cost about 4 us on NT-We)."""
        plan = self._plan16
        if plan is not None and plan.bias_q is bias_q and plan.key == (w_frac, shift):
            return plan
        _, codebook_q, row_abs, wmax = self._fixed16_tables(w_frac)
        bias32 = np.ascontiguousarray(bias_q, dtype=np.int32)
        halves = _ell.rounding_halves(shift) if shift <= 29 else None
        plan = _Fixed16Plan(key=(w_frac, shift), bias_q=bias_q, bias32=bias32, codebook_q=codebook_q, wmax=wmax,
                            fit16_amax=_fit16_amax(wmax, shift), halves=halves,
                            codebook_words=_ell.codebook_words(codebook_q, halves[1]) if halves else None,
                            safe_amax=int(_scatter.safe_amax(row_abs, self.rowptr, bias32, shift)) if shift < 63 else 0)
        self._plan16 = plan  # one tuple, replaced atomically: safe under concurrent calls
        return plan

    def run_fixed16(self, x_q: np.ndarray, w_frac: int, bias_q: np.ndarray, shift: int, relu: bool) -> np.ndarray:
        """Bit-exact int16 layer (DESIGN.md) for validated C-contiguous int16 ``x_q`` of shape (K,) or (B, K)."""
        m, k = self.shape
        plan = self._fixed16_plan(w_frac, bias_q, shift)
        out = np.empty((m,) if x_q.ndim == 1 else (x_q.shape[0], m), dtype=np.int16)
        if shift >= 63:
            # |w a| <= 2**30, so every rounded product is 0: only the bias remains
            out[...] = np.maximum(plan.bias32, 0) if relu else plan.bias32
            return out
        if x_q.ndim == 1:
            self._fixed16_vector(x_q, plan, shift, relu, out)
            return out
        if x_q.shape[0] > FIXED16_SINGLE_MAX_BATCH and plan.halves and _pb.FIXED16_AVAILABLE and k:  # the panel kernel
            _, amax = _scan.count_and_amax(x_q.reshape(-1))
            fit16 = _term_bound(plan.wmax, amax, shift) < 32767  # every rounded product fits int16
            with kernel_section():
                _pb.panel_batch_fixed16(self.panel_ptr, self.panel_entries, plan.codebook_words, self.row_bounds,
                                        self.panel, x_q, plan.bias32, shift, plan.halves[0], fit16, relu, out)
            return out
        if x_q.shape[0] > FIXED16_CSR_SINGLE_MAX_BATCH and shift <= 30:  # no AVX-512 (vpmaddwd), or shift 30
            xt = np.ascontiguousarray(x_q.T, dtype=np.int32)
            with kernel_section():
                _gather.csr_block_fixed16(self.rowptr, self.cols, self.codes, plan.codebook_q, self.row_bounds, xt,
                                       plan.bias32, shift, relu, out)
            return out
        for s in range(x_q.shape[0]):
            self._fixed16_vector(x_q[s], plan, shift, relu, out[s])
        return out

    def _fixed16_vector(self, x: np.ndarray, plan: _Fixed16Plan, shift: int, relu: bool, out: np.ndarray) -> None:
        """``out`` = the layer on one int16 vector, by the kernel its non-zeros and magnitude call for."""
        k = self.shape[1]
        if plan.halves and self.ell is not None:  # it counts the input itself and runs on enough non-zeros
            gptr, slots, segs, _ = self.ell
            with kernel_section():  # saturating in the hardware's order: exact for any input
                found = _ell.sliced_ell_fixed16(gptr, slots, segs, plan.codebook_words, self.row_bounds, x,
                                                plan.bias32, shift, plan.halves[0], plan.fit16_amax,
                                                self.ell_min_nonzero_fixed16, relu, out)
            n_nz, amax = found >> 16, found & 0xFFFF
            if n_nz >= self.ell_min_nonzero_fixed16[amax <= plan.fit16_amax]:
                return
        else:
            n_nz, amax = _scan.count_and_amax(x)
        if shift <= 30 and k and n_nz >= GATHER_DENSITY * k:  # the gather checks its own rows
            narrow = self.max_row * (_term_bound(plan.wmax, amax, shift) + 1) < 2**31 - 2**15  # int32 row sums
            gather = _gather.gather_fixed16_narrow if narrow else _gather.gather_fixed16
            with kernel_section():
                gather(self.rowptr, self.cols, self.codes, plan.codebook_q, self.row_bounds, x, plan.bias32, shift,
                       relu, out)
        else:
            with kernel_section():
                _scatter.scatter_fixed16(self.colptr, self.csc_packed, plan.codebook_q, self.bounds, x, plan.bias32, shift,
                                     relu, amax > plan.safe_amax, out)
