"""Data the app shows for one tensor: the subject, its statistics, code histogram and channels.

A subject is either a layer's constant tensor (weight, bias, other parameter) or a captured
activation. Both are Tensor records, so everything below works on either.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from quantlens import stats
from quantlens.app.charts import Kind
from quantlens.capture.records import Activation
from quantlens.inspect import channel_table
from quantlens.records import Layer, Role, Tensor

# Widest integer-code histogram drawn with one bar per code. Storage types up to 8 bits always
# show their full range; wider ones (int16) show the span of codes present if it fits.
MAX_CODE_BARS = 4096
FULL_RANGE_BITS = 8
VIEW_VALUES = "dequantized values"
VIEW_CODES = "integer codes"


@dataclass(frozen=True, repr=False, eq=False)
class Subject:
    """The tensor on display and where it comes from.

    ``kind`` is WEIGHT for every constant tensor of a layer (weight, bias, parameters) and
    ACTIVATION for a captured output. ``layer`` and ``op_type`` name the layer that owns or
    produced the tensor.
    """

    kind: Kind
    layer: str
    op_type: str
    tensor: Tensor

    @classmethod
    def of_layer(cls, layer: Layer, tensor: Tensor) -> Subject:
        return cls(kind=Kind.WEIGHT, layer=layer.name, op_type=layer.op_type, tensor=tensor)

    @classmethod
    def of_activation(cls, activation: Activation) -> Subject:
        return cls(kind=Kind.ACTIVATION, layer=activation.layer, op_type=activation.op_type, tensor=activation.tensor)

    @property
    def noun(self) -> str:
        """``Activation``, or the tensor's role (``Weight``, ``Bias``, ``Parameter``)."""
        if self.kind is Kind.ACTIVATION:
            return "Activation"
        return str(self.tensor.role).capitalize()

    def title(self, *, integer: bool) -> str:
        """Chart title, e.g. ``Weight stack1.conv1.weight of stack1.conv1 (Conv): integer codes``."""
        if integer:
            view = VIEW_CODES
        elif self.tensor.is_quantized:
            view = VIEW_VALUES
        else:
            view = "values"
        owner = "output of" if self.kind is Kind.ACTIVATION else "of"
        layer = self.layer or "(root)"
        return f"{self.noun} {self.tensor.name} {owner} {layer} ({self.op_type}): {view}"


def uses_codes(tensor: Tensor, view: str | None) -> bool:
    """True when ``view`` requests integer codes and ``tensor`` has them."""
    return view == VIEW_CODES and tensor.is_quantized


def view_values(tensor: Tensor, *, integer: bool) -> np.ndarray:
    """Return the array on display: integer codes when ``integer`` and quantized, else values."""
    return tensor.view(integer=integer and tensor.is_quantized)


def view_histogram(values: np.ndarray, bins: int, *, integer: bool) -> stats.Histogram:
    """Bin the displayed array into ``bins`` bins over its range; integer codes into at most ``bins``.

    Integer codes get bins of one width, a whole number of codes, with edges halfway between
    codes: equal-width bins over the codes' range would hold unequal numbers of codes (5 or 6
    for 255 codes in 50 bins) and show bumps that are not in the data. The last bin ends at
    most ``width - 1`` codes past the largest code.
    """
    if not integer or values.size == 0:
        return stats.histogram(values, bins)
    low, high = int(values.min()), int(values.max())
    span = high - low + 1
    width = -(-span // bins)
    count = -(-span // width)
    return stats.histogram(values, count, value_range=(low - 0.5, low - 0.5 + width * count))


def codes_per_bin(histogram: stats.Histogram) -> int:
    """Return how many integer codes one bin of a ``view_histogram`` of codes spans."""
    return round(float(histogram.edges[1] - histogram.edges[0])) if histogram.bins else 1


def axis_title(histogram: stats.Histogram, *, integer: bool) -> str:
    """Return the x axis title of a ``view_histogram``: values, or codes and codes per bar."""
    if not integer:
        return "value"
    width = codes_per_bin(histogram)
    return VIEW_CODES if width == 1 else f"{VIEW_CODES} ({width} per bar)"


@functools.lru_cache(maxsize=64)
def summarize_view(tensor: Tensor, integer: bool) -> stats.Summary:
    """Summarize the displayed array; cached per tensor record and view."""
    return stats.summarize(view_values(tensor, integer=integer))


def default_range(summary: stats.Summary) -> tuple[float, float]:
    """Return (mean - std, mean + std) to 6 significant digits; (0, 0) without finite values."""
    if summary.mean is None or summary.std is None:
        return 0.0, 0.0
    return _round(summary.mean - summary.std), _round(summary.mean + summary.std)


def format_value(value: float | int | None) -> str:
    """Format a statistic: ``-`` for None, integers as they are, floats to 6 significant digits."""
    if value is None:
        return "-"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return f"{float(value):.6g}"


def statistics_rows(subject: Subject, summary: stats.Summary, *, integer: bool = False) -> list[dict[str, str]]:
    """Return (statistic, value) rows for the statistics panel of the displayed view."""
    tensor = subject.tensor
    dequantized = tensor.is_quantized and not integer
    rows = [
        ("min", format_value(summary.min)),
        ("max", format_value(summary.max)),
        ("mean", format_value(summary.mean)),
        ("std", format_value(summary.std)),
        ("shape", " x ".join(map(str, tensor.shape)) or "scalar"),
        ("elements", f"{summary.count:,}"),
        ("dtype", f"{tensor.dtype}, dequantized for display" if dequantized else tensor.dtype),
    ]
    if summary.nan_count or summary.inf_count:
        rows.append(("NaN / Inf", f"{summary.nan_count:,} / {summary.inf_count:,}"))
    rows.extend(_quantization_rows(tensor))
    return [{"statistic": name, "value": value} for name, value in rows]


def _quantization_rows(tensor: Tensor) -> list[tuple[str, str]]:
    quant = tensor.quantization
    if quant is None:
        return []
    rows = [("quantization", f"{quant.storage_dtype} {quant.granularity}"), ("qmin / qmax", f"{quant.qmin} / {quant.qmax}")]
    if quant.axis is None:
        rows.append(("scale", format_value(float(quant.scale))))
        rows.append(("zero_point", format_value(int(quant.zero_point))))
    else:
        rows.append(("scale", f"{quant.scale.size} per-channel values (table below)"))
        rows.append(("zero_point", f"{quant.zero_point.size} per-channel values (table below)"))
    return rows


def channel_rows(tensor: Tensor) -> list[dict[str, str]]:
    """Return one row per channel of a per-channel quantized tensor (empty for any other)."""
    return [
        {
            "channel": str(row["channel"]),
            "scale": format_value(row["scale"]),
            "zero_point": str(row["zero_point"]),
            "min": format_value(row["min"]),
            "max": format_value(row["max"]),
        }
        for row in channel_table(tensor)
    ]


@dataclass(frozen=True, repr=False, eq=False)
class CodeView:
    """The integer-code histogram of a quantized tensor and its saturation at qmin and qmax.

    ``histogram`` is None when one bar per code would be too many bars (int32 biases), and
    ``note`` then explains why. ``note`` also reports when the bars cover only the codes present.
    """

    histogram: stats.Histogram | None
    saturation: stats.Saturation
    note: str | None = None


def code_view(tensor: Tensor) -> CodeView:
    """Count each integer code of a quantized tensor, one bin per code.

    Storage types of up to 8 bits span qmin to qmax, so saturation is visible at both ends.
    Wider types span the smallest to the largest code present, if that is at most
    ``MAX_CODE_BARS`` codes; otherwise only the saturation is reported.
    """
    quant = tensor.quantization
    if quant is None or tensor.codes is None:
        raise ValueError(f"tensor {tensor.name!r} is not quantized, so it has no integer codes")
    codes = tensor.codes
    saturation = stats.saturation(codes, quant.qmin, quant.qmax)
    if quant.qmax - quant.qmin < 1 << FULL_RANGE_BITS:
        return CodeView(stats.integer_histogram(codes, quant.qmin, quant.qmax), saturation)
    if codes.size == 0:
        return CodeView(None, saturation, note=f"{tensor.name} has no elements")
    low, high = int(codes.min()), int(codes.max())
    if high - low + 1 > MAX_CODE_BARS:
        note = (
            f"{quant.storage_dtype} codes of {tensor.name} span {low} to {high}, more than "
            f"{MAX_CODE_BARS} bars; the histogram above bins them"
        )
        return CodeView(None, saturation, note=note)
    note = f"bars cover the codes present ({low} to {high}), not the full {quant.storage_dtype} range"
    return CodeView(stats.integer_histogram(codes, low, high), saturation, note=note)


def output_channel_axis(op_type: str, tensor: Tensor) -> int:
    """Return the output-channel axis of a weight: its quantization axis if per-channel, else 0.

    MatMul weights are ``(in, out)``, so their output axis is 1; Conv, Gemm (``transB=1``, as
    exporters write it), TFLite and PyTorch Linear weights are output-channel first. Keras
    kernels put output channels last (Conv2D ``HWIO``, Dense ``(in, out)``), except the
    transposed convolutions, whose kernels end with ``(out, in)``.
    """
    quant = tensor.quantization
    if quant is not None and quant.axis is not None:
        return quant.axis
    rank = len(tensor.shape)
    if "MatMul" in op_type and rank == 2:
        return 1
    if op_type in KERAS_TRANSPOSED and rank >= 2:
        return rank - 2
    if op_type in KERAS_OUTPUT_LAST:
        return rank - 1
    return 0


# Keras layer class names (the HDF5 reader's op types) whose kernels end with output channels,
# and the transposed convolutions, whose kernels end with (out, in).
KERAS_OUTPUT_LAST = frozenset({"Conv1D", "Conv2D", "Conv3D", "Dense", "DepthwiseConv2D", "SeparableConv2D"})
KERAS_TRANSPOSED = frozenset({"Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"})


def has_channel_chart(subject: Subject) -> bool:
    """True for weight tensors with at least two dimensions and elements."""
    tensor = subject.tensor
    return subject.kind is Kind.WEIGHT and tensor.role is Role.WEIGHT and len(tensor.shape) >= 2 and tensor.size > 0


def _round(value: float) -> float:
    if not math.isfinite(value) or value == 0:
        return value
    return float(f"{value:.6g}")


def range_error(value: Mapping[str, object] | None) -> str | None:
    """Return why a submitted ``{"low": ..., "high": ...}`` range is invalid, else None."""
    if value is None:
        return None
    raw_low, raw_high = value.get("low"), value.get("high")
    low, high = _number(raw_low), _number(raw_high)
    if low is None or high is None:
        return (
            f"Enter both a minimum and a maximum as numbers (min is {_describe(raw_low)}, max is "
            f"{_describe(raw_high)}), then apply the range again."
        )
    if math.isnan(low) or math.isnan(high):
        return "The minimum and maximum must be numbers, not NaN."
    if low > high:
        return f"The minimum {low:g} is greater than the maximum {high:g}; swap them and apply the range again."
    return None


def _number(value: object) -> float | None:
    """Read a range field: a number, or text such as ``1e-5`` (the fields are text inputs)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _describe(value: object) -> str:
    return "empty" if value is None or value == "" else repr(value)


def submitted_range(value: Mapping[str, object] | None) -> tuple[float, float] | None:
    """Return the (low, high) of a valid submitted range; None before a submission."""
    if value is None or range_error(value) is not None:
        return None
    return _number(value["low"]), _number(value["high"])  # type: ignore[return-value]
