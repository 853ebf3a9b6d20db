"""Recording which EIE layers run, and on what, in the calling thread (core: no hardware model needed).

:class:`~eie_runtime.layer.EIELinear` reports each ``run_float32`` / ``run_fixed16`` call here (one
integer test per call while no recorder is open anywhere). Nothing is patched: methods are never
replaced, on the class or on a layer, so a thread that records (to calibrate, or to trace a model for the
simulator) and threads that only run the same model never see each other's state:

- only calls made by the thread that opened a recorder are recorded, into its innermost recorder;
- :func:`calls_observed` is true only in a thread with a recorder open (recurrent cores then step
  through their layer calls so that each product is seen; other threads keep their fused kernels and so
  compute exactly what they would without the recorder).

Users: ``GraphModel.calibrate``, ``eie_runtime.onnx.InferenceSession.calibrate`` and the simulator's
``eie_runtime.hardware.trace`` (which re-exports :func:`record_layer_calls`).
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np

#: Recorders open in any thread (a one-item list: ``EIELinear`` tests ``OPEN[0]`` on every call).
OPEN = [0]
_count_lock = threading.Lock()
_local = threading.local()  # this thread's stack of open recorders (lists of calls)


def calls_observed() -> bool:
    """Whether a recorder opened by this thread is watching layer calls."""
    return OPEN[0] > 0 and bool(getattr(_local, "stack", None))


def note_call(layer, x: np.ndarray) -> None:
    """Record ``(layer, copy of x)`` in this thread's innermost recorder, if it has one.

    Called by ``EIELinear`` with the validated float32 input, before it runs; the copy keeps the sample
    whatever the caller does with its buffer afterwards.
    """
    stack = getattr(_local, "stack", None)
    if stack:
        stack[-1].append((layer, np.array(x, dtype=np.float32, copy=True)))


@contextlib.contextmanager
def record_layer_calls():
    """Record ``(layer, input)`` for every EIELinear run in this thread while open.

    >>> with record_layer_calls() as calls:
    ...     model(x)
    >>> [(layer.name, inp.shape) for layer, inp in calls]

    Thread-safe: other threads' calls are neither recorded nor changed. Recorders may nest; the innermost
    one records. Closed also on an exception.
    """
    calls: list = []
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    with _count_lock:
        OPEN[0] += 1
    stack.append(calls)
    try:
        yield calls
    finally:
        stack.pop()
        with _count_lock:
            OPEN[0] -= 1


def samples_by_layer(calls: list) -> dict[int, tuple[object, np.ndarray]]:
    """The recorded inputs of each layer object, as ``{id(layer): (layer, float32 (N, K))}`` in call order."""
    out: dict[int, tuple[object, list]] = {}
    for layer, x in calls:
        out.setdefault(id(layer), (layer, []))[1].append(x.reshape(-1, x.shape[-1]))
    return {key: (layer, np.concatenate(parts)) for key, (layer, parts) in out.items()}
