"""Recording which EIE layers a model runs, and on what, during one forward pass.

Any front end whose EIE modules hold core :class:`~eie_runtime.layer.EIELinear`
objects and run them through ``EIELinear.run_float32`` / ``run_fixed16``
(directly or via ``layer(x, mode=...)``) is covered by
:func:`record_layer_calls` (the core's recorder, :mod:`eie_runtime.call_recording`:
thread-local, nothing patched). A front end that computes some other way can
instead give its model a method ``_eie_trace(x) -> list[(EIELinear, layer_input)]``
(the *trace protocol*); :func:`eie_runtime.hardware.simulate` prefers it when present.
"""

from __future__ import annotations

from ..call_recording import record_layer_calls
from ..layer import EIELinear

__all__ = ["record_layer_calls", "trace_model"]


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
