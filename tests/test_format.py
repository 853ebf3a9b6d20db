import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from eie_runtime import EIEFormatError, InterleavedCSC

import layer_data
from reference import encode


def codebook(bits=4, seed=0):
    cb = np.zeros(1 << bits, dtype=np.float32)
    cb[1:] = np.sort(np.random.default_rng(seed).normal(size=(1 << bits) - 1)).astype(np.float32)
    return cb


def test_paper_example_column():
    # Section III-B: [0,0,1,2, 0 x 18, 3] -> v=[1,2,0,3], z=[2,0,15,2]
    col = np.array([0, 0, 1, 2] + [0] * 18 + [3], dtype=np.uint8)[:, None]
    m = InterleavedCSC.from_codes(col, codebook(), n_pe=1)
    assert list(m.entries & 0xF) == [1, 2, 0, 3]
    assert list(m.entries >> 4) == [2, 0, 15, 2]
    assert m.ptr.tolist() == [[0, 4]]
    assert m.padding_entries == 1 and m.nnz == 3 and m.stored_entries == 4


def test_figure2_row_interleaving():
    # Section III-C walk-through: 16 x 8 matrix on 4 PEs; column 2 non-zero in rows 0, 12, 2, 14
    codes = np.zeros((16, 8), dtype=np.uint8)
    for i, r in enumerate((0, 12, 2, 14)):
        codes[r, 2] = i + 1
    m = InterleavedCSC.from_codes(codes, codebook(), n_pe=4)

    def column_rows(pe, j):
        rows, local = [], -1
        for b in m.entries[m.ptr[pe, j]:m.ptr[pe, j + 1]].tolist():
            local += (b >> 4) + 1
            if b & 0xF:
                rows.append(local * 4 + pe)
        return rows

    assert column_rows(0, 2) == [0, 12]  # PE0 holds W0,2 and W12,2
    assert column_rows(1, 2) == []  # PE1 nothing
    assert column_rows(2, 2) == [2, 14]
    assert column_rows(3, 2) == []
    # PE0 holds rows 0, 4, 8, 12: local rows 0 and 3 -> z = 0 then 2
    pe0 = m.entries[m.ptr[0, 2]:m.ptr[0, 3]]
    assert list(pe0 >> 4) == [0, 2]


@st.composite
def code_matrices(draw):
    bits = draw(st.integers(1, 4))
    codes = draw(layer_data.codes(st.tuples(st.integers(0, 70), st.integers(0, 12)), bits))
    n_pe = draw(st.sampled_from([1, 2, 3, 4, 7, 16, 64, 100, 256]))
    return codes, bits, n_pe


@settings(max_examples=150)
@given(code_matrices())
def test_round_trip_and_reference_layout(case):
    codes, bits, n_pe = case
    m = InterleavedCSC.from_codes(codes, codebook(bits), n_pe)
    m.check_format(full_check=True)
    assert np.array_equal(m.tocodes(), codes)
    assert np.array_equal(m.toarray(), codebook(bits)[codes])
    entries, ptr = encode(codes, n_pe)  # independent reference encoder
    assert np.array_equal(m.entries, entries)
    assert np.array_equal(m.ptr, ptr)
    assert m.nnz == np.count_nonzero(codes)


def test_long_zero_runs_need_padding():
    codes = np.zeros((200, 3), dtype=np.uint8)
    codes[199, 0] = 5  # 199 zeros before it on one PE: 12 paddings (16 each) + z=7
    codes[16, 1] = 1  # exactly 16 zeros: one padding then z=0
    codes[15, 2] = 1  # 15 zeros fit in z
    m = InterleavedCSC.from_codes(codes, codebook(), 1)
    assert m.column_entries()[0].tolist() == [13, 2, 1]
    assert m.padding_entries == 13
    assert np.array_equal(m.tocodes(), codes)


def test_more_pes_than_rows_and_empty():
    codes = np.array([[1, 0, 2]], dtype=np.uint8)
    m = InterleavedCSC.from_codes(codes, codebook(), 8)
    assert np.array_equal(m.tocodes(), codes)
    assert m.pe_entries().tolist() == [2, 0, 0, 0, 0, 0, 0, 0]
    empty = InterleavedCSC.from_codes(np.zeros((0, 5), dtype=np.uint8), codebook(), 4)
    assert empty.stored_entries == 0 and empty.tocodes().shape == (0, 5)


def test_stats_and_pointer_fit():
    rng = np.random.default_rng(1)
    codes = np.where(rng.random((64, 300)) < 0.5, 3, 0).astype(np.uint8)
    m = InterleavedCSC.from_codes(codes, codebook(), 1)
    s = m.stats()
    assert s.nnz == np.count_nonzero(codes)
    assert s.nbytes == m.stored_entries + 2 * m.ptr.size + 4 * 16
    assert s.compression_ratio == pytest.approx(4 * 64 * 300 / s.nbytes)
    assert s.fits_pointer_bits  # ~9600 entries < 65536
    big = InterleavedCSC.from_codes(np.ones((300, 300), dtype=np.uint8), codebook(), 1)
    assert not big.fits_pointer_bits()  # 90000 entries on one PE
    assert big.reencode(2).fits_pointer_bits()


def _valid():
    rng = np.random.default_rng(3)
    codes = np.where(rng.random((40, 9)) < 0.2, rng.integers(1, 16, (40, 9)), 0).astype(np.uint8)
    return InterleavedCSC.from_codes(codes, codebook(), 4)


@pytest.mark.parametrize("mutate, message", [
    (lambda m: m.ptr.__setitem__((1, 3), m.ptr[1, 2] - 1), "monotonic"),
    (lambda m: m.ptr.__setitem__((3, -1), m.ptr[3, -1] + 5), "entries"),
    (lambda m: m.entries.__setitem__(0, 0x05), None),  # may be fine or a long run: only must not crash
    (lambda m: m.entries.__setitem__(0, 0x20), "padding"),
])
def test_check_format_catches_corruption(mutate, message):
    m = _valid()
    mutate(m)
    if message is None:
        try:
            m.check_format(full_check=True)
        except EIEFormatError:
            pass
        return
    with pytest.raises(EIEFormatError, match=message):
        m.check_format(full_check=True)


def test_check_format_rows_out_of_range():
    m = _valid()
    m.entries[m.ptr[0, 0]:m.ptr[0, -1]] |= 0xF0  # every z = 15 runs past the 10 local rows
    with pytest.raises(EIEFormatError, match="runs past"):
        m.check_format()


def test_codebook_index_beyond_small_codebook():
    codes = np.array([[1, 0], [0, 1]], dtype=np.uint8)
    m = InterleavedCSC.from_codes(codes, codebook(bits=1), 1)
    m.entries[0] = 0x03
    with pytest.raises(EIEFormatError, match="beyond the codebook"):
        m.check_format()


@pytest.mark.parametrize("codes, cb, n_pe, message", [
    (np.zeros((3,), np.uint8), codebook(), 1, "2-D"),
    (np.zeros((3, 3), np.float32), codebook(), 1, "integer"),
    (np.full((3, 3), 16, np.uint8), codebook(), 1, r"\[0, 15\]"),
    (np.zeros((3, 3), np.uint8), codebook(), 0, "n_pe"),
    (np.zeros((3, 3), np.uint8), np.ones(16, np.float32), 1, r"codebook\[0\]"),
    (np.zeros((3, 3), np.uint8), np.zeros(5, np.float32), 1, "2\\*\\*bits"),
])
def test_from_codes_rejects_bad_input(codes, cb, n_pe, message):
    with pytest.raises(EIEFormatError, match=message):
        InterleavedCSC.from_codes(codes, cb, n_pe)
