"""One loaded model called from 8 threads at once gives exactly the sequential results.

Covers float32 and fixed16, single vectors (sparse and dense, i.e. both kernel
paths) and batches, the lazily built execution layouts (first calls racing),
stacks of layers, the LSTM core, Numba's parallel layer, torch's intra-op
threads through the torch front end, and Numba's non-thread-safe ``workqueue``
layer (which must be serialized, not abort the process).
"""

import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numba
import numpy as np
import pytest

import eie_runtime as eie
import eie_runtime.kernels as kernels
from eie_runtime.lstm import EIELSTMCore

THREADS = 8
ROOT = Path(__file__).resolve().parents[1]


def _layer(m, k, density, seed, relu=True, n_pe=64):
    rng = np.random.default_rng(seed)
    codes = rng.integers(1, 16, size=(m, k), dtype=np.uint8)
    codes[rng.random((m, k)) >= density] = 0
    codebook = np.concatenate([[0.0], rng.uniform(-0.3, 0.3, 15)]).astype(np.float32)
    layer = eie.EIELinear(eie.InterleavedCSC.from_codes(codes, codebook, n_pe),
                          bias=rng.uniform(-0.1, 0.1, m).astype(np.float32), activation="relu" if relu else None,
                          name=f"t{seed}")
    layer.calibrate(rng.uniform(-1, 1, (16, k)).astype(np.float32))
    return layer


def _inputs(k, seed):
    rng = np.random.default_rng(seed)
    out = []
    for density in (0.05, 0.3, 1.0):  # sparse -> scatter kernels, dense -> gather kernels
        x = rng.uniform(-1, 1, k).astype(np.float32)
        x[rng.random(k) >= density] = 0
        out.append(x)
    out.append(rng.uniform(-1, 1, (5, k)).astype(np.float32))  # batch kernels
    return out


def _hammer(fn, jobs, rounds=3):
    """Run ``fn(job)`` for every job, from THREADS threads released together, each in
    its own order, ``rounds`` times; return every (job index, result) pair."""
    barrier = threading.Barrier(THREADS)

    def worker(t):
        order = np.random.default_rng(t).permutation(len(jobs))
        barrier.wait()
        return [(int(i), fn(jobs[i])) for _ in range(rounds) for i in order]

    with ThreadPoolExecutor(THREADS) as pool:
        return [r for rs in pool.map(worker, range(THREADS)) for r in rs]


def _check(results, expected):
    assert len(results) >= THREADS * len(expected)
    for i, got in results:
        want = expected[i]
        if isinstance(want, tuple):
            assert all(np.array_equal(g, w) for g, w in zip(got, want)), f"job {i} differs"
        else:
            assert np.array_equal(got, want), f"job {i} differs"


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    path = tmp_path_factory.mktemp("thr") / "m.eie"
    eie.save([_layer(1024, 2048, 0.1, 1), _layer(256, 1024, 0.2, 2, relu=False)], path)
    return path


def test_numba_runs_on_a_thread_safe_layer():
    _layer(64, 64, 0.5, 0)(np.ones(64, np.float32))  # launch the threading layer
    assert kernels.THREAD_SAFE
    assert numba.threading_layer() in ("omp", "tbb")


@pytest.mark.parametrize("mode", ["float32", "fixed16"])
def test_one_layer_from_8_threads(loaded, mode):
    layer = eie.load(loaded)[0]
    jobs = _inputs(2048, 3)
    expected = [layer(x, mode=mode) for x in jobs]
    fresh = eie.load(loaded)[0]  # first calls race to build the execution layout
    _check(_hammer(lambda x: fresh(x, mode=mode), jobs), expected)


def test_mixed_modes_and_layers_from_8_threads(loaded):
    """Threads run both modes through a stack of two layers at the same time."""
    seq = eie.load(loaded)
    jobs = [(x, mode) for x in _inputs(2048, 4) for mode in ("float32", "fixed16")]

    def chain(layers, job):
        x, mode = job
        for lay in layers:
            x = lay(x, mode=mode)
        return x

    expected = [chain(seq, j) for j in jobs]
    shared = eie.load(loaded)
    _check(_hammer(lambda j: chain(shared, j), jobs), expected)


def test_lstm_core_from_8_threads():
    h, i = 32, 48
    cells = [[_layer(4 * h, i + h + 1, 0.3, 10 + d, relu=False, n_pe=8) for d in range(2)]]
    core = EIELSTMCore(cells, hidden_size=h)
    rng = np.random.default_rng(5)
    jobs = [rng.uniform(-1, 1, (6, 3, i)).astype(np.float32) for _ in range(4)]
    expected = [core.forward(x) for x in jobs]
    _check(_hammer(lambda x: core.forward(x), jobs, rounds=2), expected)


def test_torch_front_end_with_intra_op_threads():
    torch = pytest.importorskip("torch", reason="needs the [torch] extra")
    from eie_runtime.torch import compress

    torch.manual_seed(0)
    dense = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512),
                                torch.nn.ReLU(), torch.nn.Linear(512, 64))
    model = compress(dense, density=0.2, n_pe=16, filter_fn=lambda mod, name: name != "0")
    assert isinstance(model[0], torch.nn.Linear)  # a dense torch layer runs on torch's intra-op pool
    jobs = [torch.randn(b, 256) for b in (1, 4, 16)]
    old = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        with torch.no_grad():
            expected = [model(x).numpy().copy() for x in jobs]

            def run(x):
                with torch.no_grad():
                    return model(x).numpy().copy()

            _check(_hammer(run, jobs), expected)
    finally:
        torch.set_num_threads(old)


WORKQUEUE_CHILD = r"""
import threading, numpy as np, numba
import eie_runtime as eie, eie_runtime.kernels as kernels
assert not kernels.THREAD_SAFE
rng = np.random.default_rng(0)
codes = rng.integers(0, 16, size=(512, 1024), dtype=np.uint8)
cb = np.concatenate([[0.0], rng.uniform(-1, 1, 15)]).astype(np.float32)
layer = eie.EIELinear(eie.InterleavedCSC.from_codes(codes, cb, 64), activation="relu")
layer.calibrate(rng.uniform(-1, 1, (8, 1024)).astype(np.float32))
xs = [rng.uniform(-1, 1, 1024).astype(np.float32), rng.uniform(-1, 1, (4, 1024)).astype(np.float32)]
want = [(layer(x), layer(x, mode="fixed16")) for x in xs]
assert numba.threading_layer() == "workqueue"
bad = []
def work():
    for _ in range(30):
        for x, (w, wq) in zip(xs, want):
            if not (np.array_equal(layer(x), w) and np.array_equal(layer(x, mode="fixed16"), wq)):
                bad.append(1)
        eie.InterleavedCSC.from_codes(codes, cb, 64).tocodes()
ts = [threading.Thread(target=work) for _ in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
print("ok" if not bad else "wrong")
"""


def test_workqueue_layer_is_serialized_not_fatal():
    """Where only Numba's workqueue layer exists (or a user picks it), concurrent calls
    must queue on a lock instead of aborting the process."""
    env = {"NUMBA_THREADING_LAYER": "workqueue", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", WORKQUEUE_CHILD], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", (proc.returncode, proc.stderr[-2000:])
