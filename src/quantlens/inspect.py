"""Per-tensor reports built from records and statistics, shared by the CLI and the app."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quantlens import stats
from quantlens.errors import InputError
from quantlens.records import Layer, Model, Tensor


@dataclass(frozen=True)
class TensorRow:
    """One row of the layer overview: a tensor of a layer, with its summary statistics."""

    layer: str
    op_type: str
    tensor: str
    role: str
    shape: tuple[int, ...]
    dtype: str
    quantization: str
    summary: stats.Summary

    def to_dict(self) -> dict[str, object]:
        return {
            "layer": self.layer,
            "op_type": self.op_type,
            "tensor": self.tensor,
            "role": self.role,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "quantization": self.quantization,
            **self.summary.to_dict(),
        }


@dataclass(frozen=True, repr=False, eq=False)
class TensorReport:
    """Everything shown for one tensor: the view's summary, histogram and quantization."""

    layer: Layer
    tensor: Tensor
    integer: bool
    summary: stats.Summary
    histogram: stats.Histogram
    saturation: stats.Saturation | None
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        quant = self.tensor.quantization
        data: dict[str, object] = {
            "layer": self.layer.name,
            "op_type": self.layer.op_type,
            "tensor": self.tensor.name,
            "role": str(self.tensor.role),
            "shape": list(self.tensor.shape),
            "dtype": self.tensor.dtype,
            "view": "integer" if self.integer else "values",
            "summary": self.summary.to_dict(),
            "histogram": {
                "edges": self.histogram.edges.tolist(),
                "counts": self.histogram.counts.tolist(),
            },
        }
        if quant is not None:
            data["quantization"] = {
                "storage_dtype": quant.storage_dtype,
                "axis": quant.axis,
                "qmin": quant.qmin,
                "qmax": quant.qmax,
                "scale": quant.scale.tolist(),
                "zero_point": quant.zero_point.tolist(),
            }
        if self.warnings:
            data["warnings"] = list(self.warnings)
        if self.saturation is not None:
            data["saturation"] = {
                "percent_at_qmin": self.saturation.percent_at_qmin,
                "percent_at_qmax": self.saturation.percent_at_qmax,
            }
        return data


def overview(model: Model) -> list[TensorRow]:
    """Summarize every tensor of every layer in graph order (dequantized values)."""
    rows = []
    for layer, tensor in model.tensors():
        rows.append(
            TensorRow(
                layer=layer.name,
                op_type=layer.op_type,
                tensor=tensor.name,
                role=str(tensor.role),
                shape=tensor.shape,
                dtype=tensor.dtype,
                quantization=tensor.quantization.summary() if tensor.quantization else "",
                summary=stats.summarize(tensor.values),
            )
        )
    return rows


def report_tensor(
    model: Model, layer_name: str, tensor: str = "weight", *, integer: bool = False, bins: int = 50
) -> TensorReport:
    """Build the report of one tensor; ``integer`` selects the integer codes of a quantized one.

    The integer view bins one bar per code from qmin to qmax when the storage type has at most
    16 bits (int32 biases fall back to ``bins`` equal-width bins).
    """
    layer = model.layer(layer_name)
    chosen = layer.tensor(tensor)
    if integer and chosen.quantization is None:
        raise InputError(
            f"tensor {chosen.name!r} of layer {layer.name!r} is not quantized, so it has no "
            "integer codes; drop --int"
        )
    data = chosen.view(integer=integer)
    quant = chosen.quantization
    if integer and quant is not None and quant.qmax - quant.qmin < 1 << 16:
        histogram = stats.integer_histogram(data, quant.qmin, quant.qmax)
        summary = stats.summarize(data)
    else:
        summary, histogram = stats.summarize_with_histogram(data, bins)
    saturation = None
    if quant is not None and chosen.codes is not None:
        saturation = stats.saturation(chosen.codes, quant.qmin, quant.qmax)
    return TensorReport(
        layer=layer,
        tensor=chosen,
        integer=integer,
        summary=summary,
        histogram=histogram,
        saturation=saturation,
        warnings=tuple(tensor_warnings(chosen, summary)),
    )


def tensor_warnings(tensor: Tensor, summary: stats.Summary) -> list[str]:
    """List what makes a tensor's numbers suspect: invalid scales, NaN or infinite values."""
    found = []
    quant = tensor.quantization
    if quant is not None:
        bad = quant.invalid_scales()
        if bad.size:
            values = quant.scale.reshape(-1)[bad[:5]].tolist()
            where = "" if quant.axis is None else f" at channel(s) {bad[:5].tolist()}"
            found.append(
                f"tensor {tensor.name!r} has {bad.size} invalid scale(s){where}: {values}; scales must be "
                "finite and > 0, so its dequantized values are meaningless. Re-quantize the model."
            )
    if summary.nan_count or summary.inf_count:
        found.append(
            f"tensor {tensor.name!r} holds {summary.nan_count} NaN and {summary.inf_count} infinite "
            "values, left out of min, max, mean, std and the histogram"
        )
    return found


def channel_table(tensor: Tensor) -> list[dict[str, float | int]]:
    """Return one row per channel of a per-channel quantized tensor: scale, zero_point, range."""
    quant = tensor.quantization
    if quant is None or quant.axis is None:
        return []
    low, high = stats.channel_ranges(tensor.values, quant.axis)
    zero_points = np.broadcast_to(quant.zero_point, quant.scale.shape)
    return [
        {
            "channel": index,
            "scale": float(quant.scale[index]),
            "zero_point": int(zero_points[index]),
            "min": float(low[index]),
            "max": float(high[index]),
        }
        for index in range(quant.scale.size)
    ]
