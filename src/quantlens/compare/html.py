"""A comparison report as one self-contained HTML page that opens offline.

The plotly.js bundle of the installed plotly package is inlined in a ``<script>`` element, so
the page loads nothing from the network: no CDN, no external scripts, styles or fonts.
"""

from __future__ import annotations

import html
import math
from dataclasses import fields

import plotly.offline

from quantlens.compare.charts import sqnr_figure, worst_layers
from quantlens.compare.report import ActivationRow, ComparisonReport, ReportRow
from quantlens.records import Layer

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }
table { border-collapse: collapse; font-size: 0.85rem; margin-bottom: 1.5rem; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.5rem; text-align: left; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
tr.worst { background: #fde0dd; }
.notes { color: #555; }
"""
ROW_COLUMNS = (
    ("rank", "rank"), ("float_layer", "float layer"), ("quant_layer", "quantized layer"), ("method", "match"),
    ("weight_sqnr_db", "weight SQNR (dB)"), ("weight_rmse_over_scale", "RMSE / scale"),
    ("worst_channel_sqnr_db", "worst channel SQNR (dB)"), ("activation_sqnr_db", "activation SQNR (dB)"),
    ("local_sqnr_db", "local SQNR (dB)"), ("granularity", "granularity"), ("folded_batchnorm", "folded BatchNorm"),
    ("note", "note"),
)


def report_html(report: ComparisonReport, *, worst: int = 3) -> str:
    """Return the whole page: summary, SQNR chart, ranked table, activations, unmatched layers."""
    worst_names = {result.float_name for result in worst_layers(report, worst)}
    chart = sqnr_figure(report, worst=worst).to_html(full_html=False, include_plotlyjs=False)
    title = f"quantlens: {report.float_model.path.name} vs {report.quant_model.path.name}"
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        _summary(report),
        chart,
        f"<h2>Layers, worst first by {report.ranked_by} SQNR</h2>",
        _rows_table(report.to_rows(), worst_names),
        _activations_section(report.activation_rows()),
        _unmatched_section("Unmatched float layers", report.matching.unmatched_float),
        _unmatched_section("Unmatched quantized layers", report.matching.unmatched_quant),
        _notes_section(report.notes),
    ]
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n"
        f"<script type=\"text/javascript\">{plotly.offline.get_plotlyjs()}</script>\n</head>\n<body>\n"
        + "\n".join(section for section in sections if section)
        + "\n</body>\n</html>\n"
    )


def _cell(value: object) -> str:
    if value is None:
        return "<td></td>"
    if isinstance(value, float):
        text = "inf" if math.isinf(value) and value > 0 else f"{value:.4g}"
        return f'<td class="number">{text}</td>'
    if isinstance(value, int):
        return f'<td class="number">{value}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def _summary(report: ComparisonReport) -> str:
    matching = report.matching
    items = [
        f"float model: {report.float_model.path.name} ({report.float_model.format})",
        f"quantized model: {report.quant_model.path.name} ({report.quant_model.format})",
        f"{len(matching.matches)} layers matched; {len(matching.unmatched_float)} float and "
        f"{len(matching.unmatched_quant)} quantized layers unmatched",
    ]
    outputs = report.outputs
    if report.activations is None:
        items.append("weights only: no input was run")
    elif outputs is None:
        items.append(f"inputs: {report.inputs}; the model outputs differ in shape and are not compared")
    else:
        items.append(f"inputs: {report.inputs} ({outputs.samples} samples)")
        items.append(
            f"top-1 agreement {100 * outputs.top1_agreement:.2f}%, mean KL divergence "
            f"{outputs.mean_kl_divergence:.3g} nats, output SQNR {_number(outputs.logits.sqnr_db)} dB"
        )
        if outputs.labelled:
            items.append(
                f"top-1 accuracy on {outputs.labelled} labelled inputs: float {outputs.float_accuracy:.2f}%, "
                f"quantized {outputs.quant_accuracy:.2f}%"
            )
    return "<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in items) + "</ul>"


def _rows_table(rows: list[ReportRow], worst_names: set[str]) -> str:
    header = "".join(f"<th>{html.escape(label)}</th>" for _, label in ROW_COLUMNS)
    body = []
    for row in rows:
        css = ' class="worst"' if row.float_layer in worst_names else ""
        cells = "".join(_cell(getattr(row, name)) for name, _ in ROW_COLUMNS)
        body.append(f"<tr{css}>{cells}</tr>")
    return f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _activations_section(rows: list[ActivationRow]) -> str:
    if not rows:
        return ""
    names = [f.name for f in fields(ActivationRow)]
    header = "".join(f"<th>{html.escape(name.replace('_', ' '))}</th>" for name in names)
    body = "".join("<tr>" + "".join(_cell(getattr(row, name)) for name in names) + "</tr>" for row in rows)
    return (
        "<h2>Every paired activation, in graph order</h2>"
        f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"
    )


def _unmatched_section(title: str, layers: tuple[Layer, ...]) -> str:
    if not layers:
        return f"<h2>{html.escape(title)}</h2><p>none</p>"
    items = "".join(f"<li>{html.escape(layer.name or '(unnamed)')} ({html.escape(layer.op_type)})</li>" for layer in layers)
    return f"<h2>{html.escape(title)}</h2><ul>{items}</ul>"


def _notes_section(notes: tuple[str, ...]) -> str:
    if not notes:
        return ""
    items = "".join(f"<li>{html.escape(note)}</li>" for note in notes)
    return f'<h2>Notes</h2><ul class="notes">{items}</ul>'


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return "inf" if math.isinf(value) else f"{value:.4g}"
