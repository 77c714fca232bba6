"""Plotly figures for the float vs quantized comparison: SQNR per layer, histograms, scatter.

Figures carry summaries, never whole tensors: histograms are binned on the server with
:func:`quantlens.stats.histogram`, and the scatter plot draws a random sample of at most
``max_points`` element pairs.
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

from quantlens.compare.matching import LayerMatch
from quantlens.compare.report import ComparisonReport, LayerResult
from quantlens.compare.weights import weight_arrays
from quantlens.errors import ComparisonError
from quantlens.stats import histogram

FLOAT_COLOR = "#1f77b4"
QUANT_COLOR = "#ff7f0e"
LOCAL_COLOR = "#2ca02c"
WORST_COLOR = "#d62728"
FIGURE_HEIGHT = 380
DEFAULT_MAX_POINTS = 5000


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def worst_layers(report: ComparisonReport, count: int) -> list[LayerResult]:
    """Return the ``count`` worst layers of the ranking that have the ranked SQNR."""
    by_activation = report.ranked_by == "activation"
    measured = [r for r in report.layers if (r.activation_sqnr_db if by_activation else r.weight_sqnr_db) is not None]
    return measured[:count]


def sqnr_figure(report: ComparisonReport, *, worst: int = 3) -> go.Figure:
    """Draw SQNR in dB per matched layer in float graph order; the ``worst`` layers get red markers.

    One line per measurement present: weight, activation and local SQNR. Identical tensors
    (infinite SQNR) leave a gap in their line.
    """
    layers = report.in_graph_order()
    names = [r.float_name for r in layers]
    figure = go.Figure()
    series = [("weight SQNR", [r.weight_sqnr_db for r in layers], FLOAT_COLOR)]
    if report.activations is not None:
        series.append(("activation SQNR", [r.activation_sqnr_db for r in layers], QUANT_COLOR))
        series.append(("local SQNR", [r.local_sqnr_db for r in layers], LOCAL_COLOR))
    for label, values, color in series:
        if all(v is None for v in values):
            continue
        figure.add_trace(
            go.Scatter(
                x=names, y=[_finite_or_none(v) for v in values], mode="lines+markers", name=label,
                line={"color": color}, hovertemplate="%{x}<br>%{y:.2f} dB<extra>" + label + "</extra>",
            )
        )
    _mark_worst(figure, report, worst)
    figure.update_layout(
        height=FIGURE_HEIGHT, margin={"l": 60, "r": 20, "t": 40, "b": 120},
        title=f"SQNR per layer (higher is better), worst {worst} by {report.ranked_by} SQNR marked",
        xaxis={"title": "float layer (graph order)", "tickangle": -45},
        yaxis={"title": "SQNR (dB)"}, legend={"orientation": "h", "y": 1.12},
    )
    return figure


def _mark_worst(figure: go.Figure, report: ComparisonReport, worst: int) -> None:
    marked = worst_layers(report, worst)
    if not marked:
        return
    by_activation = report.ranked_by == "activation"
    values = [_finite_or_none(r.activation_sqnr_db if by_activation else r.weight_sqnr_db) for r in marked]
    figure.add_trace(
        go.Scatter(
            x=[r.float_name for r in marked], y=values, mode="markers+text", name=f"worst {len(marked)}",
            marker={"color": WORST_COLOR, "size": 14, "symbol": "x"},
            text=[f"#{rank}" for rank in range(1, len(marked) + 1)], textposition="bottom center",
            hovertemplate="%{x}<br>%{y:.2f} dB<extra>worst</extra>",
        )
    )


def _shared_range(float_values: np.ndarray, quant_values: np.ndarray) -> tuple[float, float]:
    both = np.concatenate([np.ravel(float_values), np.ravel(quant_values)]).astype(np.float64)
    finite = both[np.isfinite(both)]
    if finite.size == 0:
        return 0.0, 1.0
    return float(finite.min()), float(finite.max())


def histogram_overlay_figure(
    float_values: np.ndarray, quant_values: np.ndarray, *, bins: int = 100, title: str = ""
) -> go.Figure:
    """Overlay the histograms of float and dequantized values, binned over one shared range.

    The y axis is the percent of each tensor's finite elements per bin, so both bars are
    comparable even when the tensors differ in size.
    """
    value_range = _shared_range(float_values, quant_values)
    figure = go.Figure()
    for label, values, color in (("float", float_values, FLOAT_COLOR), ("dequantized", quant_values, QUANT_COLOR)):
        binned = histogram(np.asarray(values), bins, value_range=value_range)
        centers = (binned.edges[:-1] + binned.edges[1:]) / 2
        figure.add_trace(
            go.Bar(
                x=centers, y=binned.percent, width=np.diff(binned.edges), name=label, opacity=0.55,
                marker={"color": color}, hovertemplate="%{x:.4g}<br>%{y:.3g}%<extra>" + label + "</extra>",
            )
        )
    figure.update_layout(
        barmode="overlay", height=FIGURE_HEIGHT, title=title or "float and dequantized values",
        xaxis={"title": "value"}, yaxis={"title": "% of elements"}, margin={"l": 60, "r": 20, "t": 40, "b": 50},
    )
    return figure


def scatter_figure(
    float_values: np.ndarray,
    quant_values: np.ndarray,
    *,
    max_points: int = DEFAULT_MAX_POINTS,
    seed: int = 0,
    title: str = "",
) -> go.Figure:
    """Plot dequantized against float values for a random sample of at most ``max_points`` elements.

    Points on the dashed diagonal are exact; vertical spread is the quantization error.
    """
    x = np.ravel(float_values)
    y = np.ravel(quant_values)
    if x.shape != y.shape:
        raise ComparisonError(f"scatter needs tensors of equal size, got {x.size} and {y.size} elements")
    if max_points < 1:
        raise ComparisonError(f"max_points must be at least 1, got {max_points}")
    if x.size > max_points:
        chosen = np.sort(np.random.default_rng(seed).choice(x.size, size=max_points, replace=False))
        x, y = x[chosen], y[chosen]
    low, high = _shared_range(x, y)
    figure = go.Figure(
        [
            go.Scattergl(x=x, y=y, mode="markers", name="elements", marker={"size": 4, "color": QUANT_COLOR, "opacity": 0.5}),
            go.Scatter(x=[low, high], y=[low, high], mode="lines", name="y = x", line={"color": "gray", "dash": "dash"}),
        ]
    )
    suffix = f" ({x.size:,} sampled elements)" if np.ravel(float_values).size > max_points else ""
    figure.update_layout(
        height=FIGURE_HEIGHT, title=(title or "dequantized vs float") + suffix,
        xaxis={"title": "float"}, yaxis={"title": "dequantized"}, margin={"l": 60, "r": 20, "t": 40, "b": 50},
    )
    return figure


def _weights(match: LayerMatch) -> tuple[np.ndarray, np.ndarray]:
    arrays = weight_arrays(match)
    if arrays is None:
        raise ComparisonError(f"layers {match.float_name!r} and {match.quant_name!r} have no weights to compare")
    return arrays[0], arrays[1]


def weight_histogram_figure(match: LayerMatch, *, bins: int = 100) -> go.Figure:
    """Overlay the float (BatchNorm folded) and dequantized weight histograms of a matched layer."""
    reference, values = _weights(match)
    return histogram_overlay_figure(reference, values, bins=bins, title=f"weights of {match.float_name} / {match.quant_name}")


def weight_scatter_figure(match: LayerMatch, *, max_points: int = DEFAULT_MAX_POINTS, seed: int = 0) -> go.Figure:
    """Scatter the dequantized against the float weights of a matched layer."""
    reference, values = _weights(match)
    return scatter_figure(reference, values, max_points=max_points, seed=seed, title=f"weights of {match.float_name}")
