"""CLI input fuzzing: mutated ``.npy`` / ``.npz`` files for ``eie run MODEL -i FILE`` (issue 18): forged
headers (shapes past the data, huge, negative; object, string, void, complex, datetime dtypes), truncation,
bit flips, and zip archives with odd member names, many members, forged sizes and a deflate bomb."""

from __future__ import annotations

import functools
import struct

import numpy as np
from hypothesis import strategies as st

from hostile_values import BIG_INTS


@functools.lru_cache(maxsize=1)
def _bomb() -> bytes:
    return _npy("<f4", False, "(%d, 12)" % (1 << 20), bytes(48 << 20))


# ------------------------------------------------------------- CLI input arrays
def _npy(descr: str, fortran: bool, shape, data: bytes) -> bytes:
    head = "{'descr': %r, 'fortran_order': %s, 'shape': %s, }" % (descr, fortran, shape)
    head = head.encode("latin1")
    head += b" " * (-(len(head) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head)) + head + data


@st.composite
def input_mutants(draw):
    """One mutated CLI input for ``eie run -i``: (bytes, ".npy" or ".npz", description). The model it is given
    to (``input_model``) takes ``x`` of shape (batch, 12) float32."""
    import io
    import zipfile

    good = np.random.default_rng(3).standard_normal((2, 12)).astype(np.float32)
    shapes = st.one_of(st.sampled_from(["(2, 12)", "(12,)", "()", "(0, 12)", "(2**40, 12)", "(-1, 12)",
                                        "(1099511627776, 12)", "(2, 12, 1)", "(3, 12)", "(2, 2**62)", "(%d,)" % 2**63,
                                        "(2, 12", "[2, 12]", "(2.5, 12)", "None", "(2, 'a')"]),
                       st.tuples(st.sampled_from(BIG_INTS + [2, 12]), st.just(12)).map(str))
    descrs = st.sampled_from(["<f4", "<f8", ">f4", "<f2", "|O", "<U4", "|V8", "<c8", "|b1", "<i8", "<M8[s]", "f4", "zz"])

    def one_npy():
        how = draw(st.sampled_from(["header", "header", "truncate", "extend", "flip", "magic"]))
        data = good.tobytes()
        if how == "header":
            descr, shape = draw(descrs), draw(shapes)
            return _npy(descr, draw(st.booleans()), shape, data[:draw(st.integers(0, len(data) * 2))] if draw(st.booleans()) else data), f"npy header {descr} {shape}"
        raw = bytearray(_npy("<f4", False, "(2, 12)", data))
        if how == "truncate":
            return bytes(raw[:draw(st.integers(0, len(raw) - 1))]), "npy truncated"
        if how == "extend":
            return bytes(raw) + bytes(draw(st.integers(1, 4096))), "npy extended"
        if how == "flip":
            for _ in range(draw(st.integers(1, 8))):
                pos = draw(st.integers(0, len(raw) - 1))
                raw[pos] ^= 1 << draw(st.integers(0, 7))
            return bytes(raw), "npy bit flips"
        raw[:6] = draw(st.sampled_from([b"PK\x03\x04\x00\x00", b"\x93NUMPZ", b"\x00" * 6]))
        return bytes(raw), "npy magic"

    if draw(st.booleans()):
        raw, desc = one_npy()
        return raw, ".npy", desc
    buf = io.BytesIO()
    compression = draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
    how = draw(st.sampled_from(["member", "member", "names", "many", "size", "truncate", "bomb"]))
    with zipfile.ZipFile(buf, "w", compression) as z:
        if how == "member":
            raw, desc = one_npy()
            z.writestr(draw(st.sampled_from(["x.npy", "x", "y.npy", "../x.npy", "x.npy/"])), raw)
        elif how == "names":
            for name in draw(st.lists(st.sampled_from(["x.npy", "x", "y.npy", "", "x.npy.npy", "\u00e9.npy"]), min_size=1, max_size=3)):
                z.writestr(name or "_", _npy("<f4", False, "(2, 12)", good.tobytes()))
            desc = "npz names"
        elif how == "many":
            for j in range(draw(st.integers(2, 60))):
                z.writestr(f"m{j}.npy", _npy("<f4", False, "(1,)", b"\0\0\0\0"))
            z.writestr("x.npy", _npy("<f4", False, "(2, 12)", good.tobytes()))
            desc = "npz many members"
        elif how == "bomb":  # 48 MB of zeros deflated to ~48 KB
            z.writestr("x.npy", _bomb(), compress_type=zipfile.ZIP_DEFLATED)
            desc = "npz member inflating to 48 MB, shape (2**20, 12)"
        else:
            z.writestr("x.npy", _npy("<f4", False, "(2, 12)", good.tobytes()))
            desc = "npz " + how
    raw = bytearray(buf.getvalue())
    if how == "size":  # the central directory's uncompressed size of the member: huge
        cd = raw.rfind(b"PK\x01\x02")
        raw[cd + 24:cd + 28] = struct.pack("<I", draw(st.sampled_from([0xFFFFFFFF, 2**31, 0, 1, 10**9])))
    elif how == "truncate":
        raw = raw[:draw(st.integers(0, len(raw) - 1))]
    return bytes(raw), ".npz", desc


def input_model(path) -> None:
    """The graph model CLI input mutants are fed to: the ONNX MLP seed, converted (input ``x``: (batch, 12))."""
    from eie_runtime.model_file import save
    from eie_runtime.onnx import convert
    from onnx_mutators import onnx_seeds

    save(convert(onnx_seeds()["mlp"].SerializeToString(), density=0.5, n_pe=4), path)
