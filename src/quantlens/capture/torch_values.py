"""Torch tensors to activation records, shared by the eager and TorchScript backends."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from quantlens.readers.torch_tensors import tensor_record
from quantlens.records import Role, Tensor

logger = logging.getLogger(__name__)


def flatten_outputs(output: Any, base: str) -> list[tuple[str, Any]]:
    """Return the tensors inside a module output with their names, in a stable order.

    A tensor is named ``base``; element ``i`` of a tuple or list adds ``:i`` and entry ``key`` of
    a dict adds ``.key``. Values that are not tensors (None, numbers) are left out.
    Example: ``(t0, {"cls": t1})`` under base ``block`` gives ``block:0`` and ``block:1.cls``.
    """
    import torch

    if isinstance(output, torch.Tensor):
        return [(base, output)]
    if isinstance(output, (tuple, list)):
        return [pair for index, item in enumerate(output) for pair in flatten_outputs(item, f"{base}:{index}")]
    if isinstance(output, Mapping):
        return [pair for key, item in output.items() for pair in flatten_outputs(item, f"{base}.{key}")]
    if output is not None:
        logger.debug("output %r of type %s is not a tensor; not captured", base, type(output).__name__)
    return []


def activation_record(name: str, value: Any) -> Tensor:
    """Wrap a CPU tensor that nothing else will modify as an activation Tensor record.

    Quantized tensors get their codes from ``int_repr()``, their values from ``dequantize()`` and
    their Quantization from ``q_scale``/``q_zero_point`` or the per-channel parameters.
    """
    return tensor_record(name, value, role=Role.ACTIVATION)
