"""One call from a dense weight matrix to an :class:`~eie_runtime.EIELinear`."""

from __future__ import annotations

import numpy as np

from eie_runtime.errors import EIEInputError
from eie_runtime.format import InterleavedCSC
from eie_runtime.layer import ACTIVATIONS, EIELinear, resolve_n_pe

from .prune import prune_mask
from .weight_sharing import check_bits, check_init, kmeans_share


def as_weight_matrix(weight, what: str = "weight") -> np.ndarray:
    """Validate a dense 2-D float weight (numpy array or CPU tensor) and return it as a numpy array."""
    if hasattr(weight, "detach"):  # a torch tensor: avoid importing torch here
        if getattr(weight, "is_cuda", False) or str(getattr(weight, "device", "cpu")) != "cpu":
            raise EIEInputError(f"{what} is on {weight.device}; move it to the CPU first (.cpu())")
        weight = weight.detach().float().numpy()
    w = np.asarray(weight)
    if w.ndim != 2:
        raise EIEInputError(f"{what} must be 2-D (out_features, in_features), got shape {w.shape}")
    if w.dtype.kind != "f":
        raise EIEInputError(f"{what} must be floating point, got {w.dtype}")
    if not np.isfinite(w).all():
        bad = np.argwhere(~np.isfinite(w))[0]
        raise EIEInputError(f"{what} holds NaN or Inf (first at {tuple(int(i) for i in bad)})")
    return w


def check_n_pe(n_pe) -> int | str:
    """An integer >= 1, or ``"auto"`` (per layer, from its row count: ``layer.auto_n_pe``)."""
    if isinstance(n_pe, str) and n_pe == "auto":
        return n_pe
    if isinstance(n_pe, bool) or not isinstance(n_pe, (int, np.integer)) or n_pe < 1:
        raise EIEInputError(f"n_pe must be an integer >= 1 or 'auto', got {n_pe!r}")
    return int(n_pe)


def check_input_rms(input_rms, k: int, what: str = "input_rms") -> np.ndarray:
    """``input_rms`` as float64 (K,): finite, >= 0, one value per input column."""
    r = np.asarray(input_rms, dtype=np.float64)
    if r.shape != (k,) or not np.isfinite(r).all() or (r < 0).any():
        raise EIEInputError(f"{what} must be {k} finite values >= 0 (one per input column), got shape {r.shape}")
    return r


def importance(weight: np.ndarray, input_rms) -> np.ndarray:
    """``|w_ij| * input_rms[j]``: how much weight ``(i, j)`` contributes to its output on typical inputs
    (the activation-aware pruning criterion of Wanda, Sun et al. 2023); ``|w|`` when ``input_rms`` is None."""
    w = np.abs(np.asarray(weight, dtype=np.float64))
    return w if input_rms is None else w * check_input_rms(input_rms, w.shape[1])[None, :]


def quantize_matrix(weight, *, density: float, bits: int = 4, seed: int = 0, init: str = "linear",
                    mask: np.ndarray | None = None, input_rms=None) -> tuple[np.ndarray, np.ndarray]:
    """Prune then share: ``(codes uint8 (M, K), codebook float32 (2**bits,))``.

    ``mask`` (boolean, same shape) overrides magnitude pruning, e.g. the mask a
    fine-tuning run kept fixed. ``init`` is the codebook initialisation
    (``weight_sharing.INITS``: linear, density / quantile, random).
    ``input_rms`` (K,): the root mean square of each input column over sample
    inputs. Given it, pruning keeps the largest ``|w_ij| * input_rms[j]``
    (:func:`importance`) and the k-means weighs each weight's squared error by
    ``input_rms[j]**2``, so both minimise the error of the layer's outputs rather
    than of its weights (docs/torch.md, "Choices that decide quality").
    """
    w = as_weight_matrix(weight)
    bits = check_bits(bits)
    check_init(init)
    if input_rms is not None:
        input_rms = check_input_rms(input_rms, w.shape[1])
    if mask is None:
        mask = prune_mask(importance(w, input_rms) if input_rms is not None else w, density)
    elif mask.shape != w.shape:
        raise EIEInputError(f"mask has shape {mask.shape}, expected {w.shape}")
    # an exact zero stays pruned: sharing would otherwise turn it into a centroid value
    mask = mask & (w != 0)
    codes = np.zeros(w.shape, dtype=np.uint8)
    wts = None if input_rms is None else np.broadcast_to(input_rms[None, :] ** 2, w.shape)[mask]
    codebook, kept_codes = kmeans_share(w[mask], bits, init=init, seed=seed, weights=wts)
    codes[mask] = kept_codes
    return codes, codebook


def compress_matrix(weight, *, density: float, bits: int = 4, n_pe: int = 64, bias=None,
                    activation: str | None = None, seed: int = 0, init: str = "linear",
                    name: str | None = None) -> EIELinear:
    """Prune ``weight`` (M, K) to ``density``, share its weights in ``2**bits - 1``
    values, and encode it for ``n_pe`` PEs.

    ``init`` chooses the k-means codebook initialisation: ``"linear"`` over
    [min, max] (the default, Deep Compression's), ``"density"`` (alias
    ``"quantile"``: equally spaced quantiles, lower weight error on matrices
    with outliers) or ``"random"`` (``seed``). See ``weight_sharing.INITS``.

    Examples
    --------
    >>> layer = compress_matrix(w, density=0.1, bits=4, n_pe=64, bias=b, activation="relu")
    >>> y = layer(x)                       # float32
    >>> layer.calibrate(samples); y16 = layer(x, mode="fixed16")
    """
    n_pe = check_n_pe(n_pe)
    if activation not in ACTIVATIONS:
        raise EIEInputError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    w = as_weight_matrix(weight)
    if bias is not None:
        bias = as_bias(bias, w.shape[0])
    codes, codebook = quantize_matrix(w, density=density, bits=bits, seed=seed, init=init)
    matrix = InterleavedCSC.from_codes(codes, codebook, resolve_n_pe(n_pe, codes.shape[0]), name=name)
    return EIELinear(matrix, bias=bias, activation=activation, name=name)


def as_bias(bias, m: int) -> np.ndarray:
    if hasattr(bias, "detach"):
        bias = bias.detach().cpu().float().numpy()
    b = np.asarray(bias)
    if b.shape != (m,) or b.dtype.kind != "f":
        raise EIEInputError(f"bias must be a float array of shape ({m},), got {b.dtype} {b.shape}")
    if not np.isfinite(b).all():
        raise EIEInputError("bias holds NaN or Inf")
    return b.astype(np.float32)
