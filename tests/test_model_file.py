import json
import struct
import subprocess
import sys

import numpy as np
import pytest

import eie_runtime as eie
from eie_runtime import EIEFormatError, FixedPointParams
from eie_runtime.model_file import encode_model_file


def two_layers():
    rng = np.random.default_rng(0)
    l1 = eie.compress_matrix(rng.normal(size=(64, 48)).astype(np.float32), density=0.2, n_pe=8,
                             bias=rng.normal(size=64).astype(np.float32), activation="relu", name="fc1")
    l2 = eie.compress_matrix(rng.normal(size=(10, 64)).astype(np.float32), density=0.3, bits=3, n_pe=4, name="fc2")
    l1.fixed = FixedPointParams(10, 12, 8)
    return l1, l2


def test_round_trip_layer_and_list(tmp_path):
    l1, l2 = two_layers()
    eie.save(l1, tmp_path / "one.eie")
    back = eie.load(tmp_path / "one.eie")
    assert isinstance(back, eie.EIELinear)
    assert back.name == "fc1" and back.activation == "relu" and back.fixed == l1.fixed
    assert np.array_equal(back.matrix.entries, l1.matrix.entries)
    assert np.array_equal(back.matrix.ptr, l1.matrix.ptr)
    assert np.array_equal(back.bias, l1.bias)
    x = np.abs(np.random.default_rng(1).normal(size=(3, 48))).astype(np.float32)
    assert np.array_equal(back(x), l1(x))
    assert np.array_equal(back(x, mode="fixed16"), l1(x, mode="fixed16"))

    eie.save([l1, l2], tmp_path / "two.eie")
    layers = eie.load(tmp_path / "two.eie")
    assert [l.name for l in layers] == ["fc1", "fc2"]
    assert layers[1].bias is None and layers[1].matrix.bits == 3


def rewrite_header(data: bytes, edit) -> bytes:
    n = struct.unpack("<Q", data[:8])[0]
    st = json.loads(data[8:8 + n])
    header = json.loads(st["__metadata__"]["eie"])
    edit(header, st)
    st["__metadata__"]["eie"] = json.dumps(header)
    raw = json.dumps(st).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    return struct.pack("<Q", len(raw)) + raw + data[8 + n:]


def set_in(path, value):
    def edit(h, st):
        target = h
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return edit


@pytest.mark.parametrize("edit, message", [
    (set_in(["version"], 99), "version 99"),
    (set_in(["format"], "other"), "format"),
    (set_in(["layers", 0, "shape"], [64, 47]), "ptr"),
    (set_in(["layers", 0, "shape"], [63, 48]), "bias"),
    (set_in(["layers", 0, "n_pe"], 7), "ptr"),
    (set_in(["layers", 0, "bits"], 5), "bits"),
    (set_in(["layers", 0, "activation"], "gelu"), "activation"),
    (set_in(["layers", 0, "fixed"], {"in_frac": 0, "w_frac": 0, "out_frac": 9}), "shift"),
    (set_in(["layers", 0, "shape"], [1 << 40, 48]), "outside"),
    (set_in(["kind"], "mystery"), "unknown model kind"),
])
def test_header_corruption_is_named(tmp_path, edit, message):
    l1, _ = two_layers()
    data = rewrite_header(encode_model_file([l1], kind="layer"), edit)
    p = tmp_path / "bad.eie"
    p.write_bytes(data)
    with pytest.raises(EIEFormatError, match=message):
        eie.load(p)


def test_pointer_out_of_range_is_named(tmp_path):
    l1, _ = two_layers()
    l1.matrix.ptr[2, 5] = 10**6  # breaks monotonicity and bounds
    data = encode_model_file([l1], kind="layer")
    p = tmp_path / "ptr.eie"
    p.write_bytes(data)
    with pytest.raises(EIEFormatError, match=r"layer 0 \('fc1'\).*ptr"):
        eie.load(p)


def test_truncated_and_garbage_files(tmp_path):
    l1, _ = two_layers()
    data = encode_model_file([l1], kind="layer")
    for cut in (0, 5, 8, 100, len(data) // 2, len(data) - 1):
        p = tmp_path / f"cut{cut}.eie"
        p.write_bytes(data[:cut])
        with pytest.raises(EIEFormatError):
            eie.load(p)
    p = tmp_path / "garbage.eie"
    p.write_bytes(b"\x00" * 8 + b"hello world")
    with pytest.raises(EIEFormatError):
        eie.load(p)


def test_bit_flips_never_crash(tmp_path):
    # each flipped file loads in a child process: a crash would show as a signal
    l1, _ = two_layers()
    data = bytearray(encode_model_file([l1], kind="layer"))
    rng = np.random.default_rng(0)
    paths = []
    for i in range(40):
        d = bytearray(data)
        for pos in rng.integers(0, len(d), 3):
            d[pos] ^= 1 << int(rng.integers(0, 8))
        p = tmp_path / f"flip{i}.eie"
        p.write_bytes(bytes(d))
        paths.append(str(p))
    code = (
        "import sys, numpy as np, eie_runtime as eie\n"
        "for p in sys.argv[1:]:\n"
        "    try:\n"
        "        l = eie.load(p)\n"
        "        l(np.ones(l.in_features, np.float32))\n"
        "    except eie.EIEError:\n"
        "        pass\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code, *paths], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def test_save_rejects_unknown_objects(tmp_path):
    with pytest.raises(EIEFormatError, match="cannot save"):
        eie.save({"a": 1}, tmp_path / "x.eie")
    assert not (tmp_path / "x.eie").exists()


def test_cli_inspect(tmp_path):
    l1, l2 = two_layers()
    eie.save([l1, l2], tmp_path / "m.eie")
    r = subprocess.run([sys.executable, "-m", "eie_runtime.cli", "inspect", str(tmp_path / "m.eie"), "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)["layers"]
    assert [row["layer"] for row in rows] == ["fc1", "fc2"]
    assert rows[0]["stored"] == l1.matrix.stored_entries and rows[0]["ptr16"] == "yes"
    (tmp_path / "bad.eie").write_bytes(b"nonsense")
    r = subprocess.run([sys.executable, "-m", "eie_runtime.cli", "inspect", str(tmp_path / "bad.eie")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "error" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("content", [b"", b"\x93NUMPY", b"PK\x03\x04broken", b"not numpy at all"])
def test_cli_input_files_that_are_not_arrays(tmp_path, content):
    from eie_runtime.array_files import load_array_file

    bad = tmp_path / "x.npy"
    bad.write_bytes(content)
    with pytest.raises(eie.EIEInputError, match="not a readable"):
        load_array_file(str(bad), "--input")
    l1, _ = two_layers()
    eie.save(l1, tmp_path / "m.eie")
    r = subprocess.run([sys.executable, "-m", "eie_runtime.cli", "simulate", str(tmp_path / "m.eie"), "--input", str(bad)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "not a readable" in r.stderr and "Traceback" not in r.stderr


def test_file_kinds_come_from_a_registry(tmp_path, monkeypatch):
    from eie_runtime import model_file

    layer, _ = two_layers()
    path = tmp_path / "custom.eie"
    model_file.write_model_file(path, [layer], kind="my-front-end", meta={"answer": 42})
    with pytest.raises(EIEFormatError, match=r"unknown model kind 'my-front-end' \(known: layer, layers, .*graph"):
        eie.load(path)
    monkeypatch.setitem(model_file._KIND_LOADERS, "my-front-end", lambda mf: ("mine", mf.meta["answer"]))
    assert eie.load(path) == ("mine", 42)
    with pytest.raises(ValueError, match="the core's own"):
        model_file.register_kind("layer", print)


def test_cli_cache_lists_the_current_key(capsys):
    from eie_runtime import cli
    from eie_runtime.kernels import jit

    assert cli.main(["cache"]) == 0
    assert jit.cache_key() in capsys.readouterr().out
