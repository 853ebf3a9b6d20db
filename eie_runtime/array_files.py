"""Reading users' ``.npy``/``.npz`` input files for the command line, at a cost bounded by the file.

A ``.npy`` header can declare any shape, and a ``.npz`` member can inflate a
thousandfold; numpy allocates what they declare before it notices the data
is missing. Here every declared size is checked against the bytes actually
present (``.npy``) or against ``INPUT_LIMITS`` (what ``.npz`` members inflate
to) before anything is allocated.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np

from .errors import EIEInputError
from .model_file import read_regular_file

#: Raise by assigning, e.g. ``eie_runtime.array_files.INPUT_LIMITS["max_input_bytes"] = 16 << 30``.
INPUT_LIMITS = {
    "max_input_bytes": 4 << 30,  # all arrays of one input file, once read
    "max_members": 4096,  # arrays in one .npz
}


def _npy_header(f, where: str) -> tuple[np.dtype, int]:
    """(dtype, data bytes) that a .npy stream declares; leaves ``f`` at the start of the data."""
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f".npy format version {version} (1.0 and 2.0 are read)")
    except Exception as exc:  # noqa: BLE001 - numpy's header parser raises ValueError, SyntaxError, tokenize.TokenError...
        raise EIEInputError(f"{where}: not a readable .npy array ({exc.__class__.__name__}: {exc})") from None
    if not all(isinstance(d, int) and d >= 0 for d in shape):
        raise EIEInputError(f"{where}: .npy shape {shape} must be non-negative integers")
    if dtype.hasobject:
        raise EIEInputError(f"{where}: holds Python objects (dtype {dtype}); only numeric arrays are read")
    nbytes = dtype.itemsize
    for d in shape:  # Python ints: no overflow
        nbytes *= d
    return dtype, nbytes


def _check_size(where: str, declared: int, present: int) -> None:
    if declared > present:
        raise EIEInputError(f"{where}: declares {declared} bytes of data but holds only {present} (truncated, or a "
                            "forged shape)")
    if declared > INPUT_LIMITS["max_input_bytes"]:
        raise EIEInputError(f"{where}: {declared} bytes, over INPUT_LIMITS['max_input_bytes'] = "
                            f"{INPUT_LIMITS['max_input_bytes']}")


def _load_npy(data: bytes, where: str) -> np.ndarray:
    f = io.BytesIO(data)
    _, nbytes = _npy_header(f, where)
    _check_size(where, nbytes, len(data) - f.tell())
    f.seek(0)
    try:
        return np.load(f, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:  # (the header was read and the size checked above)
        raise EIEInputError(f"{where}: not a readable .npy array ({exc.__class__.__name__}: {exc})") from None


def _load_npz(data: bytes, where: str) -> dict:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            if len(members) > INPUT_LIMITS["max_members"]:
                raise EIEInputError(f"{where}: {len(members)} arrays, over INPUT_LIMITS['max_members'] = "
                                    f"{INPUT_LIMITS['max_members']}")
            total = sum(m.file_size for m in members)
            if total > INPUT_LIMITS["max_input_bytes"]:
                raise EIEInputError(f"{where}: its arrays inflate to {total} bytes, over "
                                    f"INPUT_LIMITS['max_input_bytes'] = {INPUT_LIMITS['max_input_bytes']}")
            out = {}
            for m in members:
                name = m.filename[:-4] if m.filename.endswith(".npy") else m.filename
                with zf.open(m) as f:  # inflates at most m.file_size bytes (zipfile checks the declared size)
                    out[name] = _load_npy(f.read(), f"{where} [{name}]")
            return out
    except EIEInputError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, NotImplementedError) as exc:
        raise EIEInputError(f"{where}: not a readable .npz archive ({exc.__class__.__name__}: {exc})") from None


def load_array_file(path: str, what: str):
    """A ``.npy`` array, or a ``.npz`` as {name: array}; unreadable files raise :class:`EIEInputError`."""
    from .errors import EIEFormatError

    where = f"{what}: {path}"
    try:
        data = read_regular_file(path, ".npy/.npz file")
    except EIEFormatError as exc:
        raise EIEInputError(f"{what}: {exc}") from None
    if data[:6] == b"\x93NUMPY":
        return _load_npy(data, where)
    if data[:4] == b"PK\x03\x04" or data[:4] == b"PK\x05\x06":
        return _load_npz(data, where)
    raise EIEInputError(f"{where} is not a readable .npy/.npz file (neither format's magic bytes at its start)")
