"""PyTorch front end: drop-in compressed ``nn.Linear`` / ``nn.LSTM`` / ``nn.LSTMCell`` / ``nn.GRU`` / ``nn.GRUCell``.

>>> import torch, eie_runtime.torch as et
>>> small = et.compress(model, density=0.1, bits=4)           # a copy; model is untouched
>>> y = small(x)                                             # EIE kernels inside, same signature
>>> print(et.summary(small))                                 # per module: shape, density, bits, bytes
>>> et.to_dense(small)                                       # plain torch with the pruned-and-shared weights
>>> fx = et.compress(model, mode="fixed16", calibration=[x1, x2])   # bit-exact 16-bit arithmetic
>>> et.save(small, "model.eie"); small2 = et.load("model.eie", into=model)

Fine-tuning the Deep Compression way (masked gradients, then centroids) is
``prepare_finetune`` / ``share_weights`` / ``finalize``; label-free recovery is
``distill``; per-module densities for a quality or size budget are
``sensitivity`` / ``plan``. EIE modules are inference-only (no gradients), run on the CPU in
float32 (or fixed16), and ignore dropout, as ``model.eval()`` would.

Where things live: ``linear``, ``lstm`` and ``gru`` (the modules, on the shared
``base``), ``model`` (compress, calibrate, set_mode, to_dense, summary),
``serialization`` (``.eie`` files), ``targets`` and ``weights`` (which torch
modules are compressed and their weights), ``parametrizations`` and
``finetune`` (Deep Compression fine-tuning), ``distillation`` (label-free recovery).
"""

from .base import FILE_KIND, EIEModule
from .distillation import Agreement, DistillReport, agreement, distill, distill_finetune, input_rms, pruning_step
from .finetune import (ModuleState, density_schedule, finalize, finetune_state, prepare_finetune, set_density,
                       share_weights)
from .gru import EIEGRU, EIEGRUCell
from .linear import EIELinear
from .lstm import EIELSTM, EIELSTMCell
from .model import CompressionSummary, calibrate, compress, eie_modules, set_mode, summary, to_dense
from .sensitivity import Plan, Sensitivity, plan, sensitivity
from .serialization import load, modules_from_file, save

__all__ = ["compress", "EIELinear", "EIELSTM", "EIELSTMCell", "EIEGRU", "EIEGRUCell", "EIEModule", "to_dense", "summary", "calibrate",
           "set_mode", "eie_modules", "save", "load", "modules_from_file", "FILE_KIND", "prepare_finetune",
           "share_weights", "set_density", "density_schedule", "finalize", "finetune_state", "ModuleState",
           "distill", "distill_finetune", "pruning_step", "input_rms", "agreement", "Agreement", "DistillReport", "CompressionSummary",
           "sensitivity", "Sensitivity", "plan", "Plan"]
