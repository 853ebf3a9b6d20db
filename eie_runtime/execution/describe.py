"""Which kernel runs a layer's calls, per mode and kind of input, and what its layout costs in memory.

``ExecLayout.describe()`` (and ``eie inspect --kernels``) applies the
``Chooser``'s rules without running anything: it reads the same thresholds
(the sliced ELL's step count, from the stored entries, and the kernel costs)
and builds no layout, so what it lists is what calls will build. Bytes are
those of the layout's arrays (built or not yet), per stored entry.
"""

from __future__ import annotations

from . import choice as C


def layout_nbytes(ex, strategy: str) -> int:
    """The bytes ``strategy``'s arrays take once built (exact: from the shapes its builder allocates)."""
    rows = ex.rows
    m, k = rows.shape
    nnz = rows.nnz
    ptr = rows.rowptr.dtype.itemsize
    if strategy == "row_gather":
        return nnz * ((2 if k <= 1 << 16 else 4) + 1)
    if strategy == "column_scatter":
        return nnz * 2 + (rows.bounds.shape[0] - 1) * (k + 1) * ptr
    if strategy == "sliced_ell":
        steps = ex.sliced_ell.steps
        gptr = ex.sliced_ell.group_starts()
        return steps * 16 + steps * (2 if k <= 16 << 16 else 4) + gptr.nbytes + 64
    if strategy == "panel_batch":
        panel = ex.panel_batch.panel
        return nnz * 2 + (-(-k // panel) * m + 1) * ptr
    raise ValueError(f"unknown strategy {strategy!r}")


def _pct(n, k) -> str:
    return f"{100 * n / k:.3g}%" if k else "0%"


def single_vector_ranges(ex, fixed16: bool) -> list[tuple[float, float, str, str]]:
    """[(from, to non-zero count, kernel, strategy)] covering 0..K for one finite vector (fixed16: terms that fit
    int16, shift <= 29, the usual case after ``calibrate``)."""
    k = ex.shape[1]
    gather_from = C.GATHER_DENSITY * k
    ell = ex.ell_choice()
    scatter = ("scatter_fixed16" + ("" if ex.column_scatter.fixed16_vector else " (scalar clamps)")
               if fixed16 else ("scatter_by_code_f32" if ex.column_scatter.by_code else "scatter_f32"), "column_scatter")
    gather = ("gather_fixed16" if fixed16 else "gather_f32", "row_gather")
    if not ell.kept:
        return [(0, gather_from, *scatter), (gather_from, k, *gather)]
    ell_from = ell.min_nonzero_fixed16[1] if fixed16 else ell.threshold
    sliced = ("sliced_ell_fixed16" if fixed16 else "sliced_ell_f32", "sliced_ell")
    if ell_from <= gather_from:
        return [(0, ell_from, *scatter), (ell_from, k, *sliced)]
    return [(0, gather_from, *scatter), (gather_from, ell_from, *gather), (ell_from, k, *sliced)]


def batch_kernel(ex, fixed16: bool, batch: int) -> tuple[str, str]:
    """(kernel, strategy) of a finite batch of ``batch`` > 1 vectors."""
    if not fixed16:
        if batch <= C.SINGLE_VECTOR_MAX_BATCH:
            return "one vector at a time", ""
        if batch <= C.SLICED_ELL_MAX_BATCH and ex.ell_choice().kept:
            return "sliced_ell_batch_f32", "sliced_ell"
        return "panel_batch_f32", "panel_batch"
    if batch > C.FIXED16_SINGLE_MAX_BATCH and ex.panel_batch.fixed16_available() and ex.shape[1]:
        return "panel_batch_fixed16", "panel_batch"
    if batch > C.FIXED16_CSR_SINGLE_MAX_BATCH:
        return "csr_block_fixed16", "row_gather"
    return "one vector at a time", ""


def describe(ex, density: float | None = None, batches=(8, 64)) -> list[dict]:
    """Rows {mode, input, kernel, layout, layout B/entry}: per mode, single vectors (every range of non-zero
    counts, or only the count at ``density``) and each batch size; B/entry per stored entry of the matrix."""
    m, k = ex.shape
    stored = max(1, ex.matrix.stored_entries)
    out = []

    def row(mode, what, kernel, strategy):
        nbytes = layout_nbytes(ex, strategy) if strategy else None
        out.append({"mode": mode, "input": what, "kernel": kernel, "layout": strategy or "(as single vectors)",
                    "layout B/entry": "" if nbytes is None else round(nbytes / stored, 2)})

    for mode, fixed16 in (("float32", False), ("fixed16", True)):
        ranges = single_vector_ranges(ex, fixed16)
        if density is not None:
            n = density * k
            lo, hi, kernel, strategy = next(r for r in ranges if r[0] <= n < r[1] or r[1] >= k)
            row(mode, f"1 vector, {_pct(n, k)} non-zero", kernel, strategy)
        else:
            for lo, hi, kernel, strategy in ranges:
                if hi > lo:
                    what = f"1 vector, {_pct(lo, k)}-{_pct(hi, k)} non-zero" if hi < k else \
                        f"1 vector, from {_pct(lo, k)} non-zero"
                    row(mode, what, kernel, strategy)
        for batch in batches:
            if batch > 1:
                row(mode, f"batch of {batch}", *batch_kernel(ex, fixed16, batch))
    return out
