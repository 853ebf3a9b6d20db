"""The compiled-kernel cache cannot go stale: a change to a helper in another file recompiles its callers.

Numba's own cache checks only the file that defines a kernel (numba issue 1833). These tests run a copy
of the kernels package in child processes, so the real cache is left alone.
"""

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numba
import pytest

import eie_runtime.kernels as kernels
from eie_runtime.kernels import jit

KERNELS_DIR = Path(kernels.__file__).resolve().parent

# A cached kernel that calls two helpers from other files: the fixed16 scatter intrinsic
# (vector_scatter.py) and the inlined int16 clamp (fixed16_arith.py).
PROBE = '''
import numpy as np
from .fixed16_arith import saturate
from .jit import njit
from .vector_scatter import saturating_column_add


@njit(cache=True)
def probe(acc, packed, tab):
    saturating_column_add(acc, packed, tab, np.uint64(0), np.uint64(packed.shape[0]))
    return acc, saturate(np.int64(50000))
'''

CHILD = '''
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from kcopy.probe import probe
acc = np.array([32000, -32000, 5], dtype=np.int32)
packed = np.array([0 << 4 | 1, 1 << 4 | 2, 2 << 4 | 1], dtype=np.uint16)  # row << 4 | code
tab = np.array([0, 2000, -2000] + [0] * 13, dtype=np.int32)
out, clamped = probe(acc, packed, tab)
stats = probe.stats
print(json.dumps({"out": out.tolist(), "clamped": int(clamped),
                  "hits": sum(stats.cache_hits.values()), "misses": sum(stats.cache_misses.values())}))
'''


def _run(root: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(root)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{path.name} no longer holds {old!r}: update this test"
    path.write_text(text.replace(old, new))


@pytest.fixture
def kernel_copy(tmp_path):
    pkg = tmp_path / "kcopy"
    pkg.mkdir()
    for src in KERNELS_DIR.glob("*.py"):
        shutil.copy(src, pkg / src.name)
    (pkg / "probe.py").write_text(textwrap.dedent(PROBE))
    return tmp_path


def test_a_helper_changed_in_another_file_recompiles_its_callers(kernel_copy):
    pkg = kernel_copy / "kcopy"
    first = _run(kernel_copy)
    assert first["out"] == [32767, -32768, 2005] and first["clamped"] == 32767
    again = _run(kernel_copy)
    assert again == {**first, "hits": again["hits"], "misses": 0} and again["hits"] >= 1  # the cache is used

    # The experiment that once passed on a stale cache: clamp the scatter and the inlined helper at +-1000.
    _edit(pkg / "vector_scatter.py", "[-32768] * LANES", "[-1000] * LANES")
    _edit(pkg / "vector_scatter.py", "[32767] * LANES", "[1000] * LANES")
    _edit(pkg / "fixed16_arith.py", "if v > 32767:\n        return 32767", "if v > 1000:\n        return 1000")
    changed = _run(kernel_copy)
    assert changed["misses"] >= 1
    assert changed["out"] == [1000, -1000, 1000] and changed["clamped"] == 1000

    # Each key has its own folder; the old one stays (the most recent few are kept) and is not used.
    folders = sorted(p.name for p in (pkg / "__pycache__").glob("eie-*"))
    assert len(folders) == 2


def test_the_key_covers_the_target_cpu(monkeypatch):
    jit.cache_key.cache_clear()
    host = jit.cache_key()
    other = "+sse2" if jit.compile_target()[1] == "" else ""  # a baseline CPU, or (running portable) another one
    monkeypatch.setattr(numba.config, "CPU_FEATURES", other)
    jit.cache_key.cache_clear()
    try:
        assert jit.cache_key() != host
    finally:
        monkeypatch.undo()
        jit.cache_key.cache_clear()
    assert jit.cache_key() == host


def test_clear_cache_removes_compiled_kernels(kernel_copy):
    _run(kernel_copy)
    folders = jit.cache_folders(roots=(kernel_copy / "kcopy",), user_cache=False)
    assert folders and all(f.parent.name == "__pycache__" for f in folders)
    assert jit.clear_cache(roots=(kernel_copy / "kcopy",), user_cache=False) > 0
    assert not list((kernel_copy / "kcopy" / "__pycache__").glob("eie-*"))
