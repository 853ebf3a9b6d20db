"""The layer object: one compressed FC layer ``y = act(W a + b)``."""

from __future__ import annotations

import threading

import numpy as np

from .errors import EIEFormatError, EIEInputError
from .fixed_point import FRAC_RANGE, FixedPointParams, from_fixed, to_fixed, frac_bits_for
from .format import InterleavedCSC
from .execution import ExecLayout
from . import call_recording as _call_recording
from .call_recording import OPEN as _RECORDERS, note_call as _note_call

_EXEC_LOCK = threading.Lock()  # builds each layer's execution layout once, even under concurrent calls

ACTIVATIONS = (None, "relu")
MODES = ("float32", "fixed16")

#: Outputs of calibration's float32 runs held at once (samples are run in chunks of this many bytes of
#: outputs, at least one sample per chunk).
CALIBRATION_CHUNK_BYTES = 64 << 20

AUTO_PE_MAX = 64  # the paper's PE count (Section VI)
AUTO_PE_MIN_ROWS = 8  # rows per PE that n_pe="auto" keeps at least


def auto_n_pe(rows: int) -> int:
    """The PE count ``n_pe="auto"`` gives a layer of ``rows`` outputs, for CPU runs: the largest power
    of two up to 64 that leaves every PE at least 8 rows (1 for fewer than 16 rows). Each PE stores a
    pointer per column, so a small layer on 64 PEs would hold far more pointer than weight bytes
    (10 x 512 at density 0.1: 65 KB of 16-bit pointers for 512 entries; on 1 PE, 1 KB). The CPU
    kernels run the same whatever the count; the hardware simulator re-encodes a layer for its
    configured PEs when asked (``simulate(..., reencode=True)``)."""
    n = 1
    while n * 2 <= AUTO_PE_MAX and n * 2 * AUTO_PE_MIN_ROWS <= rows:
        n *= 2
    return n


def resolve_n_pe(n_pe, rows: int) -> int:
    """``n_pe`` itself, or ``auto_n_pe(rows)`` for ``"auto"``."""
    return auto_n_pe(rows) if isinstance(n_pe, str) and n_pe == "auto" else int(n_pe)


def calls_observed() -> bool:
    """Whether a recorder opened by this thread (``call_recording.record_layer_calls``) is watching layer
    calls: recurrent cores then run one layer call per matrix and step, so that every product is seen."""
    return _call_recording.calls_observed()


class EIELinear:
    """A compressed fully-connected layer on EIE's interleaved CSC.

    Parameters
    ----------
    matrix : InterleavedCSC
        The weights, shape (M, K).
    bias : array (M,), optional
    activation : None or "relu"
    fixed : FixedPointParams, optional
        Fractional bits for ``mode="fixed16"``; set them with :meth:`calibrate`.
    name : str, optional
        Used in error messages and model files.

    Call it with ``x`` of shape ``(K,)`` or ``(B, K)``:
    ``layer(x, mode="float32" | "fixed16")`` returns float32 ``(M,)`` or ``(B, M)``.

    In float32 mode a NaN or Inf input reaches exactly the outputs whose row has a
    stored (non-zero) weight in that input's column; in fixed16 mode it is refused.
    """

    def __init__(self, matrix: InterleavedCSC, bias=None, activation: str | None = None,
                 fixed: FixedPointParams | None = None, name: str | None = None):
        if not isinstance(matrix, InterleavedCSC):
            raise EIEInputError(f"matrix must be an InterleavedCSC, got {type(matrix).__name__}")
        if activation not in ACTIVATIONS:
            raise EIEInputError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        if fixed is not None and not isinstance(fixed, FixedPointParams):
            raise EIEInputError(f"fixed must be FixedPointParams or None, got {type(fixed).__name__}")
        self.matrix = matrix
        self.name = name if name is not None else matrix.name
        if self.matrix.name is None:
            self.matrix.name = self.name
        m = matrix.shape[0]
        if bias is None:
            self.bias = None
        else:
            bias = np.asarray(bias)
            if bias.shape != (m,):
                raise EIEFormatError(f"{self._where()}bias has shape {bias.shape}, expected ({m},)")
            if bias.dtype.kind not in "fiu" or not np.isfinite(bias).all():
                raise EIEFormatError(f"{self._where()}bias must be finite numbers")
            self.bias = np.ascontiguousarray(bias, dtype=np.float32)
        self.activation = activation
        self.fixed = fixed
        self._exec = None  # float32 execution layout, built on first use
        self._bias_q = None  # (out_frac, bias object, int16 bias): quantized once, not per call
        self._zero_bias = None  # float32 zeros standing in for a missing bias

    # ----------------------------------------------------------------- info
    @property
    def shape(self) -> tuple[int, int]:
        return self.matrix.shape

    @property
    def in_features(self) -> int:
        return self.matrix.shape[1]

    @property
    def out_features(self) -> int:
        return self.matrix.shape[0]

    def dense(self) -> np.ndarray:
        """The decoded float32 weight matrix (M, K)."""
        return self.matrix.toarray()

    def _where(self) -> str:
        return f"layer {self.name!r}: " if self.name else ""

    def __repr__(self) -> str:
        m, k = self.shape
        return (f"EIELinear({self.name or ''!s}{', ' if self.name else ''}{k} -> {m}, n_pe={self.matrix.n_pe}, "
                f"density={self.matrix.nnz / max(1, m * k):.3f}, bits={self.matrix.bits}, "
                f"activation={self.activation!r}, fixed={self.fixed})")

    # ------------------------------------------------------------------ run
    def _bias_f32(self) -> np.ndarray:
        if self.bias is not None:
            return self.bias
        zeros = getattr(self, "_zero_bias", None)  # made once, not per call: kernels only read the bias
        if zeros is None or zeros.shape[0] != self.out_features:
            zeros = self._zero_bias = np.zeros(self.out_features, dtype=np.float32)
        return zeros

    def check_input(self, x) -> np.ndarray:
        """Validate ``x`` and return it as a C-contiguous float32 array of 1 or 2 dims.

        Any real dtype (float, int, bool; any byte order), any strides, read-only
        or not, is accepted and copied only when needed; complex, object, string
        and structured arrays, and shapes other than ``(K,)``/``(B, K)``, raise
        :class:`EIEInputError`. Floats beyond float32's range become +-Inf.
        """
        k = self.in_features
        if type(x) is np.ndarray and x.dtype == np.float32 and x.flags.c_contiguous and x.shape[-1:] == (k,) \
                and x.ndim <= 2:
            return x  # the common case, without the conversion below (a few us on small layers)
        if not isinstance(x, np.ndarray):
            try:
                x = np.asarray(x)
            except Exception as exc:  # e.g. a ragged list, a torch tensor that requires grad
                raise EIEInputError(f"{self._where()}input could not be converted to an array: {exc}") from None
        if x.dtype.kind not in "fiub":
            raise EIEInputError(f"{self._where()}input must hold real numbers (float, int or bool), got dtype {x.dtype}")
        if x.ndim not in (1, 2) or x.shape[-1] != k:
            raise EIEInputError(f"{self._where()}input has shape {x.shape}, expected ({k},) or (batch, {k})")
        with np.errstate(over="ignore"):  # float64 beyond float32's range -> Inf, refused by fixed16
            return np.ascontiguousarray(x, dtype=np.float32)

    def __call__(self, x, mode: str = "float32") -> np.ndarray:
        if mode == "float32":
            return self.run_float32(x)
        if mode == "fixed16":
            return self.run_fixed16(x)
        raise EIEInputError(f"mode must be one of {MODES}, got {mode!r}")

    def __getstate__(self):
        # the execution layout (which holds a lock) is derived state: copies and pickles rebuild it
        state = self.__dict__.copy()
        state["_exec"] = None
        return state

    def execution_layout(self) -> ExecLayout:
        """The run-time layout of ``self.matrix``, built on first use (thread-safe), rebuilt if replaced."""
        ex = self._exec
        if ex is None or ex.matrix is not self.matrix:
            with _EXEC_LOCK:
                ex = self._exec
                if ex is None or ex.matrix is not self.matrix:
                    ex = ExecLayout(self.matrix)
                    self._exec = ex
        return ex

    def run_float32(self, x) -> np.ndarray:
        """act(W x + b) in float32; x of shape (K,) or (B, K)."""
        x = self.check_input(x)
        if _RECORDERS[0]:  # some thread records layer calls (calibration, tracing): this one's if it is
            _note_call(self, x)
        return self.execution_layout().run_float32(x, self._bias_f32(), self.activation == "relu")

    # --------------------------------------------------------------- fixed16
    def _require_fixed(self) -> FixedPointParams:
        if self.fixed is None:
            raise EIEInputError(f"{self._where()}fixed16 mode needs fixed-point parameters: "
                                "call layer.calibrate(samples) or set layer.fixed")
        return self.fixed

    def quantized_codebook(self) -> np.ndarray:
        return to_fixed(self.matrix.codebook, self._require_fixed().w_frac)

    def quantized_bias(self, fixed: FixedPointParams | None = None) -> np.ndarray:
        """The bias as int16 with ``out_frac`` bits of ``fixed`` (default: ``self.fixed``)."""
        out_frac = (fixed if fixed is not None else self._require_fixed()).out_frac
        cached = self._bias_q
        if cached is None or cached[0] != out_frac or cached[1] is not self.bias:
            cached = (out_frac, self.bias, to_fixed(self._bias_f32(), out_frac))
            self._bias_q = cached  # one tuple, replaced atomically: safe under concurrent calls
        return cached[2]

    def run_fixed16_int(self, x_q) -> np.ndarray:
        """The hardware's computation on int16 inputs (``in_frac`` bits) -> int16 (``out_frac``)."""
        return self._run_fixed16_int(x_q, self._require_fixed())

    def _run_fixed16_int(self, x_q, fp: FixedPointParams) -> np.ndarray:
        # every parameter of the call comes from the one snapshot `fp`: replacing `self.fixed` meanwhile
        # (calibrate() does) can never mix two parameter sets in one result
        x_q = np.asarray(x_q)
        k = self.in_features
        if x_q.dtype != np.int16:
            raise EIEInputError(f"{self._where()}fixed16 input must be int16, got {x_q.dtype}")
        if x_q.ndim not in (1, 2) or x_q.shape[-1] != k:
            raise EIEInputError(f"{self._where()}input has shape {x_q.shape}, expected ({k},) or (batch, {k})")
        return self.execution_layout().run_fixed16(np.ascontiguousarray(x_q), fp.w_frac, self.quantized_bias(fp),
                                                   fp.shift, self.activation == "relu")

    def run_fixed16(self, x) -> np.ndarray:
        """Quantize x to int16 (``in_frac``), run the bit-exact kernel, return float32.

        ``self.fixed`` is read once per call: a call made while another thread calibrates runs entirely
        on the old parameters or entirely on the new ones."""
        fp = self._require_fixed()
        x = self.check_input(x)
        if _RECORDERS[0]:
            _note_call(self, x)
        if not np.isfinite(x).all():
            raise EIEInputError(f"{self._where()}fixed16 mode refuses NaN or Inf inputs")
        return from_fixed(self._run_fixed16_int(to_fixed(x, fp.in_frac), fp), fp.out_frac)

    def calibrate(self, samples, *, in_frac: int | None = None, headroom: float = 1.25) -> FixedPointParams:
        """Choose and set fractional bits from sample inputs ``samples`` (N, K).

        ``in_frac`` fits the largest |input| (or is given, e.g. the previous
        layer's ``out_frac``); ``w_frac`` fits the largest |codebook value|;
        ``out_frac`` fits the largest |pre-activation output| times ``headroom``,
        capped so that the product shift stays >= 0.
        """
        if in_frac is not None and (isinstance(in_frac, bool) or not isinstance(in_frac, (int, np.integer))
                                    or not FRAC_RANGE[0] <= in_frac <= FRAC_RANGE[1]):
            raise EIEInputError(f"{self._where()}calibrate: in_frac must be None or an int in {FRAC_RANGE}, "
                                f"got {in_frac!r}")
        if isinstance(headroom, bool) or not isinstance(headroom, (int, float, np.floating, np.integer)) \
                or not 1.0 <= float(headroom) <= 2.0 ** 16:
            raise EIEInputError(f"{self._where()}calibrate: headroom must be a number in [1, 65536], got {headroom!r}")
        x = self.check_input(samples).reshape(-1, self.in_features)
        if not np.isfinite(x).all():
            raise EIEInputError(f"{self._where()}calibration samples hold NaN or Inf")
        if in_frac is None:
            in_frac = frac_bits_for(np.abs(x).max(initial=0.0))
        w_frac = frac_bits_for(np.abs(self.matrix.codebook).max(initial=0.0))
        out_frac = min(frac_bits_for(self._pre_activation_amax(x), headroom), w_frac + int(in_frac))
        fixed = FixedPointParams(in_frac=int(in_frac), w_frac=int(w_frac), out_frac=int(out_frac))
        self.fixed = fixed  # one assignment: concurrent calls see the old parameters or these, never a mix
        return fixed

    def _pre_activation_amax(self, x: np.ndarray) -> float:
        """max |W x + b| over the samples ``x`` (N, K), by the float32 sparse kernel in chunks of samples,
        so that memory stays O(stored entries + M + CALIBRATION_CHUNK_BYTES), never the dense M x K
        matrix (16 GiB for a 66 KB file declaring 65536 x 65536)."""
        layout = self.execution_layout()
        bias = self._bias_f32()
        m = self.out_features
        step = max(1, CALIBRATION_CHUNK_BYTES // max(1, 4 * m))
        amax = 0.0
        for start in range(0, x.shape[0], step):
            pre = layout.run_float32(np.ascontiguousarray(x[start:start + step]), bias, False)
            amax = max(amax, float(np.abs(pre).max(initial=0.0)))
        return amax


def calibrate_chain(layers, samples, *, headroom: float = 1.25) -> list[FixedPointParams]:
    """Calibrate a stack of layers so each one's ``in_frac`` is the previous one's ``out_frac``."""
    x = np.asarray(samples, dtype=np.float32)
    in_frac = None
    params = []
    for layer in layers:
        params.append(layer.calibrate(x, in_frac=in_frac, headroom=headroom))
        in_frac = layer.fixed.out_frac
        x = layer.run_float32(x)
    return params
