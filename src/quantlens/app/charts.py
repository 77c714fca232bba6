"""Plotly figures built from statistics records: integer-code histograms and per-channel ranges.

Binning happens on the server, so a figure carries one bar per bin (position, width, percent,
bin edges and count) and never the tensor's values: its size depends on the number of bins, not
on the number of elements. Weights are drawn in blue and activations in orange. The value
histogram is not a plotly figure: see ``histogram_widget``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from quantlens.stats import Histogram, Saturation


class Kind(str, enum.Enum):
    """Kind of tensor a chart shows, which sets the bar colour."""

    WEIGHT = "weight"
    ACTIVATION = "activation"


@dataclass(frozen=True)
class Palette:
    """Bar colours: ``strong`` for bins in focus, ``muted`` for the others."""

    strong: str
    muted: str


PALETTES = {
    Kind.WEIGHT: Palette(strong="#1f77b4", muted="rgba(31, 119, 180, 0.28)"),
    Kind.ACTIVATION: Palette(strong="#ff7f0e", muted="rgba(255, 127, 14, 0.28)"),
}
SATURATION_COLOR = "#d62728"  # bars of codes at qmin or qmax
FIGURE_HEIGHT = 340

# Hover text reads a one-line label per bar from customdata.
HOVER_CODE = "code %{x}: %{customdata}<br>%{y:.3g}% of codes<extra></extra>"


def integer_code_figure(
    histogram: Histogram, *, kind: Kind, title: str, saturation: Saturation | None = None
) -> go.Figure:
    """Draw one bar per integer code (bins of width 1, as ``stats.integer_histogram`` makes).

    Bars of the codes equal to qmin or qmax are red when ``saturation`` is given, because
    values that clipped during quantization end up there.
    """
    palette = PALETTES[Kind(kind)]
    codes = _bin_centers(histogram.edges)
    colors: str | list[str] = palette.strong
    if saturation is not None:
        colors = [
            SATURATION_COLOR if code in (saturation.qmin, saturation.qmax) else palette.strong
            for code in codes.round().astype(np.int64).tolist()
        ]
    labels = [f"{count:,} codes" for count in histogram.counts.tolist()]
    figure = go.Figure(_bin_bars(histogram, colors=colors, hover=HOVER_CODE, labels=labels))
    _style(figure, title=title, x_title="integer code", y_title="share of codes (%)")
    return figure


def channel_range_figure(
    low: np.ndarray, high: np.ndarray, *, kind: Kind, title: str, axis: int, y_title: str
) -> go.Figure:
    """Draw one floating bar per channel from its minimum to its maximum.

    ``low`` and ``high`` are the per-channel minimum and maximum along ``axis``, as
    ``stats.channel_ranges`` returns them.
    """
    palette = PALETTES[Kind(kind)]
    channels = np.arange(low.size)
    span = np.asarray(high, dtype=np.float64) - np.asarray(low, dtype=np.float64)
    bar = go.Bar(
        x=channels,
        y=span,
        base=np.asarray(low, dtype=np.float64),
        customdata=[f"min {float(a):.6g}, max {float(b):.6g}" for a, b in zip(low, high)],
        marker={"color": palette.strong},
        hovertemplate="channel %{x}<br>%{customdata}<extra></extra>",
    )
    figure = go.Figure(bar)
    _style(figure, title=title, x_title=f"output channel (axis {axis})", y_title=y_title, percent=False)
    figure.add_hline(y=0, line_width=1, line_color="#888888")
    return figure


def bins_in_range(edges: np.ndarray, low: float, high: float) -> np.ndarray:
    """Return a boolean per bin: True when bin [edge_i, edge_i+1] overlaps [low, high]."""
    edges = np.asarray(edges, dtype=np.float64)
    return (edges[1:] >= low) & (edges[:-1] <= high)


def _bin_centers(edges: np.ndarray) -> np.ndarray:
    edges = np.asarray(edges, dtype=np.float64)
    return (edges[:-1] + edges[1:]) / 2


def _bin_bars(histogram: Histogram, *, colors: str | list[str], hover: str, labels: list[str]) -> go.Bar:
    edges = np.asarray(histogram.edges, dtype=np.float64)
    return go.Bar(
        x=_bin_centers(edges),
        y=histogram.percent,
        width=np.diff(edges),
        customdata=labels,
        marker={"color": colors, "line": {"width": 0}},
        hovertemplate=hover,
        showlegend=False,
    )


def _style(figure: go.Figure, *, title: str, x_title: str, y_title: str, percent: bool = True) -> None:
    figure.update_layout(
        title={"text": title, "x": 0.0, "xanchor": "left"},
        xaxis_title=x_title,
        yaxis={"title": y_title, "ticksuffix": "%" if percent else ""},
        bargap=0.05,
        height=FIGURE_HEIGHT,
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
        template="plotly_white",
    )
