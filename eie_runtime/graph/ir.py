"""The graph's data: nodes, input specs, the tensor types it handles, and dense LSTM cells."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import EIEInputError

#: Version of the graph object in a ``.eie`` header (kind ``"graph"``).
GRAPH_VERSION = 1

#: ONNX TensorProto data type codes -> numpy dtypes (the tensor types the executor handles).
ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
               9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64"}


@dataclass
class Node:
    """One graph node: ``op`` over named ``inputs`` ("" = absent optional input) to ``outputs``."""

    op: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"op": self.op, "name": self.name, "inputs": self.inputs, "outputs": self.outputs, "attrs": self.attrs}


@dataclass
class TensorSpec:
    """A graph input: name, numpy dtype name, shape (an int per fixed axis, None per free one)."""

    name: str
    dtype: str
    shape: list | None = None  # None: rank unknown

    def to_dict(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": self.shape}


class DenseCell:
    """An exact float32 matrix with EIELinear's call signature (lossless mode's LSTM cells)."""

    def __init__(self, weight: np.ndarray, name: str):
        self.weight = np.ascontiguousarray(weight, dtype=np.float32)
        self.name = name

    @property
    def shape(self) -> tuple[int, int]:
        return self.weight.shape

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    def __call__(self, x, mode: str = "float32") -> np.ndarray:
        if mode != "float32":
            raise EIEInputError(f"layer {self.name!r} was converted losslessly (dense float32 weights) "
                                f"and runs in float32 mode only, not {mode!r}")
        return np.asarray(x, dtype=np.float32) @ self.weight.T


def is_int(v) -> bool:
    """An int that is not a bool (JSON headers give both)."""
    return isinstance(v, int) and not isinstance(v, bool)


def shape_str(shape) -> str:
    if shape is None:
        return "any"
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def float_input(x, what: str) -> np.ndarray:
    """``x`` as float32, refusing non-floating inputs by name."""
    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise EIEInputError(f"input {what} must be floating point, got {x.dtype}")
    return x.astype(np.float32, copy=False)
