"""Activation records: what every capture backend returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from quantlens.adapter import InputAdapter
from quantlens.errors import LayerNotFoundError
from quantlens.inputs import InputBatch
from quantlens.records import Tensor


class CapturePoint(NamedTuple):
    """A value that capture can record, listed without running the model.

    ``name`` is the activation name (ONNX value name, TorchScript value name or module name),
    ``layer`` the node or module that produces it and ``op_type`` that node's operator or that
    module's class.
    """

    name: str
    layer: str
    op_type: str


@dataclass(frozen=True, repr=False, eq=False)
class CapturedRun:
    """The activations, outputs and notices of one backend run, before they become a CaptureResult."""

    activations: tuple[Activation, ...]
    outputs: tuple[np.ndarray, ...]
    notices: tuple[str, ...] = ()


@dataclass(frozen=True, repr=False, eq=False)
class Activation:
    """One captured output of one layer.

    ``tensor`` has role ``activation``; its name is the captured value's name (the ONNX value
    name, or the module name plus an output suffix such as ``"block:1"`` or ``"heads.cls"`` for
    nested outputs). For quantized outputs (int8/uint8 ONNX values, quantized torch tensors)
    ``tensor.codes`` holds the integer codes and ``tensor.quantization`` the scale and zero_point.
    """

    layer: str
    op_type: str
    output_index: int
    tensor: Tensor

    @property
    def name(self) -> str:
        return self.tensor.name

    def __repr__(self) -> str:
        return f"Activation({self.name!r}, {self.op_type}, shape={self.tensor.shape})"


@dataclass(frozen=True, repr=False, eq=False)
class CaptureResult:
    """Every captured activation of one run, in graph (execution) order, plus the model outputs."""

    model: str
    inputs: InputBatch
    adapter: InputAdapter
    activations: tuple[Activation, ...]
    outputs: tuple[np.ndarray, ...]
    notices: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.activations)

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.activations]

    def activation(self, name: str) -> Activation:
        """Return the activation called ``name``; the error lists how to see the names."""
        for item in self.activations:
            if item.name == name:
                return item
        raise LayerNotFoundError(
            f"no captured activation {name!r} in {self.model} ({len(self.activations)} captured); "
            "list them with `quantlens activations MODEL --list-layers`"
        )

    def top_k(self, k: int = 3, sample: int = 0) -> list[tuple[int, float]]:
        """Return the ``k`` best (class index, softmax probability) pairs of one sample."""
        logits = np.asarray(self.outputs[0], dtype=np.float64).reshape(len(self.inputs), -1)[sample]
        shifted = np.exp(logits - logits.max())
        probabilities = shifted / shifted.sum()
        order = np.argsort(-probabilities)[:k]
        return [(int(i), float(probabilities[i])) for i in order]

    def __repr__(self) -> str:
        return f"CaptureResult({self.model!r}, {len(self.activations)} activations)"
