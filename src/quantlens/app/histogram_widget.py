"""The app's main histogram: an anywidget that draws server-binned bars as SVG in the browser.

The chart needs no chart library in the page, so it draws as soon as its data arrives rather
than after plotly's bundle has loaded. It draws one bar per bin with the y axis in percent,
shows a bar's bin range, count and percent on hover, and highlights the bins of a value range.
A horizontal drag sets its ``selection`` trait to the value range dragged across; a click
clears it. Only the bins travel to the browser, so its size does not grow with the tensor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from importlib import resources
from typing import Any

import anywidget
import numpy as np
import traitlets

from quantlens.app.charts import PALETTES, Kind, bins_in_range
from quantlens.stats import Histogram


class HistogramWidget(anywidget.AnyWidget):
    """Histogram chart; ``spec`` comes from :func:`histogram_spec`, ``selection`` from the user."""

    _esm = resources.files("quantlens.app").joinpath("histogram.js").read_text(encoding="utf-8")
    _css = """
    .ql-histogram { width: 100%; font: 12px system-ui, sans-serif; user-select: none; }
    .ql-histogram .ql-plot { position: relative; }
    .ql-histogram svg { display: block; overflow: visible; }
    .ql-histogram text { fill: #444; }
    .ql-histogram .ql-title { font-size: 16px; color: #2a3f5f; margin: 8px 4px 6px; overflow-wrap: anywhere; }
    .ql-histogram .ql-grid { stroke: #e8ecf1; }
    .ql-histogram .ql-baseline { stroke: #888; }
    .ql-histogram .ql-overlay { cursor: crosshair; }
    .ql-histogram .ql-selection { fill: rgba(0, 0, 0, 0.08); stroke: #555; stroke-dasharray: 4 3; pointer-events: none; }
    .ql-histogram .ql-tip { position: absolute; pointer-events: none; background: #fff; border: 1px solid #bbb;
      border-radius: 4px; padding: 4px 6px; white-space: nowrap; box-shadow: 0 1px 3px rgba(0, 0, 0, 0.15); }
    """
    spec = traitlets.Dict().tag(sync=True)
    selection = traitlets.List(traitlets.Float(), default_value=[]).tag(sync=True)


def histogram_spec(
    histogram: Histogram,
    *,
    kind: Kind,
    title: str,
    x_title: str,
    highlight: tuple[float, float] | None = None,
    integer: bool = False,
    selectable: bool = True,
) -> dict[str, Any]:
    """Return what :class:`HistogramWidget` draws: edges, percents, bar labels and colours.

    With ``highlight`` (low, high), bins that overlap [low, high] keep the strong colour, the
    others are muted, and the range is shaded. With ``integer``, the edges lie halfway between
    integer codes (as ``views.view_histogram`` makes them) and the labels name the codes.
    Without ``selectable``, dragging draws no selection (for charts whose range nothing reads).
    """
    palette = PALETTES[Kind(kind)]
    edges = np.asarray(histogram.edges, dtype=np.float64)
    if highlight is None:
        colors = [palette.strong] * histogram.bins
    else:
        inside = bins_in_range(edges, *highlight)
        colors = [palette.strong if flag else palette.muted for flag in inside.tolist()]
    labels = [
        f"{_bin_text(low, high, integer)} ({count:,} {'element' if count == 1 else 'elements'})"
        for low, high, count in zip(edges[:-1].tolist(), edges[1:].tolist(), histogram.counts.tolist())
    ]
    return {
        "title": title,
        "x_title": x_title,
        "y_title": "share of elements (%)",
        "unit": "of elements",
        "edges": edges.tolist(),
        "percents": np.asarray(histogram.percent, dtype=np.float64).tolist(),
        "labels": labels,
        "colors": colors,
        "color": palette.strong,
        "shade": None if highlight is None else [float(highlight[0]), float(highlight[1])],
        "selectable": selectable,
    }


def _bin_text(low: float, high: float, integer: bool) -> str:
    if not integer:
        return f"{low:.6g} to {high:.6g}"
    first, last = math.ceil(low), math.floor(high)
    return f"code {first}" if first == last else f"codes {first} to {last}"


def dragged_range(selection: Sequence[float] | None) -> tuple[float, float] | None:
    """Return the (low, high) range of a widget ``selection``, or None when nothing is dragged."""
    if not selection or len(selection) != 2:
        return None
    low, high = sorted(float(bound) for bound in selection)
    return low, high
