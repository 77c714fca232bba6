"""Case: bytes of one tensor's histogram chart, as marimo sends it to the browser.

quantlens bins on the server. Its value histogram is an anywidget
(``quantlens.app.histogram_widget``) whose state carries one bar per bin; marimo sends that state,
the widget's script and style included, when the widget opens. Its integer-code chart is a
plotly figure with one bar per code. The usual notebook approach hands every value to
``go.Histogram(x=values)``, and plotly.js bins them in the browser. Plotly figures are
serialized with ``plotly.io.to_json``, which is what ``mo.ui.plotly`` and marimo's plotly
formatter send (marimo 0.25).
"""

from __future__ import annotations

from quantlens_bench.measure import Quantity, Row, format_count, run_worker

LIMIT_BYTES = 50 * 1024
# The app's bins slider goes up to 200, so that is the largest value chart it builds.
APP_MAX_BINS = 200


def measure_payload(sizes: list[int], bins: int, seed: int = 0) -> dict[str, object]:
    """Worker task: JSON bytes of both charts for normal random float32 tensors of each size."""
    import json

    import numpy as np
    import plotly.graph_objects as go
    import plotly.io as pio

    from quantlens import stats
    from quantlens.app import charts, histogram_widget

    rng = np.random.default_rng(seed)
    results = []
    for size in sizes:
        values = rng.standard_normal(size, dtype=np.float32)
        histogram = stats.histogram(values, bins)
        low, high = float(np.quantile(values, 0.05)), float(np.quantile(values, 0.95))
        # A highlighted range gives every bar its own colour: the largest chart the app draws.
        spec = histogram_widget.histogram_spec(
            histogram, kind=charts.Kind.WEIGHT, title=f"tensor of {size} values", x_title="value",
            highlight=(low, high),
        )
        state = histogram_widget.HistogramWidget(spec=spec).get_state()
        raw = go.Figure(go.Histogram(x=values))
        results.append(
            {
                "size": size,
                "quantlens": len(json.dumps(state).encode()),
                "raw": len(pio.to_json(raw).encode()),
            }
        )
    codes = rng.integers(-128, 128, size=sizes[-1], dtype=np.int8)
    code_figure = charts.integer_code_figure(
        stats.integer_histogram(codes, -128, 127), kind=charts.Kind.WEIGHT, title="int8 codes",
        saturation=stats.saturation(codes, -128, 127),
    )
    code_raw = go.Figure(go.Histogram(x=codes))
    return {
        "charts": results,
        "codes": {
            "size": sizes[-1],
            "quantlens": len(pio.to_json(code_figure).encode()),
            "raw": len(pio.to_json(code_raw).encode()),
        },
    }


def rows(*, sizes: list[int]) -> list[Row]:
    """Measure every size in one worker and return one row per size, plus the int8 code chart."""
    result = run_worker("payload", {"sizes": sizes, "bins": APP_MAX_BINS})
    table = []
    for chart in result.data["charts"]:  # type: ignore[union-attr]
        size = int(chart["size"])
        table.append(_row(f"chart payload, {format_count(size)} float32 values", chart, f"{APP_MAX_BINS} bins, highlighted range"))
    codes = result.data["codes"]
    table.append(_row(f"chart payload, {format_count(int(codes['size']))} int8 codes", codes, "256 code bars, saturation colours"))  # type: ignore[index]
    return table


def _row(case: str, chart: dict[str, int], notes: str) -> Row:
    quantlens = Quantity(chart["quantlens"], "bytes")
    return Row(
        case=case,
        quantlens=quantlens,
        compared=Quantity(chart["raw"], "bytes"),
        compared_label="go.Histogram(x=values)",
        target="<= 50 KB",
        met=quantlens.value <= LIMIT_BYTES,
        notes=notes,
    )
