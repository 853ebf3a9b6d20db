"""The project's exception classes.

Every error that bad input can cause (a malformed model file, a wrong shape or
dtype, an out-of-range parameter) is an :class:`EIEError`, which is a
``ValueError``: callers can catch one class and know the process is intact.
"""


class EIEError(ValueError):
    """Base class of every error eie-runtime raises for bad input."""


class EIEFormatError(EIEError):
    """A stored matrix or model file breaks an invariant of the format.

    The message names the layer (when known) and the field at fault.
    """


class EIEInputError(EIEError):
    """A run-time input (activations, parameters) has the wrong shape, dtype or values."""
