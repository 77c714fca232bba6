"""Quantization of ONNX constants: QDQ nodes, QOperator input layouts and Quantization records.

QDQ: an integer initializer feeds a DequantizeLinear node, whose output feeds the layer, so the
layer's tensor is ``r = x_scale * (x - x_zero_point)``. QOperator: the layer itself takes the
integer tensor with its scale and zero_point as inputs (QLinearConv, QLinearMatMul, QGemm, ...).
This module describes those input layouts, and ``onnx_qoperator`` builds the tensors from them.
Either way, scale and zero_point become the tensor's Quantization record and are not tensors of
their own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from quantlens.errors import ModelFormatError, UnsupportedModelError
from quantlens.readers import onnx_proto
from quantlens.readers.onnx_constants import Constants
from quantlens.records import INTEGER_RANGES, Quantization, Role

logger = logging.getLogger(__name__)

QUANTIZATION_DOMAINS = ("", "ai.onnx", "com.microsoft")
QDQ_OP_TYPES = ("QuantizeLinear", "DequantizeLinear")

# com.microsoft ops of onnxruntime 1.32 that take quantized constants in layouts quantlens does
# not read, so their scales and zero points appear as parameters.
UNREAD_QUANTIZED_OPS = frozenset(
    {
        "DynamicQuantizeLSTM",
        "DynamicQuantizeMatMul",
        "GatherBlockQuantized",
        "MatMulIntegerToFloat",
        "MatMulNBits",
        "MulInteger",
        "QAttention",
        "QEmbedLayerNormalization",
        "QMoE",
        "QOrderedAttention",
        "QOrderedGelu",
        "QOrderedLayerNormalization",
        "QOrderedLongformerAttention",
        "QOrderedMatMul",
    }
)

# Per-channel axis of a QOperator input, from the node and the input's rank.
AxisRule = Callable[[onnx_proto.NodeProto, int], int]


@dataclass(frozen=True)
class QuantizedInput:
    """One integer input of a QOperator node and the positions of its scale and zero_point."""

    position: int
    scale: int
    zero_point: int
    role: Role
    channel_axis: AxisRule | None = None  # None when the op takes only per-tensor parameters


@dataclass(frozen=True)
class QuantizedBias:
    """An int32 bias input quantized with ``scale = input_scale * weight_scale`` and zero_point 0."""

    position: int
    input_scale: int
    weight_scale: int


@dataclass(frozen=True)
class QOperatorSpec:
    """Input layout of a QOperator node: its integer inputs, its bias and its output scales."""

    inputs: tuple[QuantizedInput, ...]
    bias: QuantizedBias | None = None
    output_parameters: frozenset[int] = field(default_factory=frozenset)

    @property
    def skipped_positions(self) -> frozenset[int]:
        """Positions of scale and zero_point inputs, which are not tensors of their own."""
        positions = set(self.output_parameters)
        for spec in self.inputs:
            positions.update((spec.scale, spec.zero_point))
        return frozenset(positions)


def _first_axis(node: onnx_proto.NodeProto, rank: int) -> int:
    return 0


def _last_axis(node: onnx_proto.NodeProto, rank: int) -> int:
    return rank - 1


def _row_axis(node: onnx_proto.NodeProto, rank: int) -> int:
    return rank - 2


def _gemm_b_axis(node: onnx_proto.NodeProto, rank: int) -> int:
    # b_scale is per column of op(B): B is (N, K) when transB is set and (K, N) otherwise.
    return 0 if int_attribute(node, "transB", 0) else 1


def _unary(role: Role = Role.PARAMETER) -> QOperatorSpec:
    return QOperatorSpec(inputs=(QuantizedInput(0, 1, 2, role),), output_parameters=frozenset({3, 4}))


def _binary() -> QOperatorSpec:
    return QOperatorSpec(
        inputs=(QuantizedInput(0, 1, 2, Role.PARAMETER), QuantizedInput(3, 4, 5, Role.PARAMETER)),
        output_parameters=frozenset({6, 7}),
    )


# Input layouts from the ONNX operator docs (opset 10+) and onnxruntime's com.microsoft contrib
# operator schemas (onnxruntime 1.32).
QOPERATOR_SPECS: dict[str, QOperatorSpec] = {
    "QLinearConv": QOperatorSpec(
        inputs=(
            QuantizedInput(0, 1, 2, Role.PARAMETER),
            QuantizedInput(3, 4, 5, Role.WEIGHT, _first_axis),
        ),
        bias=QuantizedBias(position=8, input_scale=1, weight_scale=4),
        output_parameters=frozenset({6, 7}),
    ),
    "QLinearMatMul": QOperatorSpec(
        inputs=(
            QuantizedInput(0, 1, 2, Role.WEIGHT, _row_axis),
            QuantizedInput(3, 4, 5, Role.WEIGHT, _last_axis),
        ),
        output_parameters=frozenset({6, 7}),
    ),
    "QGemm": QOperatorSpec(
        inputs=(
            QuantizedInput(0, 1, 2, Role.PARAMETER),
            QuantizedInput(3, 4, 5, Role.WEIGHT, _gemm_b_axis),
        ),
        bias=QuantizedBias(position=6, input_scale=1, weight_scale=4),
        output_parameters=frozenset({7, 8}),
    ),
    "QLinearAdd": _binary(),
    "QLinearMul": _binary(),
    "QLinearAveragePool": _unary(),
    "QLinearGlobalAveragePool": _unary(),
    "QLinearLeakyRelu": _unary(),
    "QLinearSigmoid": _unary(),
    "QLinearSoftmax": _unary(),
    "QLinearReduceMean": _unary(),
    "QLinearWhere": QOperatorSpec(
        inputs=(QuantizedInput(1, 2, 3, Role.PARAMETER), QuantizedInput(4, 5, 6, Role.PARAMETER)),
        output_parameters=frozenset({7, 8}),
    ),
}


def qoperator_spec(node: onnx_proto.NodeProto) -> QOperatorSpec | None:
    """Return the input layout of a QOperator node, or None for any other node."""
    if node.domain not in QUANTIZATION_DOMAINS:
        return None
    if node.op_type == "QLinearConcat":
        # Inputs: Y_scale, Y_zero_point, then (X, X_scale, X_zero_point) for each concatenated tensor.
        triples = range(2, len(node.input) - 2, 3)
        inputs = tuple(QuantizedInput(start, start + 1, start + 2, Role.PARAMETER) for start in triples)
        return QOperatorSpec(inputs=inputs, output_parameters=frozenset({0, 1}))
    return QOPERATOR_SPECS.get(node.op_type)


@dataclass(frozen=True)
class DequantizedConstant:
    """An integer constant seen through the DequantizeLinear node that reads it."""

    codes_name: str
    quantization: Quantization
    node_name: str


def find_dequantized_constants(
    graph: onnx_proto.GraphProto, constants: Constants, *, node_names: list[str], file_name: str
) -> dict[str, DequantizedConstant]:
    """Map the output name of every DequantizeLinear node that reads a constant to that constant.

    Raises UnsupportedModelError for blocked quantization (a ``block_size`` attribute) and for a
    weight that a QuantizeLinear node quantizes at run time.
    """
    producers = {output: node for node in graph.node for output in node.output}
    found: dict[str, DequantizedConstant] = {}
    for node, node_name in zip(graph.node, node_names):
        if node.op_type != "DequantizeLinear" or node.domain not in QUANTIZATION_DOMAINS:
            continue
        codes_name = node.input[0]
        if codes_name not in constants:
            _reject_runtime_quantized_weight(node_name, producers.get(codes_name), constants, file_name)
            continue
        block_size = int_attribute(node, "block_size", 0)
        if block_size:
            raise UnsupportedModelError(
                f"{file_name}: DequantizeLinear node {node_name!r} uses blocked quantization "
                f"(block_size={block_size}), which quantlens does not read yet"
            )
        quantization = _dequantize_linear_quantization(node, node_name, constants, file_name)
        found[node.output[0]] = DequantizedConstant(codes_name, quantization, node_name)
    return found


def _reject_runtime_quantized_weight(
    node_name: str, producer: onnx_proto.NodeProto | None, constants: Constants, file_name: str
) -> None:
    # TODO: read QuantizeLinear(constant) -> DequantizeLinear weights, as quantization-aware
    # training exports write them, by computing the codes the way QuantizeLinear does.
    if producer is None or producer.op_type != "QuantizeLinear" or producer.input[0] not in constants:
        return
    raise UnsupportedModelError(
        f"{file_name}: DequantizeLinear node {node_name!r} reads weight {producer.input[0]!r} "
        "through a QuantizeLinear node, which quantlens does not read yet. Save the model with "
        "quantized initializers, for example with onnxruntime.quantization.quantize_static."
    )


def _dequantize_linear_quantization(
    node: onnx_proto.NodeProto, node_name: str, constants: Constants, file_name: str
) -> Quantization:
    codes_name = node.input[0]
    parameter_names = [name for name in node.input[1:3] if name]
    missing = [name for name in parameter_names if name not in constants]
    if missing:
        raise UnsupportedModelError(
            f"{file_name}: DequantizeLinear node {node_name!r} computes its input {missing[0]!r} at run "
            "time, but quantlens reads only constant scales and zero points. Fold it into an "
            "initializer with a constant-folding pass."
        )
    scale = constants.array(node.input[1])
    zero_point = constants.array(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    rank = len(constants.shape(codes_name))
    axis = _normalize_axis(int_attribute(node, "axis", 1), rank) if scale.size != 1 else None
    return make_quantization(
        codes_name,
        constants,
        scale=scale,
        zero_point=zero_point,
        axis=axis,
        where=f"DequantizeLinear node {node_name!r}",
        file_name=file_name,
    )


def make_quantization(
    codes_name: str,
    constants: Constants,
    *,
    scale: np.ndarray,
    zero_point: np.ndarray | None,
    axis: int | None,
    where: str,
    file_name: str,
) -> Quantization:
    """Build the Quantization record of constant ``codes_name`` and check it against its shape.

    ``axis`` None means per-tensor. A scale with one element is per-tensor whatever its rank,
    as onnxruntime treats it. Zero, negative or non-finite scales are kept and logged as a warning.
    """
    storage_dtype = constants.dtype(codes_name)
    if storage_dtype not in INTEGER_RANGES:
        raise UnsupportedModelError(
            f"{file_name}: tensor {codes_name!r} of {where} is quantized to {storage_dtype}, which "
            f"quantlens does not read yet. Supported types: {', '.join(INTEGER_RANGES)}."
        )
    shape = constants.shape(codes_name)
    if axis is not None and not 0 <= axis < len(shape):
        raise ModelFormatError(
            f"{file_name}: {where} quantizes {codes_name!r} of shape {shape} along axis {axis}, "
            "which it does not have"
        )
    if axis is not None and scale.size != shape[axis]:
        raise ModelFormatError(
            f"{file_name}: {where} has {scale.size} scales for {codes_name!r}, which has "
            f"{shape[axis]} channels along axis {axis} (shape {shape})"
        )
    if zero_point is None:
        zero_point = np.zeros(scale.shape, dtype=np.int64)
    if zero_point.size not in (1, scale.size):
        raise ModelFormatError(
            f"{file_name}: {where} has {zero_point.size} zero points and {scale.size} scales for "
            f"{codes_name!r}, but needs one zero point or one per scale. Export the model again."
        )
    if axis is None:
        scale, zero_point = scale.reshape(()), zero_point.reshape(())
    else:
        scale = scale.reshape(-1)
        zero_point = zero_point.reshape(-1) if zero_point.size == scale.size else zero_point.reshape(())
    qmin, qmax = INTEGER_RANGES[storage_dtype]
    quantization = Quantization(
        scale=scale,
        zero_point=zero_point,
        axis=axis,
        qmin=qmin,
        qmax=qmax,
        storage_dtype=storage_dtype,
    )
    _warn_invalid_scales(quantization, codes_name=codes_name, where=where, file_name=file_name)
    return quantization


def _warn_invalid_scales(quantization: Quantization, *, codes_name: str, where: str, file_name: str) -> None:
    invalid = quantization.invalid_scales()
    if invalid.size:
        first = float(quantization.scale.reshape(-1)[invalid[0]])
        logger.warning(
            "%s: %d of %d scales of %r (%s) are zero, negative or not finite, first %r at index %d. "
            "The dequantized values that use them are not meaningful.",
            file_name, invalid.size, quantization.scale.size, codes_name, where, first, int(invalid[0]),
        )


def _normalize_axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def int_attribute(node: onnx_proto.NodeProto, name: str, default: int) -> int:
    for attribute in node.attribute:
        if attribute.name == name:
            return int(onnx_proto.attribute_value(attribute))
    return default
