"""Scale and zero_point of the integer values an ONNX graph computes at run time.

An integer activation gets its Quantization, ``r = scale * (q - zero_point)``, from the node that
produced it:

- QuantizeLinear: inputs ``y_scale`` and ``y_zero_point``, per-axis when ``y_scale`` is 1-d;
- QOperator nodes (QLinearConv, QLinearAdd, QGemm, ...): their output scale and zero_point inputs,
  such as inputs 6 and 7 of QLinearConv;
- DynamicQuantizeLinear: its own second and third outputs;
- nodes that only move or select elements (MaxPool, Reshape, Transpose, Flatten, ...): the
  quantization of their first input, which they keep.

Scale and zero_point come from initializers and Constant nodes, or from the run itself when the
graph computes them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from quantlens.errors import QuantizationError
from quantlens.readers import onnx_proto
from quantlens.readers.onnx_constants import Constants
from quantlens.readers.onnx_quant import qoperator_spec
from quantlens.records import INTEGER_RANGES, Quantization

logger = logging.getLogger(__name__)

# Ops whose integer output contains only elements of their first input, so it keeps its quantization.
KEEPS_QUANTIZATION = frozenset(
    {
        "MaxPool", "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Slice",
        "Gather", "GatherElements", "Split", "Tile", "Expand", "DepthToSpace", "SpaceToDepth",
    }
)


@dataclass(frozen=True)
class QuantizationSource:
    """Names of the values that contain a value's scale and zero_point, and the per-axis ``axis``."""

    scale: str
    zero_point: str | None
    axis: int = 1
    block_size: int = 0
    producer: str = ""


class QuantizationSources:
    """The quantization source of every integer value of a graph, found once when the model is opened."""

    def __init__(self, graph: onnx_proto.GraphProto, *, model_path: Path) -> None:
        self.constants = Constants(graph, model_path=model_path)
        self.sources: dict[str, QuantizationSource] = {}
        self._constant_arrays: dict[str, np.ndarray] = {}
        for node in graph.node:
            self._add_node(node)

    def _add_node(self, node: onnx_proto.NodeProto) -> None:
        inputs = list(node.input)
        if node.op_type == "QuantizeLinear" and len(inputs) >= 2:
            self.sources[node.output[0]] = QuantizationSource(
                scale=inputs[1],
                zero_point=inputs[2] if len(inputs) > 2 and inputs[2] else None,
                axis=_int_attribute(node, "axis", 1),
                block_size=_int_attribute(node, "block_size", 0),
                producer=node.op_type,
            )
        elif node.op_type == "DynamicQuantizeLinear" and len(node.output) == 3:
            self.sources[node.output[0]] = QuantizationSource(node.output[1], node.output[2], producer=node.op_type)
        elif (spec := qoperator_spec(node)) is not None and spec.output_parameters:
            scale_position, zero_point_position = sorted(spec.output_parameters)
            if len(inputs) > scale_position and inputs[scale_position]:
                zero_point = inputs[zero_point_position] if len(inputs) > zero_point_position else ""
                self.sources[node.output[0]] = QuantizationSource(
                    inputs[scale_position], zero_point or None, producer=node.op_type
                )
        elif node.op_type in KEEPS_QUANTIZATION and inputs and inputs[0] in self.sources:
            for output in node.output:
                if output:
                    self.sources[output] = self.sources[inputs[0]]

    def parameter_values(self, names: list[str]) -> list[str]:
        """Return the computed (non-constant) scale and zero_point values that ``names`` need."""
        needed = []
        for name in names:
            source = self.sources.get(name)
            if source is None:
                continue
            for parameter in (source.scale, source.zero_point):
                if parameter and parameter not in self.constants:
                    needed.append(parameter)
        return needed

    def resolve(self, name: str, codes: np.ndarray, by_name: dict[str, Any], notices: list[str]) -> Quantization | None:
        """Return the Quantization of integer value ``name``, or None with a notice when unknown."""
        source = self.sources.get(name)
        storage = codes.dtype.name
        if source is None or storage not in INTEGER_RANGES:
            if storage in ("int8", "uint8"):
                notices.append(f"{name}: no scale and zero_point known for this {storage} value; values are the codes")
            return None
        if source.block_size:
            notices.append(
                f"{name}: blocked quantization (block_size {source.block_size}) is not supported; values are the codes"
            )
            return None
        scale = self._array(source.scale, by_name)
        zero_point = self._array(source.zero_point, by_name) if source.zero_point else np.zeros((), np.int64)
        axis = None
        if scale.size > 1:
            axis = source.axis if source.axis >= 0 else source.axis + codes.ndim
        qmin, qmax = INTEGER_RANGES[storage]
        try:
            return Quantization(
                scale=scale.reshape(-1) if axis is not None else scale,
                zero_point=zero_point.reshape(-1) if axis is not None else zero_point,
                axis=axis, qmin=qmin, qmax=qmax, storage_dtype=storage,
            )
        except QuantizationError as exc:
            notices.append(f"{name}: invalid quantization parameters from {source.producer} ({exc}); values are the codes")
            return None

    def _array(self, name: str, by_name: dict[str, Any]) -> np.ndarray:
        if name not in self.constants:
            return np.asarray(by_name[name])
        if name not in self._constant_arrays:
            self._constant_arrays[name] = np.asarray(self.constants.array(name))
        return self._constant_arrays[name]


def _int_attribute(node: onnx_proto.NodeProto, name: str, default: int) -> int:
    for attribute in node.attribute:
        if attribute.name == name:
            return int(onnx_proto.attribute_value(attribute))
    return default
