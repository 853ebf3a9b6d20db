"""Small layers: one thread where a parallel launch costs more than the work (same results bit for
bit), and a per-layer PE count (n_pe="auto") so a small layer's pointers do not dwarf its weights."""

import numpy as np
import pytest

from eie_runtime.converters.compress import compress_matrix
from eie_runtime.execution import ExecLayout
from eie_runtime.execution.choice import SERIAL_MAX_NNZ, Chooser
from eie_runtime.format import InterleavedCSC
from eie_runtime.paper_layers import make_paper_layer


def _matrix(m, k, density, n_pe=8, seed=0):
    rng = np.random.default_rng(seed)
    codes = (rng.random((m, k)) < density) * rng.integers(1, 16, (m, k))
    return InterleavedCSC.from_codes(codes.astype(np.uint8), np.linspace(-1, 1, 16).astype(np.float32) * (
        np.arange(16) > 0), n_pe)


@pytest.mark.parametrize("batch", [None, 3, 20])
def test_serial_small_layer_equals_the_parallel_run(batch):
    ex = ExecLayout(_matrix(40, 300, 0.2))
    assert ex.serial and ex.rows.nnz <= SERIAL_MAX_NNZ
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300,) if batch is None else (batch, 300)).astype(np.float32)
    x[..., ::3] = 0
    bias = rng.normal(size=40).astype(np.float32)
    np.testing.assert_array_equal(ex.run_float32(x, bias, True), Chooser.run_float32(ex, x, bias, True))
    xq = (x * 1000).astype(np.int16)
    bq = (bias * 1000).astype(np.int16)
    np.testing.assert_array_equal(ex.run_fixed16(xq, 12, bq, 9, False), Chooser.run_fixed16(ex, xq, 12, bq, 9, False))


def test_paper_layers_stay_parallel():
    layer = make_paper_layer("ntwe", n_pe=64, seed=0)  # the smallest of Table III's nine
    assert not layer.execution_layout().serial


def test_auto_pe_count():
    rng = np.random.default_rng(2)
    small = compress_matrix(rng.normal(size=(10, 512)).astype(np.float32), density=0.1, n_pe="auto")
    fixed = compress_matrix(rng.normal(size=(10, 512)).astype(np.float32), density=0.1, n_pe=64)
    assert small.matrix.n_pe == 1 and fixed.matrix.n_pe == 64
    # the hardware's 16-bit pointers: 64 PEs' worth is 128x the entries, one PE's about twice
    ptr_bytes = lambda l: 2 * l.matrix.ptr.size  # noqa: E731
    assert ptr_bytes(fixed) > 100 * small.matrix.stored_entries
    assert ptr_bytes(small) <= 2 * small.matrix.stored_entries + 2
    big = compress_matrix(rng.normal(size=(600, 64)).astype(np.float32), density=0.1, n_pe="auto")
    assert big.matrix.n_pe == 64
    np.testing.assert_array_equal(small.dense(), small.matrix.reencode(64).toarray())
    from eie_runtime.errors import EIEInputError
    with pytest.raises(EIEInputError, match="n_pe"):
        compress_matrix(np.ones((4, 4), np.float32), density=0.5, n_pe="many")
