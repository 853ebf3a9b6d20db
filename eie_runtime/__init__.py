"""eie-runtime: EIE (Han et al., ISCA 2016) in Python.

Compress fully-connected and LSTM layers the Deep Compression way, store them
in EIE's interleaved CSC format, run them with Numba kernels (float32 or
bit-exact 16-bit fixed point), and simulate the EIE hardware.

>>> import numpy as np, eie_runtime as eie
>>> layer = eie.compress_matrix(np.random.randn(4096, 4096).astype("f4"), density=0.09, activation="relu")
>>> y = layer(x)                                # float32, x of shape (4096,) or (B, 4096)
>>> eie.save(layer, "fc7.eie"); layer = eie.load("fc7.eie")

torch and onnx are imported only by their front ends (``eie_runtime.torch``,
``eie_runtime.onnx``), so loading and running a saved model needs neither.
"""

from .errors import EIEError, EIEFormatError, EIEInputError
from .fixed_point import FixedPointParams
from .format import InterleavedCSC
from .layer import EIELinear, calibrate_chain
from .model_file import load, save

__version__ = "0.1.0"

__all__ = [
    "EIEError", "EIEFormatError", "EIEInputError", "FixedPointParams", "InterleavedCSC",
    "EIELinear", "calibrate_chain", "load", "save", "compress_matrix", "__version__",
]


def __getattr__(name):
    # Floor 4 re-exports floor 3 lazily, so `import eie_runtime` stays light.
    if name == "compress_matrix":
        from .converters import compress_matrix
        return compress_matrix
    raise AttributeError(f"module 'eie_runtime' has no attribute {name!r}")
