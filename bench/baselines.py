"""What users would run instead of eie-runtime, each given its preferred input layout.

Every factory takes the dense float32 weight ``w`` (M, K) and the input ``x``
((K,) for batch 1, (B, K) otherwise) and returns a callable computing ``W x``
(shape (M,) or (B, M), as numpy via :func:`to_numpy`). Conversions (sparse
formats, transposes, host-to-device copies) happen here, outside the timing.
"""

from __future__ import annotations

import warnings

import numpy as np


def torch_dense(w, x):
    import torch

    wt, xt = torch.from_numpy(w), torch.from_numpy(x)
    return lambda: torch.nn.functional.linear(xt, wt)


def _torch_csr_int32(w):
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        csr = torch.from_numpy(w).to_sparse_csr()
        return torch.sparse_csr_tensor(csr.crow_indices().to(torch.int32), csr.col_indices().to(torch.int32),
                                       csr.values(), size=csr.shape)


def torch_csr(w, x):
    import torch

    csr = _torch_csr_int32(w)
    if x.ndim == 1:
        xt = torch.from_numpy(x)
        return lambda: csr @ xt
    xt = torch.from_numpy(np.ascontiguousarray(x.T))  # (K, B): the layout MKL's CSR x dense wants
    return lambda: csr @ xt  # (M, B); to_numpy transposes back for the check only


def scipy_csr(w, x):
    import scipy.sparse as sp

    csr = sp.csr_array(w)
    csr.indices = csr.indices.astype(np.int32)
    csr.indptr = csr.indptr.astype(np.int32)
    xin = x if x.ndim == 1 else np.ascontiguousarray(x.T)
    return lambda: csr @ xin


def numpy_dense(w, x):
    if x.ndim == 1:
        return lambda: w @ x
    wt = w.T
    return lambda: x @ wt


class CudaTimed:
    """A GPU method: ``timed(n)`` runs it ``n`` times between two CUDA events and returns seconds."""

    def __init__(self, fn):
        import torch

        self.fn = fn
        self._torch = torch

    def __call__(self):
        out = self.fn()
        self._torch.cuda.synchronize()
        return out

    def timed(self, n: int) -> float:
        cuda = self._torch.cuda
        start, end = cuda.Event(enable_timing=True), cuda.Event(enable_timing=True)
        start.record()
        for _ in range(n):
            self.fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3


def cuda_dense(w, x):
    import torch

    wt, xt = torch.from_numpy(w).cuda(), torch.from_numpy(x).cuda()
    return CudaTimed(lambda: torch.nn.functional.linear(xt, wt))


def cuda_csr(w, x):
    import torch

    csr = _torch_csr_int32(w).cuda()
    xt = torch.from_numpy(x if x.ndim == 1 else np.ascontiguousarray(x.T)).cuda()
    return CudaTimed(lambda: csr @ xt)


CPU_BASELINES = {"torch_dense": torch_dense, "torch_csr": torch_csr, "scipy_csr": scipy_csr,
                 "numpy_dense": numpy_dense}
CUDA_BASELINES = {"cuda_dense": cuda_dense, "cuda_csr": cuda_csr}
# methods whose output comes back as (M, B) for a batch (they were fed X^T)
TRANSPOSED_OUTPUT = {"torch_csr", "scipy_csr", "cuda_csr"}


def to_numpy(method: str, y, batched: bool) -> np.ndarray:
    """A method's output as a float numpy array shaped like ``W x`` ((M,) or (B, M))."""
    if hasattr(y, "detach"):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if batched and method in TRANSPOSED_OUTPUT:
        y = y.T
    return y
