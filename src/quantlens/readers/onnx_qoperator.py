"""Tensors of QOperator nodes: layers that take integer tensors with their scale and zero_point.

onnxruntime writes this form for ``QuantFormat.QOperator`` (QLinearConv, QLinearMatMul, QGemm, ...).
The input layouts are in ``onnx_quant.QOPERATOR_SPECS``. The int32 bias of QLinearConv and QGemm is
quantized with ``scale = input_scale * weight_scale`` and zero_point 0, so
``r = input_scale * weight_scale * q``.
"""

from __future__ import annotations

import numpy as np

from quantlens.errors import ModelFormatError, UnsupportedModelError
from quantlens.readers import onnx_proto
from quantlens.readers.onnx_constants import Constants
from quantlens.readers.onnx_quant import QOperatorSpec, QuantizedBias, QuantizedInput, make_quantization
from quantlens.records import Quantization, Role, Tensor


def qoperator_tensors(
    node: onnx_proto.NodeProto, node_name: str, spec: QOperatorSpec, constants: Constants, *, file_name: str
) -> list[Tensor]:
    """Return the constant inputs of a QOperator node as tensors, in input order.

    Integer inputs get their scale and zero_point as Quantization; the bias gets the scale that
    the op implies. Scale and zero_point inputs are skipped, and other constants are parameters.
    """
    quantized = {spec_input.position: spec_input for spec_input in spec.inputs}
    tensors: list[Tensor] = []
    for position, name in enumerate(node.input):
        if not name or name not in constants or position in spec.skipped_positions:
            continue
        where = f"{node.op_type} node {node_name!r}"
        if position in quantized:
            spec_input = quantized[position]
            quantization = _qoperator_input_quantization(node, spec_input, constants, where, file_name)
            tensors.append(constants.tensor(name, spec_input.role, quantization=quantization))
        elif spec.bias is not None and position == spec.bias.position:
            quantization = _qoperator_bias_quantization(node, spec.bias, constants, where, file_name)
            tensors.append(constants.tensor(name, Role.BIAS, quantization=quantization))
        else:
            tensors.append(constants.tensor(name, Role.PARAMETER))
    return tensors


def _constant_parameter(
    node: onnx_proto.NodeProto, position: int, constants: Constants, where: str, file_name: str
) -> np.ndarray | None:
    """Read the scale or zero_point at ``position``; None when the optional input is absent."""
    if position >= len(node.input) or not node.input[position]:
        return None
    name = node.input[position]
    if name not in constants:
        raise UnsupportedModelError(
            f"{file_name}: {where} computes its input {name!r} at run time, but quantlens reads only "
            "constant scales and zero points. Fold it into an initializer with a constant-folding pass."
        )
    return constants.array(name)


def _qoperator_input_quantization(
    node: onnx_proto.NodeProto, spec: QuantizedInput, constants: Constants, where: str, file_name: str
) -> Quantization:
    codes_name = node.input[spec.position]
    scale = _constant_parameter(node, spec.scale, constants, where, file_name)
    if scale is None:
        raise ModelFormatError(f"{file_name}: {where} has no scale for its input {codes_name!r}")
    zero_point = _constant_parameter(node, spec.zero_point, constants, where, file_name)
    axis = None
    if scale.size != 1:
        if spec.channel_axis is None:
            raise ModelFormatError(
                f"{file_name}: {where} has {scale.size} scales for {codes_name!r}, but "
                f"{node.op_type} takes one scale for that input"
            )
        axis = spec.channel_axis(node, len(constants.shape(codes_name)))
    return make_quantization(
        codes_name, constants, scale=scale, zero_point=zero_point, axis=axis, where=where, file_name=file_name
    )


def _qoperator_bias_quantization(
    node: onnx_proto.NodeProto, spec: QuantizedBias, constants: Constants, where: str, file_name: str
) -> Quantization:
    """Build the Quantization of an int32 bias: ``scale = input_scale * weight_scale`` in float32.

    Example: input_scale 0.02 and per-channel weight scales [0.01, 0.005] give bias scales
    [0.0002, 0.0001] along the bias's only axis. The zero_point is 0.
    """
    codes_name = node.input[spec.position]
    input_scale = _constant_parameter(node, spec.input_scale, constants, where, file_name)
    weight_scale = _constant_parameter(node, spec.weight_scale, constants, where, file_name)
    if input_scale is None or weight_scale is None:
        raise ModelFormatError(
            f"{file_name}: {where} is missing the input scale or weight scale that its bias "
            f"{codes_name!r} needs"
        )
    scale = np.multiply(input_scale.astype(np.float32), weight_scale.astype(np.float32))
    if node.op_type == "QGemm":
        # QGemm's C is quantized with scale alpha / beta * a_scale * b_scale.
        # NOTE: tests cover only alpha == beta == 1. For other values the float32 rounding of this
        # product may differ from onnxruntime's.
        factor = _float_attribute(node, "alpha", 1.0) / _float_attribute(node, "beta", 1.0)
        scale = scale if factor == 1.0 else scale * np.float32(factor)
    rank = len(constants.shape(codes_name))
    axis = rank - 1 if scale.size != 1 else None
    return make_quantization(
        codes_name, constants, scale=scale, zero_point=None, axis=axis, where=where, file_name=file_name
    )


def _float_attribute(node: onnx_proto.NodeProto, name: str, default: float) -> float:
    for attribute in node.attribute:
        if attribute.name == name:
            return float(onnx_proto.attribute_value(attribute))
    return default
