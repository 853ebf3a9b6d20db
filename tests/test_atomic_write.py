"""Atomic writes: a process killed in the middle of a save leaves the old file or
the new one, never a torn one; a failed save leaves the old file; and no module
of the project writes a file except through ``eie_runtime.atomic``."""

import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import eie_runtime as eie
from eie_runtime.atomic import atomic_open, atomic_write_bytes
from eie_runtime.model_file import encode_model_file

ROOT = Path(__file__).resolve().parents[1]

# The child saves A and B in turn, forever, logging "begin"/"end" around each save.
# With SLOW=1 the temporary file is written in 64 KiB pieces with pauses, so that a
# kill lands, as it will for big models, while the file is partly written.
CHILD = r"""
import os, sys, time
import eie_runtime as eie
import eie_runtime.atomic as atomic

target, a_path, b_path, slow = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
if slow:
    real_fdopen = os.fdopen

    class Slow:
        def __init__(self, f):
            self.f = f
        def write(self, data):
            view = memoryview(data)
            for i in range(0, len(view), 1 << 16):
                self.f.write(view[i:i + (1 << 16)])
                self.f.flush()
                time.sleep(0.002)
            return len(data)
        def __getattr__(self, name):
            return getattr(self.f, name)
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

    atomic.os.fdopen = lambda fd, mode: Slow(real_fdopen(fd, mode))
models = [eie.load(a_path), eie.load(b_path)]
print("ready", flush=True)
i = 0
while True:
    print("begin", i % 2, flush=True)
    eie.save(models[i % 2], target)
    print("end", i % 2, flush=True)
    i += 1
"""


def _layer(seed: int) -> eie.EIELinear:
    rng = np.random.default_rng(seed)
    codes = rng.integers(1, 16, size=(1024, 1024), dtype=np.uint8)
    codes[rng.random(codes.shape) < 0.3] = 0
    codebook = np.concatenate([[0.0], rng.standard_normal(15)]).astype(np.float32)
    return eie.EIELinear(eie.InterleavedCSC.from_codes(codes, codebook, 64), name=f"model{seed}")


@pytest.mark.parametrize("slow", [True, False], ids=["slow-disk", "real-speed"])
def test_kill_during_save_leaves_old_or_new_file(tmp_path, slow):
    a, b = _layer(1), _layer(2)
    a_bytes, b_bytes = encode_model_file([a], kind="layer"), encode_model_file([b], kind="layer")
    assert len(a_bytes) > 700_000 and a_bytes != b_bytes
    (tmp_path / "a.eie").write_bytes(a_bytes)
    (tmp_path / "b.eie").write_bytes(b_bytes)
    target = tmp_path / "model.eie"
    target.write_bytes(a_bytes)  # the "old" file
    rng = np.random.default_rng(3)
    mid_write = 0
    rounds = 6
    for _ in range(rounds):
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(target), str(tmp_path / "a.eie"),
                                 str(tmp_path / "b.eie"), "1" if slow else "0"],
                                stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.4))
        proc.send_signal(signal.SIGKILL)
        log = proc.communicate()[0].split("\n")
        assert proc.returncode == -signal.SIGKILL
        lines = [ln for ln in log if ln]
        if lines and lines[-1].startswith("begin"):
            mid_write += 1
        data = target.read_bytes()
        assert data in (a_bytes, b_bytes), f"torn file: {len(data)} bytes after a kill; log tail {lines[-3:]}"
        loaded = eie.load(target)
        assert loaded.name in ("model1", "model2")
    # the kills must have hit saves in progress, or this test proves nothing
    assert mid_write >= rounds // 2, f"only {mid_write} of {rounds} kills landed during a save"
    # leftovers are only hidden temporaries, never a second model file
    assert {p.name for p in tmp_path.iterdir() if not p.name.startswith(".")} == {"a.eie", "b.eie", "model.eie"}


def test_failed_save_keeps_old_file_and_cleans_up(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with atomic_open(target) as f:
            f.write(b"half of the new")
            raise Boom
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_failed_model_save_keeps_old_file(tmp_path):
    target = tmp_path / "m.eie"
    eie.save(_layer(1), target)
    before = target.read_bytes()
    with pytest.raises(eie.EIEFormatError):
        eie.save([_layer(2), "not a layer"], target)
    assert target.read_bytes() == before


def test_permissions_and_symlinks(tmp_path):
    target = tmp_path / "x.bin"
    atomic_write_bytes(target, b"1")
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0o600
    os.chmod(target, 0o640)
    atomic_write_bytes(target, b"2")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # a replaced file keeps its mode
    link = tmp_path / "link.bin"
    link.symlink_to(target)
    atomic_write_bytes(link, b"3")
    assert link.is_symlink() and target.read_bytes() == b"3"
    with pytest.raises(ValueError, match="mode"):
        with atomic_open(target, "ab"):
            pass


# Calls that write a file by path. Each must be inside an ``atomic_open`` block
# (or be ``atomic_write_*``), so that a kill never leaves a torn file. (The
# project has no pandas: its own ``to_csv`` methods write through atomic_write_text.)
WRITERS = re.compile(r"(?<![\w.])open\([^)]*['\"][wax]b?\+?['\"]|\.write_(text|bytes)\(|\bnp\.save[z]?\w*\(|"
                     r"torch\.save\(|onnx\.save\w*\(|\.savefig\(|torch\.onnx\.export\(|shutil\.copy")


def test_every_project_write_is_atomic():
    offenders = []
    for folder in ("eie_runtime", "kernels", "converters", "bench"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.name == "atomic.py":
                continue
            lines = path.read_text().splitlines()
            for n, line in enumerate(lines):
                code = line.split("#")[0]
                if not WRITERS.search(code):
                    continue
                context = "\n".join(lines[max(0, n - 6):n + 1])
                if "atomic_open" in context or "io.BytesIO" in context or "BytesIO()" in context:
                    continue
                offenders.append(f"{path.relative_to(ROOT)}:{n + 1}: {line.strip()}")
    assert not offenders, "writes that bypass eie_runtime.atomic:\n" + "\n".join(offenders)
