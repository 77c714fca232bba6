"""quantlens: inspect every weight and activation of float and quantized models, side by side.

The public API in one place::

    import quantlens

    model = quantlens.open_model("resnet8_int8.onnx")           # layers, tensors, quantization
    session = quantlens.open_session(model.path)                 # run it
    result = quantlens.capture_activations(session, quantlens.parse_input("cifar10:3"))
    report = quantlens.compare_models("resnet8.onnx", "resnet8_int8.onnx")

Importing quantlens does not import torch or onnxruntime; they load when a model needs them.
The capture function is exported as ``capture_activations`` so that ``quantlens.capture`` stays
the subpackage.

Imported before torch, quantlens sets ``THP_MEM_ALLOC_ENABLE=1`` unless it is already set: torch
then backs large CPU tensors with transparent huge pages. Capture keeps every activation alive,
so each forward pass allocates fresh memory, and with 4 KB pages the page faults cost about a
third of a ResNet-50 forward pass (see docs/benchmarks.md). Set it to 0 to keep torch's default.
"""

from __future__ import annotations

import os
import sys

if "torch" not in sys.modules:
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

from quantlens.capture import CaptureResult, capture_statistics, list_capture_points
from quantlens.capture import capture as capture_activations
from quantlens.errors import QuantlensError
from quantlens.evaluate import EvalResult, evaluate
from quantlens.inputs import InputBatch, parse_input
from quantlens.readers import open_model
from quantlens.records import Layer, Model, Quantization, Role, Tensor
from quantlens.runtime import Session, open_session
from quantlens.zoo.bundled import bundled_models, resolve_model

__version__ = "0.1.0"

# Names loaded on first access, because their modules import onnx, which takes longer to import
# than the rest of the package. Opening a model of another format then never imports onnx.
_LAZY = {"ComparisonReport": "quantlens.compare", "compare_models": "quantlens.compare"}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'quantlens' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)

__all__ = [
    "CaptureResult",
    "ComparisonReport",
    "EvalResult",
    "InputBatch",
    "Layer",
    "Model",
    "Quantization",
    "QuantlensError",
    "Role",
    "Session",
    "Tensor",
    "bundled_models",
    "capture_activations",
    "capture_statistics",
    "compare_models",
    "evaluate",
    "list_capture_points",
    "open_model",
    "open_session",
    "parse_input",
    "resolve_model",
]
