"""Weight error of each matched layer: the float weight against the dequantized one.

The float weight has any BatchNorm the quantizer folded away folded in first (see
:mod:`quantlens.compare.folding`), and the quantized weight is transposed to the float layout
when the formats order axes differently. RMSE / scale uses the quantized weight's own scale,
one per output channel for per-channel quantization.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quantlens.compare.folding import align, comparable_tensor, float_bias, float_weight
from quantlens.compare.matching import LayerMatch
from quantlens.compare.metrics import TensorComparison
from quantlens.errors import ComparisonError
from quantlens.records import Quantization, Tensor


@dataclass(frozen=True, repr=False, eq=False)
class WeightComparison:
    """Error of one matched layer's weight, over the whole tensor and per output channel.

    ``channels`` has one comparison per slice along ``channel_axis`` of the float weight (the
    quantization axis when per-channel, else axis 0; empty for tensors of fewer than 2
    dimensions). ``axis_order`` is the transposition applied to the quantized weight,
    ``folded_batchnorm`` the float BatchNorm folded in before comparing, and ``bias`` the bias
    error when both layers have a bias.
    """

    float_tensor: str
    quant_tensor: str
    tensor: TensorComparison
    channels: tuple[TensorComparison, ...]
    channel_axis: int | None
    bias: TensorComparison | None
    granularity: str
    axis_order: tuple[int, ...]
    folded_batchnorm: str | None = None

    @property
    def sqnr_db(self) -> float | None:
        """SQNR of the whole weight in dB."""
        return self.tensor.sqnr_db

    @property
    def rmse_over_scale(self) -> float | None:
        """RMSE in quantization steps of the whole weight (0.289 for ideal rounding)."""
        return self.tensor.rmse_over_scale

    @property
    def worst_channel(self) -> int | None:
        """Index of the output channel with the lowest SQNR; None without channels."""
        values = [c.sqnr_db for c in self.channels]
        finite = [(value, index) for index, value in enumerate(values) if value is not None]
        return min(finite)[1] if finite else None

    @property
    def worst_channel_sqnr_db(self) -> float | None:
        """SQNR in dB of the worst output channel; None without channels."""
        index = self.worst_channel
        return None if index is None else self.channels[index].sqnr_db

    def __repr__(self) -> str:
        return (
            f"WeightComparison({self.float_tensor!r} vs {self.quant_tensor!r}, {self.granularity}, "
            f"{self.tensor!r}, {len(self.channels)} channels)"
        )


def weight_arrays(match: LayerMatch) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]] | None:
    """Return (float weight, dequantized weight in the float layout, axis order applied).

    The float weight has the matched BatchNorm folded in. Returns None when either layer has no
    comparable weight; raises ComparisonError when the shapes cannot be aligned.
    """
    quant_tensor = comparable_tensor(match.quant_layer)
    reference = float_weight(match.float_layer, match.float_batchnorm)
    if reference is None or quant_tensor is None:
        return None
    values, order = align(np.asarray(quant_tensor.values, dtype=np.float64), reference)
    return reference, values, order


def compare_weights(match: LayerMatch) -> WeightComparison | None:
    """Measure the weight error of one matched layer; None when a side has no weight."""
    float_tensor = comparable_tensor(match.float_layer)
    quant_tensor = comparable_tensor(match.quant_layer)
    arrays = weight_arrays(match)
    if float_tensor is None or quant_tensor is None or arrays is None:
        return None
    reference, values, order = arrays
    quantization = quant_tensor.quantization
    scale, scale_axis = _scale(quantization, order)
    channel_axis = scale_axis
    if channel_axis is None and reference.ndim >= 2:
        # NOTE: axis 0 is the output channel of Conv, Linear and Gemm(transB=1) weights, but an
        # ONNX MatMul or Gemm(transB=0) weight keeps outputs on axis 1, so its rows are inputs.
        channel_axis = 0
    return WeightComparison(
        float_tensor=float_tensor.name,
        quant_tensor=quant_tensor.name,
        tensor=TensorComparison.from_arrays(reference, values, scale=scale, axis=scale_axis),
        channels=_channels(reference, values, scale, scale_axis, channel_axis),
        channel_axis=channel_axis,
        bias=_compare_bias(match),
        granularity=quantization.granularity if quantization is not None else "float",
        axis_order=order,
        folded_batchnorm=match.float_batchnorm.name if match.float_batchnorm is not None else None,
    )


def _scale(quantization: Quantization | None, order: tuple[int, ...]) -> tuple[np.ndarray | None, int | None]:
    if quantization is None:
        return None, None
    if quantization.axis is None:
        return quantization.scale, None
    return quantization.scale, order.index(quantization.axis)


def _channels(
    reference: np.ndarray,
    values: np.ndarray,
    scale: np.ndarray | None,
    scale_axis: int | None,
    channel_axis: int | None,
) -> tuple[TensorComparison, ...]:
    if channel_axis is None:
        return ()
    comparisons = []
    for index in range(reference.shape[channel_axis]):
        channel_scale = scale if scale is None or scale_axis is None else scale[index]
        comparisons.append(
            TensorComparison.from_arrays(
                np.take(reference, index, axis=channel_axis),
                np.take(values, index, axis=channel_axis),
                scale=channel_scale,
            )
        )
    return tuple(comparisons)


def _compare_bias(match: LayerMatch) -> TensorComparison | None:
    reference = float_bias(match.float_layer, match.float_batchnorm)
    quantized: Tensor | None = match.quant_layer.bias
    if reference is None or quantized is None:
        return None
    values = np.asarray(quantized.values, dtype=np.float64)
    if values.shape != reference.shape:
        raise ComparisonError(
            f"bias shapes differ: {reference.shape} in float layer {match.float_name!r} and {values.shape} "
            f"in quantized layer {match.quant_name!r}"
        )
    quantization = quantized.quantization
    scale = None if quantization is None else quantization.scale
    return TensorComparison.from_arrays(reference, values, scale=scale, axis=None if quantization is None else quantization.axis)
