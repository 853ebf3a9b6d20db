"""``EIELinear``: the drop-in ``nn.Linear`` that runs a compressed matrix on EIE's kernels."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import EIEInputError
from ..fixed_point import FixedPointParams
from ..layer import EIELinear as CoreLinear
from .base import EIEModule, as_array, check_mode
from .targets import check_module
from .threads import keep_torch_threads
from .weights import compress_linear_module

_F32 = np.dtype(np.float32)


class EIELinear(EIEModule):
    """Drop-in for ``nn.Linear``: ``(*, in_features) -> (*, out_features)``, float32 on the CPU.

    Parameters
    ----------
    layer : eie_runtime.EIELinear
        The compressed layer (``y = W x + b``, no activation).
    mode : "float32" or "fixed16"
    """

    def __init__(self, layer: CoreLinear, mode: str = "float32"):
        super().__init__()
        if not isinstance(layer, CoreLinear):
            raise EIEInputError(f"layer must be an eie_runtime.EIELinear, got {type(layer).__name__}")
        if layer.activation is not None:
            raise EIEInputError("EIELinear modules replace nn.Linear, which has no activation; got activation="
                                f"{layer.activation!r}")
        self.layer = layer
        self.mode = check_mode(mode)
        self._calib: list | None = None
        self._one_sample = (1, layer.in_features)

    @classmethod
    def from_linear(cls, linear: nn.Linear, *, density: float = 0.1, bits: int = 4, n_pe: int = 64,
                    seed: int = 0, name: str | None = None, mode: str = "float32") -> "EIELinear":
        """Prune, share and encode an ``nn.Linear`` (it is not modified)."""
        check_module(linear, name or "")
        return cls(compress_linear_module(linear, density=density, bits=bits, n_pe=n_pe, seed=seed,
                                          name=name or "linear"), mode=mode)

    @property
    def in_features(self) -> int:
        return self.layer.in_features

    @property
    def out_features(self) -> int:
        return self.layer.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if type(x) is torch.Tensor and self._calib is None:
            # one float32 sample, the common case at batch 1, straight to the kernel: numpy's checks cost
            # less than torch's (a tensor that requires grad or lives off the CPU refuses .numpy())
            try:
                a = x.numpy()
            except (RuntimeError, TypeError):
                a = None
            if a is not None and a.shape == self._one_sample and a.dtype == _F32 and a.flags.c_contiguous:
                n = torch.get_num_threads()
                layer = self.layer
                y = layer.run_float32(a[0]) if self.mode == "float32" else layer.run_fixed16(a[0])
                if torch.get_num_threads() != n:  # see keep_torch_threads
                    torch.set_num_threads(n)
                return torch.from_numpy(y[None])
        return self._forward_any(x)

    @keep_torch_threads
    def _forward_any(self, x: torch.Tensor) -> torch.Tensor:
        a = as_array(x, f"input of {self.layer.name!r}")
        k, m = self.in_features, self.out_features
        if a.ndim == 0 or a.shape[-1] != k:
            raise EIEInputError(f"layer {self.layer.name!r}: input has shape {tuple(a.shape)}, expected (*, {k})")
        lead = a.shape[:-1]
        rows = a.reshape(-1, k)
        if self._calib is not None:
            self._calib.append(rows.copy())
        if rows.shape[0] == 0:
            y = np.zeros((0, m), dtype=np.float32)
        elif rows.shape[0] == 1:  # one vector: the per-PE parallel kernel
            y = self.layer(rows[0], mode=self.mode)[None]
        else:
            y = self.layer(rows, mode=self.mode)
        return torch.from_numpy(np.ascontiguousarray(y)).reshape(*lead, m)

    def to_dense(self) -> nn.Linear:
        """An ``nn.Linear`` holding the pruned-and-shared weights."""
        lin = nn.Linear(self.in_features, self.out_features, bias=self.layer.bias is not None)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(self.layer.dense()))
            if self.layer.bias is not None:
                lin.bias.copy_(torch.from_numpy(self.layer.bias))
        return lin

    def calibrate(self, samples) -> FixedPointParams:
        """Set fixed16 fractional bits from sample inputs ``(*, in_features)``."""
        a = as_array(samples, "calibration samples") if isinstance(samples, torch.Tensor) else np.asarray(samples, np.float32)
        return self.layer.calibrate(a.reshape(-1, self.in_features))

    def _named_layers(self):
        return [("", self.layer)]

    def _set_layers(self, layers):
        self.layer = layers[0]
        self._one_sample = (1, self.layer.in_features)

    def _file_config(self) -> dict:
        return {"type": "EIELinear", "mode": self.mode}

    def _shape_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.layer.bias is not None}"

    def _start_recording(self):
        self._calib = []

    def _finish_recording(self):
        rows, self._calib = self._calib, None
        if rows:
            self.layer.calibrate(np.concatenate(rows))

