"""Recording which EIE layers a model runs, and on what, during one forward pass.

Any front end whose EIE modules hold core :class:`~eie_runtime.layer.EIELinear`
objects and run them through ``EIELinear.run_float32`` / ``run_fixed16``
(directly or via ``layer(x, mode=...)``) is covered by
:func:`record_layer_calls`, which wraps those two methods while it is open.
A front end that computes some other way can instead give its model a method
``_eie_trace(x) -> list[(EIELinear, layer_input)]`` (the *trace protocol*);
:func:`eie_runtime.hardware.simulate` prefers it when present.
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np

from .. import layer as _layer_module
from ..layer import EIELinear

_patch_lock = threading.Lock()
_open_count = 0  # recorders open in any thread; the methods stay wrapped while > 0
_originals: dict = {}
_local = threading.local()  # this thread's stack of open recorders


def _active_recorder():
    stack = getattr(_local, "stack", None)
    return stack[-1] if stack else None


def _wrap(method_name: str):
    original = getattr(EIELinear, method_name)

    def recorded(self, x, *args, **kwargs):
        calls = _active_recorder()
        if calls is not None:
            # copy: the caller may reuse its buffer after the call
            calls.append((self, np.array(self.check_input(x), dtype=np.float32, copy=True)))
        return original(self, x, *args, **kwargs)

    recorded.__name__ = original.__name__
    recorded.__doc__ = original.__doc__
    recorded.__wrapped__ = original
    return original, recorded


@contextlib.contextmanager
def record_layer_calls():
    """Record ``(layer, input)`` for every EIELinear run in this thread while open.

    >>> with record_layer_calls() as calls:
    ...     model(x)
    >>> [(layer.name, inp.shape) for layer, inp in calls]

    Thread-safe: only calls made by the thread that opened the recorder are
    recorded; the methods are restored when the last recorder (in any
    thread) closes, also on an exception. Recorders may nest; the innermost
    one records.
    """
    global _open_count
    with _patch_lock:
        if _open_count == 0:
            for name in ("run_float32", "run_fixed16"):
                original, recorded = _wrap(name)
                _originals[name] = original
                setattr(EIELinear, name, recorded)
        _open_count += 1
        _layer_module._observers[0] = _open_count  # recurrent cores step through their layer calls
    calls: list = []
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    stack.append(calls)
    try:
        yield calls
    finally:
        stack.pop()
        with _patch_lock:
            _open_count -= 1
            _layer_module._observers[0] = _open_count
            if _open_count == 0:
                for name, original in _originals.items():
                    setattr(EIELinear, name, original)
                _originals.clear()


def trace_model(model, x) -> list:
    """The ``(EIELinear, input float32 (K,) or (B, K))`` calls of one forward pass of ``model``.

    Uses ``model._eie_trace(x)`` if the model has it; otherwise runs
    ``model(x)`` (or ``model.forward(x)``) inside :func:`record_layer_calls`;
    a tuple ``x`` is passed as positional inputs, a dict as keyword inputs
    (e.g. a graph model's named inputs).
    """
    from ..errors import EIEInputError

    if hasattr(model, "_eie_trace"):
        calls = list(model._eie_trace(x))
        for i, item in enumerate(calls):
            if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], EIELinear)):
                raise EIEInputError(f"_eie_trace must return (EIELinear, input) pairs; item {i} is {type(item).__name__}")
        return [(layer, layer.check_input(inp)) for layer, inp in calls]
    run = model if callable(model) else getattr(model, "forward", None)
    if run is None:
        raise EIEInputError(f"cannot simulate a {type(model).__name__}: expected an EIELinear, a list of them, "
                            "or a model that is callable / has forward() / has _eie_trace()")
    with record_layer_calls() as calls:
        if isinstance(x, dict):
            run(**x)
        elif isinstance(x, tuple):
            run(*x)
        else:
            run(x)
    return calls
