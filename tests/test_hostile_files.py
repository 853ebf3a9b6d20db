"""Special files, leftovers, forged sizes and files the reader would refuse: each refused with an EIEError,
before anything is read, written or allocated (SECURITY.md)."""

import io
import json
import os
import signal
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import eie_runtime as eie
from eie_runtime import array_files, model_file
from eie_runtime.atomic import atomic_write_bytes


def small_layer(n_pe=4):
    w = np.random.default_rng(0).normal(size=(12, 10)).astype(np.float32)
    return eie.compress_matrix(w, density=0.5, n_pe=n_pe, name="fc")


# ------------------------------------------------------------------ special files
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_save_refuses_fifos_devices_and_directories_without_replacing_them(tmp_path):
    fifo = tmp_path / "pipe.eie"
    os.mkfifo(fifo)
    to_devnull = tmp_path / "null.eie"
    to_devnull.symlink_to("/dev/null")
    for target in (fifo, to_devnull, tmp_path):
        with pytest.raises(eie.EIEInputError, match="not a regular file"):
            eie.save(small_layer(), target)
    assert fifo.is_fifo() and to_devnull.is_symlink() and os.path.realpath(to_devnull) == "/dev/null"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null.eie", "pipe.eie"]  # nothing written beside them


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_load_refuses_special_files_without_blocking_or_reading(tmp_path):
    fifo = tmp_path / "pipe.eie"
    os.mkfifo(fifo)  # opening it for reading would block until a writer came: it must not
    zero = tmp_path / "zero.eie"
    zero.symlink_to("/dev/zero")  # reading it never ends: it must not be read
    for path in (fifo, zero, tmp_path):
        with pytest.raises(eie.EIEFormatError, match="not a regular file|is a directory"):
            eie.load(path)


def test_not_an_eie_file_is_named_so(tmp_path):
    onnx_like = tmp_path / "model.onnx"
    onnx_like.write_bytes(b"\x08\x07\x12\x07pytorch\x1a\x032.1" + bytes(64))
    with pytest.raises(eie.EIEFormatError, match=r"not an \.eie file"):
        eie.load(onnx_like)


# ------------------------------------------------------------------- leftovers
def test_a_killed_save_leaves_a_temporary_file_that_the_next_save_removes(tmp_path):
    target = tmp_path / "m.eie"
    eie.save(small_layer(), target)
    child = subprocess.Popen([sys.executable, "-c", f"""
import sys, time
from eie_runtime.atomic import atomic_open
with atomic_open({str(target)!r}) as f:
    f.write(b"half a file" * 1000)
    f.flush()
    print("ready", flush=True)
    time.sleep(60)
"""], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1 and f".{child.pid}." in leftovers[0]
    assert isinstance(eie.load(target), eie.EIELinear)  # the kill left the old file whole

    live = tmp_path / f".m.eie.{os.getppid()}.keep.tmp"  # a writer that is still running: left alone
    live.write_bytes(b"busy")
    eie.save(small_layer(), target)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m.eie", live.name])


# ------------------------------------------------ what the writer writes, the reader reads
def test_save_refuses_what_load_would_refuse(tmp_path, monkeypatch):
    layer = small_layer(n_pe=8)
    monkeypatch.setitem(model_file.LIMITS, "max_pe", 4)
    with pytest.raises(eie.EIEFormatError, match=r"n_pe = 8 is over LIMITS\['max_pe'\] = 4"):
        eie.save(layer, tmp_path / "m.eie")
    assert not list(tmp_path.iterdir())
    monkeypatch.setitem(model_file.LIMITS, "max_pe", 8)
    eie.save(layer, tmp_path / "m.eie")
    assert eie.load(tmp_path / "m.eie").matrix.n_pe == 8


@pytest.mark.parametrize("dtype", [["U8"], {"U8": 1}, 1, None, True, 1.5, ""])
def test_table_dtypes_of_every_json_type_are_refused(tmp_path, dtype):
    path = tmp_path / "m.eie"
    eie.save(small_layer(), path)
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    table = json.loads(data[8:8 + n])
    table["layers.0.entries"]["dtype"] = dtype
    raw = json.dumps(table).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n:])
    with pytest.raises(eie.EIEFormatError, match="field 'dtype'"):
        eie.load(path)


# --------------------------------------------------------------- the CLI's input arrays
def _npy_declaring(shape) -> bytes:
    header = np.lib.format.header_data_from_array_1_0(np.zeros(1, np.float32))
    header["shape"] = shape
    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(f, header)
    return f.getvalue() + bytes(16)


def test_an_npy_declaring_a_huge_shape_is_refused_before_allocating(tmp_path):
    path = tmp_path / "x.npy"
    path.write_bytes(_npy_declaring((1 << 40,)))  # 4 TiB declared, 16 bytes present
    with pytest.raises(eie.EIEInputError, match="declares 4398046511104 bytes of data but holds only 16"):
        array_files.load_array_file(str(path), "--input")


def test_an_npz_that_inflates_past_the_limit_is_refused_before_inflating(tmp_path, monkeypatch):
    path = tmp_path / "x.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        buf = io.BytesIO()
        np.save(buf, np.zeros(4_000_000, np.uint8))
        z.writestr("x.npy", buf.getvalue())
    assert path.stat().st_size < 40_000
    monkeypatch.setitem(array_files.INPUT_LIMITS, "max_input_bytes", 1_000_000)
    with pytest.raises(eie.EIEInputError, match=r"inflate to \d+ bytes, over INPUT_LIMITS\['max_input_bytes'\]"):
        array_files.load_array_file(str(path), "--input")
    monkeypatch.setitem(array_files.INPUT_LIMITS, "max_input_bytes", 8_000_000)
    assert array_files.load_array_file(str(path), "--input")["x"].shape == (4_000_000,)


def test_an_npz_member_with_a_forged_shape_is_refused(tmp_path):
    path = tmp_path / "x.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", _npy_declaring((1 << 30, 1 << 10)))
    with pytest.raises(eie.EIEInputError, match=r"\[x\]: declares"):
        array_files.load_array_file(str(path), "--input")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_input_special_files_are_refused(tmp_path):
    fifo = tmp_path / "x.npy"
    os.mkfifo(fifo)
    for path in (fifo, "/dev/zero", tmp_path):
        with pytest.raises(eie.EIEInputError, match="not a regular file|is a directory"):
            array_files.load_array_file(str(path), "--input")


def test_atomic_writes_still_replace_regular_files_and_follow_symlinks_to_them(tmp_path):
    target = tmp_path / "real.bin"
    target.write_bytes(b"old")
    link = tmp_path / "link.bin"
    link.symlink_to(target)
    atomic_write_bytes(link, b"new")
    assert link.is_symlink() and target.read_bytes() == b"new"
