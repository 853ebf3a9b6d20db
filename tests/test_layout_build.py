"""The layout builders' readings of the stored entries, against numpy on the dense codes."""

import numpy as np
import pytest

from eie_runtime.format import InterleavedCSC
from eie_runtime.kernels import encode, layout_build


def _matrix(m, k, density, n_pe, seed):
    rng = np.random.default_rng(seed)
    codes = rng.integers(1, 16, size=(m, k)).astype(np.uint8)
    codes[rng.random((m, k)) >= density] = 0
    cb = np.concatenate([[0.0], rng.normal(0, 1, 15)]).astype(np.float32)
    return codes, InterleavedCSC.from_codes(codes, cb, n_pe)


CASES = [(1, 1, 1.0, 1), (17, 33, 0.3, 4), (203, 70, 0.05, 64), (600, 1201, 0.2, 8), (40, 300, 0.01, 3),
         (5000, 64, 0.5, 7), (300, 40, 0.02, 1)]  # many segments per chunk; long zero runs (padding entries)


@pytest.mark.parametrize("m, k, density, n_pe", CASES)
@pytest.mark.parametrize("unroll", [1, 4])
def test_sliced_ell_group_steps_from_the_stored_entries(m, k, density, n_pe, unroll):
    codes, mat = _matrix(m, k, density, n_pe, m + k)
    steps = layout_build.sliced_ell_group_steps(mat.entries, mat.ptr, mat.n_pe, m, k, unroll)
    g, s = -(-m // 16), -(-k // 16)
    padded = np.zeros((16 * g, 16 * s), dtype=np.int64)
    padded[:m, :k] = codes != 0
    per_row_segment = padded.reshape(g, 16, s, 16).sum(axis=3)  # (group, lane, segment)
    want = per_row_segment.max(axis=1).sum(axis=1)
    np.testing.assert_array_equal(steps, -(-want // unroll) * unroll)


@pytest.mark.parametrize("m, k, density, n_pe", CASES)
def test_row_counts_and_abs_sums_from_the_stored_entries(m, k, density, n_pe):
    codes, mat = _matrix(m, k, density, n_pe, m * k)
    if (m, n_pe) == (300, 1):
        assert mat.padding_entries > 0
    np.testing.assert_array_equal(layout_build.row_counts(mat.entries, mat.ptr, n_pe, m), (codes != 0).sum(axis=1))
    abs_w = np.arange(100, 116, dtype=np.int64)  # padding (code 0) must not count although abs_w[0] != 0
    want = np.where(codes != 0, abs_w[codes], 0).sum(axis=1)
    np.testing.assert_array_equal(layout_build.row_abs_sums(mat.entries, mat.ptr, n_pe, m, abs_w), want)


def test_next_entry_walks_a_column_slice():
    # one PE's slice: an entry 2 rows down, padding (16 rows), then an entry right after
    local, walked = -1, []
    for b in (2 << 4 | 5, 15 << 4 | 0, 0 << 4 | 9):
        local, v = encode.next_entry(local, np.uint8(b))
        walked.append((int(local), int(v)))
    assert walked == [(2, 5), (18, 0), (19, 9)]
