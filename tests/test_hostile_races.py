"""Races (issue 18): a call sees one consistent parameter set; calibration never changes what concurrent
callers compute, nor sees their calls; two calibrations at once neither fail nor mix their samples."""

import sys
import threading
import time

import numpy as np
import pytest

import eie_runtime as eie
from eie_runtime.call_recording import calls_observed, record_layer_calls
from eie_runtime.fixed_point import FixedPointParams
from eie_runtime.graph import GraphModel, Node, TensorSpec


def _layer(m, k, seed, relu=True):
    rng = np.random.default_rng(seed)
    codes = rng.integers(1, 16, size=(m, k), dtype=np.uint8)
    codes[rng.random((m, k)) >= 0.4] = 0
    codebook = np.concatenate([[0.0], rng.uniform(-0.5, 0.5, 15)]).astype(np.float32)
    return eie.EIELinear(eie.InterleavedCSC.from_codes(codes, codebook, 4),
                         bias=rng.uniform(-0.2, 0.2, m).astype(np.float32), activation="relu" if relu else None,
                         name=f"l{seed}")


@pytest.fixture
def fast_switching():
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads interleave between nearly every bytecode
    yield
    sys.setswitchinterval(old)


def _run_threads(workers):
    errors = []

    def wrap(fn):
        def run():
            try:
                fn()
            except BaseException as exc:  # reported by the test, not lost in the thread
                errors.append(exc)
        return run

    threads = [threading.Thread(target=wrap(fn)) for fn in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_swapping_fixed_params_mid_call_never_tears_a_result(fast_switching):
    """One thread swaps ``layer.fixed`` between two sets (as calibrate() does at its end) while others run
    fixed16 batches: every result equals the one of either set, never a mix (the old run_fixed16 read
    ``layer.fixed`` three times per call)."""
    layer = _layer(48, 64, 0)
    a = FixedPointParams(in_frac=12, w_frac=14, out_frac=10)
    b = FixedPointParams(in_frac=9, w_frac=12, out_frac=6)
    x = np.random.default_rng(1).uniform(-1.5, 1.5, (256, 64)).astype(np.float32)
    want = []
    for fp in (a, b):
        layer.fixed = fp
        want.append(layer.run_fixed16(x))
    assert not np.array_equal(want[0], want[1])
    stop = threading.Event()
    torn = []

    def swapper():
        while not stop.is_set():
            layer.fixed = a
            time.sleep(0)  # let the callers run on each set in turn
            layer.fixed = b
            time.sleep(0)

    def caller():
        for _ in range(150):
            y = layer.run_fixed16(x)
            if not (np.array_equal(y, want[0]) or np.array_equal(y, want[1])):
                torn.append(y)
            yi = layer(x[0], mode="fixed16")
            if not (np.array_equal(yi, want[0][0]) or np.array_equal(yi, want[1][0])):
                torn.append(yi)

    swap = threading.Thread(target=swapper)
    swap.start()
    try:
        errors = _run_threads([caller] * 3)
    finally:
        stop.set()
        swap.join()
    assert not errors
    assert not torn, f"{len(torn)} results matched neither parameter set"


def _graph():
    l1, l2 = _layer(24, 16, 2), _layer(8, 24, 3, relu=False)
    nodes = [Node("Linear", "fc1", ["x"], ["h"], {"layer": 0}), Node("Linear", "fc2", ["h"], ["y"], {"layer": 1})]
    return GraphModel(nodes, [TensorSpec("x", "float32", [None, 16])], ["y"], {}, [l1, l2], opset=17)


def test_calibrating_while_other_threads_run_gives_the_sequential_result_and_changes_nothing_for_them(
        fast_switching):
    """The old GraphModel.calibrate replaced ``run_float32`` on every layer while it ran: other threads' calls
    went through the replacement and their (here 50x larger) activations entered the calibration."""
    model = _graph()
    calib = np.random.default_rng(4).uniform(-1, 1, (32, 16)).astype(np.float32)
    big = np.random.default_rng(5).uniform(-50, 50, (4, 16)).astype(np.float32)
    model.calibrate({"x": calib})
    expected = [layer.fixed for layer in model.layers]
    y_big = model(big)
    stop = threading.Event()
    wrong_outputs = []

    def runner():
        while not stop.is_set():
            if not np.array_equal(model(big), y_big):
                wrong_outputs.append(1)

    results = []

    def calibrator():
        try:
            for _ in range(25):
                model.calibrate({"x": calib})
                results.append([layer.fixed for layer in model.layers])
        finally:
            stop.set()

    errors = _run_threads([runner, runner, calibrator])
    assert not errors
    assert not wrong_outputs  # float32 runs never saw a patched method
    assert len(results) == 25 and all(r == expected for r in results)


def test_two_calibrations_at_once_neither_fail_nor_mix_samples(fast_switching):
    """Two threads calibrating one model on different samples (the old code: AttributeError from deleting
    a method the other thread had already restored, or samples of one in the other's calibration)."""
    model = _graph()
    feeds = [np.random.default_rng(6).uniform(-1, 1, (16, 16)).astype(np.float32),
             np.random.default_rng(7).uniform(-40, 40, (16, 16)).astype(np.float32)]
    expected = []
    for f in feeds:
        reference = _graph()
        reference.calibrate({"x": f})
        expected.append([layer.fixed for layer in reference.layers])
    assert expected[0] != expected[1]
    seen = [[], []]

    def calibrator(i):
        def run():
            for _ in range(20):
                with record_layer_calls() as calls:
                    model.run({"x": feeds[i]})
                assert {id(layer) for layer, _ in calls} == {id(layer) for layer in model.layers}
                assert np.array_equal(calls[0][1], feeds[i])  # only this thread's own calls were recorded
                model.calibrate({"x": feeds[i]})
                seen[i].append(calls_observed())
        return run

    errors = _run_threads([calibrator(0), calibrator(1)])
    assert not errors, errors
    assert seen == [[False] * 20, [False] * 20]
    # each calibration computed its own parameters (the last one to finish set the model's)
    final = [layer.fixed for layer in model.layers]
    assert final in expected


def test_recorder_is_per_thread_and_patches_nothing():
    layer = _layer(8, 8, 8)
    before = (eie.EIELinear.run_float32, eie.EIELinear.run_fixed16)
    other_calls = []

    def other():
        other_calls.append(calls_observed())
        layer(np.ones(8, np.float32))

    with record_layer_calls() as calls:
        assert calls_observed()
        assert (eie.EIELinear.run_float32, eie.EIELinear.run_fixed16) == before and "run_float32" not in vars(layer)
        t = threading.Thread(target=other)
        t.start()
        t.join()
        layer(np.zeros(8, np.float32))
    assert other_calls == [False]
    assert len(calls) == 1 and not calls[0][1].any()  # this thread's call only
    assert not calls_observed()
