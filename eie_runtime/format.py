"""EIE's interleaved, relative-indexed CSC format (paper Section III-B/C; docs/design.md).

One class, :class:`InterleavedCSC`, in scipy.sparse's manner: built from a
matrix of codebook indices plus a codebook, decoded with ``toarray()`` /
``tocodes()``, validated with ``check_format(full_check=True)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import EIEFormatError
from .kernels import encode as _enc
from .kernels import kernel_section

POINTER_BITS = 16  # EIE's pointers are 16 bits (Section IV, "Pointer Read Unit")
MAX_BITS = 4  # one nibble per codebook index


@dataclass(frozen=True)
class MatrixStats:
    """What ``eie inspect`` reports for one matrix."""

    shape: tuple[int, int]
    n_pe: int
    density: float  # kept weights / (M * K)
    nnz: int  # kept (non-zero) weights
    stored_entries: int  # nnz + padding
    padding_entries: int
    nbytes: int  # entries (1 B each) + pointers at 16 bits + codebook
    compression_ratio: float  # dense float32 bytes / nbytes
    max_pe_entries: int
    fits_pointer_bits: bool


class InterleavedCSC:
    """One compressed weight matrix of shape ``(M, K)`` on ``n_pe`` PEs.

    Attributes
    ----------
    shape : (M, K)
        M outputs (rows), K inputs (columns).
    n_pe : int
        Row ``i`` lives on PE ``i % n_pe`` at local row ``i // n_pe``.
    entries : uint8 array
        Every PE's entries concatenated, PE 0 first, each PE column by column.
        Low nibble: codebook index ``v``; high nibble: zero run ``z``.
    ptr : int64 array (n_pe, K + 1)
        Absolute offsets into ``entries``: PE ``p``'s entries of column ``j``
        are ``entries[ptr[p, j]:ptr[p, j + 1]]`` (padding included).
    codebook : float32 array (2**bits,)
        Shared weights; ``codebook[0] == 0.0`` (index 0 is padding/pruned).
    """

    def __init__(self, shape, n_pe, entries, ptr, codebook, *, check=True, name=None):
        self.shape = (int(shape[0]), int(shape[1]))
        self.n_pe = int(n_pe)
        self.entries = entries
        self.ptr = ptr
        self.codebook = codebook
        self.name = name
        if check:
            self.check_format(full_check=True)

    # ------------------------------------------------------------------ build
    @classmethod
    def from_codes(cls, codes, codebook, n_pe: int, *, name=None) -> "InterleavedCSC":
        """Encode a matrix of codebook indices (0 = pruned) for ``n_pe`` PEs."""
        codes = np.asarray(codes)
        codebook = np.asarray(codebook)
        where = f"layer {name!r}: " if name else ""
        if codes.ndim != 2:
            raise EIEFormatError(f"{where}codes must be 2-D (M, K), got shape {codes.shape}")
        if codes.dtype.kind not in "ui":
            raise EIEFormatError(f"{where}codes must be an integer array, got {codes.dtype}")
        if isinstance(n_pe, bool) or not isinstance(n_pe, (int, np.integer)) or n_pe < 1:
            raise EIEFormatError(f"{where}n_pe must be an integer >= 1, got {n_pe!r}")
        _check_codebook(codebook, where)
        if codes.size and (codes.min() < 0 or codes.max() >= len(codebook)):
            raise EIEFormatError(
                f"{where}codes must lie in [0, {len(codebook) - 1}] for a codebook of "
                f"{len(codebook)} entries, got range [{codes.min()}, {codes.max()}]"
            )
        codes = np.ascontiguousarray(codes, dtype=np.uint8)
        m, k = codes.shape
        with kernel_section():  # parallel kernels: serialized if Numba runs on workqueue
            counts = _enc.count_entries(codes, int(n_pe))
        ptr = np.zeros((n_pe, k + 1), dtype=np.int64)
        flat = np.cumsum(counts.ravel())
        starts = np.concatenate(([0], flat[:-1])).reshape(n_pe, k) if counts.size else counts
        ptr[:, :k] = starts
        # the end of PE p's last column is the start of PE p+1's first one
        pe_totals = counts.sum(axis=1)
        ptr[:, k] = np.cumsum(pe_totals)
        entries = np.zeros(int(pe_totals.sum()), dtype=np.uint8)
        with kernel_section():
            _enc.fill_entries(codes, int(n_pe), ptr, entries)
        return cls((m, k), n_pe, entries, ptr, codebook.astype(np.float32), check=False, name=name)

    # ----------------------------------------------------------------- decode
    def tocodes(self) -> np.ndarray:
        """The (M, K) uint8 matrix of codebook indices, 0 where pruned."""
        out = np.zeros(self.shape, dtype=np.uint8)
        with kernel_section():
            _enc.decode_codes(self.entries, self.ptr, self.shape[0], self.n_pe, out)
        return out

    def toarray(self) -> np.ndarray:
        """The decoded dense float32 weight matrix ``codebook[codes]``."""
        return self.codebook[self.tocodes()]

    def reencode(self, n_pe: int) -> "InterleavedCSC":
        """The same matrix laid out for a different number of PEs."""
        return InterleavedCSC.from_codes(self.tocodes(), self.codebook, n_pe, name=self.name)

    # -------------------------------------------------------------- validate
    def check_format(self, full_check: bool = True) -> None:
        """Check every invariant a kernel relies on; raise :class:`EIEFormatError`.

        The cheap checks (dtypes, shapes, pointer bounds and monotonicity) always
        run; ``full_check`` also walks every entry (codebook range, row bounds,
        canonical padding).
        """
        where = f"layer {self.name!r}: " if self.name else ""
        m, k = self.shape
        if m < 0 or k < 0:
            raise EIEFormatError(f"{where}shape must be non-negative, got {self.shape}")
        if self.n_pe < 1:
            raise EIEFormatError(f"{where}n_pe must be >= 1, got {self.n_pe}")
        for field, arr, kinds in (("entries", self.entries, "u"), ("ptr", self.ptr, "iu")):
            if not isinstance(arr, np.ndarray):
                raise EIEFormatError(f"{where}{field} must be a numpy array, got {type(arr).__name__}")
            if arr.dtype.kind not in kinds:
                raise EIEFormatError(f"{where}{field} has dtype {arr.dtype}, expected {'uint8' if field == 'entries' else 'an integer type'}")
        if self.entries.dtype != np.uint8 or self.entries.ndim != 1:
            raise EIEFormatError(f"{where}entries must be a 1-D uint8 array, got {self.entries.dtype} {self.entries.shape}")
        if self.ptr.shape != (self.n_pe, k + 1):
            raise EIEFormatError(f"{where}ptr has shape {self.ptr.shape}, expected (n_pe, K + 1) = {(self.n_pe, k + 1)}")
        if self.ptr.dtype != np.int64:
            self.ptr = self.ptr.astype(np.int64)
        self.entries = np.ascontiguousarray(self.entries)
        self.ptr = np.ascontiguousarray(self.ptr)
        _check_codebook(self.codebook, where)
        with np.errstate(over="ignore"):
            self.codebook = np.ascontiguousarray(self.codebook, dtype=np.float32)
        if not np.isfinite(self.codebook).all():  # e.g. float64 values beyond float32's range
            raise EIEFormatError(f"{where}codebook values overflow float32")
        ptr = self.ptr
        if ptr.size:
            if ptr[0, 0] != 0:
                raise EIEFormatError(f"{where}ptr[0, 0] must be 0, got {ptr[0, 0]}")
            # bounds first: with huge int64 values a difference could wrap around
            # and make a wild pointer look monotonic
            out = (ptr < 0) | (ptr > len(self.entries))
            if out.any():
                pe, j = np.argwhere(out)[0]
                raise EIEFormatError(f"{where}ptr[{pe}, {j}] = {ptr[pe, j]} is outside [0, {len(self.entries)}], the range of the {len(self.entries)} entries")
            back = ptr[:, 1:] < ptr[:, :-1]
            if back.any():
                pe, j = np.argwhere(back)[0]
                raise EIEFormatError(f"{where}ptr is not monotonic: PE {pe} column {j} starts at {ptr[pe, j]} but ends at {ptr[pe, j + 1]}")
            if self.n_pe > 1 and (ptr[1:, 0] != ptr[:-1, k]).any():
                pe = int(np.argmax(ptr[1:, 0] != ptr[:-1, k])) + 1
                raise EIEFormatError(f"{where}ptr: PE {pe} must start where PE {pe - 1} ends ({ptr[pe - 1, k]}), got {ptr[pe, 0]}")
            if ptr[-1, k] != len(self.entries):
                raise EIEFormatError(f"{where}ptr ends at {ptr[-1, k]} but there are {len(self.entries)} entries")
        elif len(self.entries):
            raise EIEFormatError(f"{where}{len(self.entries)} entries but no pointers")
        if full_check and len(self.entries):
            kind, pe, j, e = _enc.find_entry_error(self.entries, ptr, m, self.n_pe, len(self.codebook))
            if kind == 1:
                raise EIEFormatError(f"{where}entries[{e}] (PE {pe}, column {j}) has codebook index {self.entries[e] & 15} beyond the codebook of {len(self.codebook)} entries")
            if kind == 2:
                raise EIEFormatError(f"{where}entries[{e}] (PE {pe}, column {j}) runs past the PE's {max(0, -(-(m - pe) // self.n_pe))} rows (zero runs too long)")
            if kind == 3:
                raise EIEFormatError(f"{where}entries[{e}] (PE {pe}, column {j}) has index 0 with z={self.entries[e] >> 4}: only padding (z=15) may have index 0")

    # ------------------------------------------------------------- reporting
    @property
    def bits(self) -> int:
        return int(np.log2(len(self.codebook)))

    @property
    def stored_entries(self) -> int:
        """Entries in storage, padding included (``nnz`` in scipy's sense)."""
        return int(len(self.entries))

    @property
    def padding_entries(self) -> int:
        return int(np.count_nonzero((self.entries & 0xF) == 0))

    @property
    def nnz(self) -> int:
        """Kept (non-zero) weights."""
        return self.stored_entries - self.padding_entries

    def pe_entries(self) -> np.ndarray:
        """Stored entries per PE, shape (n_pe,)."""
        return self.ptr[:, -1] - self.ptr[:, 0]

    def column_entries(self) -> np.ndarray:
        """Stored entries per (PE, column), shape (n_pe, K)."""
        return np.diff(self.ptr, axis=1)

    def fits_pointer_bits(self, bits: int = POINTER_BITS) -> bool:
        """Whether every PE's column pointers, counted from that PE's start, fit ``bits``."""
        return bool(self.pe_entries().max(initial=0) < (1 << bits))

    @property
    def nbytes(self) -> int:
        """Storage as the hardware holds it: 1 B per entry, 16-bit pointers, codebook."""
        return self.stored_entries + 2 * self.ptr.size + 4 * len(self.codebook)

    def stats(self) -> MatrixStats:
        m, k = self.shape
        dense = 4 * m * k
        return MatrixStats(
            shape=self.shape,
            n_pe=self.n_pe,
            density=self.nnz / max(1, m * k),
            nnz=self.nnz,
            stored_entries=self.stored_entries,
            padding_entries=self.padding_entries,
            nbytes=self.nbytes,
            compression_ratio=dense / max(1, self.nbytes),
            max_pe_entries=int(self.pe_entries().max(initial=0)),
            fits_pointer_bits=self.fits_pointer_bits(),
        )

    def __repr__(self) -> str:
        m, k = self.shape
        return (f"InterleavedCSC(shape=({m}, {k}), n_pe={self.n_pe}, nnz={self.nnz}, "
                f"padding={self.padding_entries}, bits={self.bits})")


def _check_codebook(codebook, where: str) -> None:
    if not isinstance(codebook, np.ndarray) or codebook.ndim != 1:
        raise EIEFormatError(f"{where}codebook must be a 1-D array")
    if codebook.dtype.kind != "f":
        raise EIEFormatError(f"{where}codebook must be floating point, got {codebook.dtype}")
    n = len(codebook)
    if n not in (2, 4, 8, 16):
        raise EIEFormatError(f"{where}codebook has {n} entries; expected 2**bits for bits in 1..{MAX_BITS}")
    if codebook[0] != 0.0:
        raise EIEFormatError(f"{where}codebook[0] must be 0.0 (index 0 is reserved for pruned/padding), got {codebook[0]}")
    if not np.isfinite(codebook).all():
        raise EIEFormatError(f"{where}codebook holds NaN or Inf")
