"""The comparison report: matched layers ranked worst-first, with flat rows for CSV, JSON and HTML.

Layers are ranked by activation SQNR when activations were compared, else by weight SQNR, lowest
(worst) first. Layers without that number follow, ranked by weight SQNR. The writers return
text and never touch the file system, so callers choose where it goes.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, fields

from quantlens.compare.activations import ActivationComparison, ActivationResult, OutputAgreement
from quantlens.compare.matching import LayerMatch, LayerMatching
from quantlens.compare.weights import WeightComparison
from quantlens.records import Layer, Model


@dataclass(frozen=True, repr=False, eq=False)
class LayerResult:
    """Everything measured on one matched layer. ``weight_note`` gives the reason ``weight`` is missing."""

    match: LayerMatch
    weight: WeightComparison | None
    activation: ActivationResult | None
    weight_note: str | None = None

    @property
    def float_name(self) -> str:
        return self.match.float_name

    @property
    def quant_name(self) -> str:
        return self.match.quant_name

    @property
    def weight_sqnr_db(self) -> float | None:
        return None if self.weight is None else self.weight.sqnr_db

    @property
    def activation_sqnr_db(self) -> float | None:
        return None if self.activation is None else self.activation.sqnr_db

    @property
    def local_sqnr_db(self) -> float | None:
        return None if self.activation is None else self.activation.local_sqnr_db

    def __repr__(self) -> str:
        return (
            f"LayerResult({self.float_name!r} -> {self.quant_name!r}, weight {_text(self.weight_sqnr_db)} dB, "
            f"activation {_text(self.activation_sqnr_db)} dB)"
        )


@dataclass(frozen=True)
class ReportRow:
    """One matched layer as a flat row; SQNR in dB, RMSE / scale in quantization steps."""

    rank: int
    float_layer: str
    quant_layer: str
    op_type: str
    method: str
    weight_sqnr_db: float | None
    weight_rmse_over_scale: float | None
    worst_channel: int | None
    worst_channel_sqnr_db: float | None
    granularity: str | None
    folded_batchnorm: str | None
    activation_sqnr_db: float | None
    local_sqnr_db: float | None
    activation_cosine: float | None
    activation_mse: float | None
    float_activation: str | None
    quant_activation: str | None
    note: str | None


@dataclass(frozen=True)
class ActivationRow:
    """One paired activation as a flat row; SQNR in dB, KL in nats."""

    float_activation: str
    quant_activation: str
    float_layer: str
    quant_layer: str
    method: str
    sqnr_db: float | None
    local_sqnr_db: float | None
    cosine: float | None
    mse: float | None
    max_abs_error: float
    nonfinite: int
    local_note: str | None


@dataclass(frozen=True, repr=False, eq=False)
class ComparisonReport:
    """A float model compared with its quantized version.

    ``layers`` is ranked worst-first (module docstring); ``activations`` is None when no input
    was run (weights only). ``inputs`` describes the inputs, e.g. ``cifar10:0-99``.
    """

    float_model: Model
    quant_model: Model
    matching: LayerMatching
    layers: tuple[LayerResult, ...]
    activations: ActivationComparison | None = None
    inputs: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def outputs(self) -> OutputAgreement | None:
        return None if self.activations is None else self.activations.outputs

    @property
    def ranked_by(self) -> str:
        """``"activation"`` or ``"weight"``: the SQNR the ranking uses."""
        return "activation" if self.activations is not None else "weight"

    def in_graph_order(self) -> list[LayerResult]:
        """Return the layer results in the float model's graph order."""
        return sorted(self.layers, key=lambda result: result.match.float_layer.index)

    def to_rows(self) -> list[ReportRow]:
        """Return one flat row per matched layer, worst first."""
        return [_row(rank, result) for rank, result in enumerate(self.layers, start=1)]

    def activation_rows(self) -> list[ActivationRow]:
        """Return one flat row per paired activation, in float graph order."""
        if self.activations is None:
            return []
        return [_activation_row(result) for result in self.activations.results]

    def to_csv(self) -> str:
        """Return the ranked rows as CSV text with a header; empty cells for missing values."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([f.name for f in fields(ReportRow)])
        for row in self.to_rows():
            writer.writerow(["" if value is None else value for value in asdict(row).values()])
        return buffer.getvalue()

    def to_json(self) -> str:
        """Return the report as JSON text. Infinite SQNR is written as the string ``"inf"``."""
        data = {
            "float_model": {"path": str(self.float_model.path), "format": self.float_model.format},
            "quant_model": {"path": str(self.quant_model.path), "format": self.quant_model.format},
            "inputs": self.inputs,
            "samples": None if self.activations is None else self.activations.samples,
            "ranked_by": self.ranked_by,
            "layers": [asdict(row) for row in self.to_rows()],
            "activations": [asdict(row) for row in self.activation_rows()],
            "unmatched_float": [_layer_entry(layer) for layer in self.matching.unmatched_float],
            "unmatched_quant": [_layer_entry(layer) for layer in self.matching.unmatched_quant],
            "outputs": None if self.outputs is None else _outputs_entry(self.outputs),
            "notes": list(self.notes),
        }
        return json.dumps(_json_safe(data), indent=2, allow_nan=False)

    def to_html(self, *, worst: int = 3) -> str:
        """Return a self-contained HTML page: ranked table and per-layer SQNR chart, no network use."""
        from quantlens.compare.html import report_html

        return report_html(self, worst=worst)

    def __repr__(self) -> str:
        return (
            f"ComparisonReport({self.float_model.path.name!r} vs {self.quant_model.path.name!r}, "
            f"{len(self.layers)} layers ranked by {self.ranked_by} SQNR)"
        )


def rank_layers(results: list[LayerResult], *, by_activation: bool) -> tuple[LayerResult, ...]:
    """Sort worst-first: by activation SQNR (when ``by_activation``) else weight SQNR; None last."""

    def key(result: LayerResult) -> tuple[bool, float, bool, float]:
        primary = result.activation_sqnr_db if by_activation else result.weight_sqnr_db
        secondary = result.weight_sqnr_db
        return (primary is None, primary or 0.0, secondary is None, secondary or 0.0)

    return tuple(sorted(results, key=key))


def _row(rank: int, result: LayerResult) -> ReportRow:
    weight, activation = result.weight, result.activation
    accumulated = None if activation is None else activation.accumulated
    notes = [note for note in (result.weight_note, None if activation is None else activation.local_note) if note]
    return ReportRow(
        rank=rank,
        float_layer=result.float_name,
        quant_layer=result.quant_name,
        op_type=result.match.float_layer.op_type,
        method=str(result.match.method),
        weight_sqnr_db=result.weight_sqnr_db,
        weight_rmse_over_scale=None if weight is None else weight.rmse_over_scale,
        worst_channel=None if weight is None else weight.worst_channel,
        worst_channel_sqnr_db=None if weight is None else weight.worst_channel_sqnr_db,
        granularity=None if weight is None else weight.granularity,
        folded_batchnorm=None if weight is None else weight.folded_batchnorm,
        activation_sqnr_db=result.activation_sqnr_db,
        local_sqnr_db=result.local_sqnr_db,
        activation_cosine=None if accumulated is None else accumulated.cosine_similarity,
        activation_mse=None if accumulated is None else accumulated.mse,
        float_activation=None if activation is None else activation.pair.float_name,
        quant_activation=None if activation is None else activation.pair.quant_name,
        note="; ".join(notes) or None,
    )


def _activation_row(result: ActivationResult) -> ActivationRow:
    pair, accumulated = result.pair, result.accumulated
    return ActivationRow(
        float_activation=pair.float_name,
        quant_activation=pair.quant_name,
        float_layer=pair.float_layer,
        quant_layer=pair.quant_layer,
        method=pair.method,
        sqnr_db=accumulated.sqnr_db,
        local_sqnr_db=result.local_sqnr_db,
        cosine=accumulated.cosine_similarity,
        mse=accumulated.mse,
        max_abs_error=accumulated.max_abs_error,
        nonfinite=accumulated.nonfinite,
        local_note=result.local_note,
    )


def _layer_entry(layer: Layer) -> dict[str, object]:
    return {"name": layer.name, "op_type": layer.op_type, "index": layer.index}


def _outputs_entry(outputs: OutputAgreement) -> dict[str, object]:
    return {
        "samples": outputs.samples,
        "top1_agreement": outputs.top1_agreement,
        "mean_kl_divergence": outputs.mean_kl_divergence,
        "logits_sqnr_db": outputs.logits.sqnr_db,
        "labelled": outputs.labelled,
        "float_accuracy": outputs.float_accuracy,
        "quant_accuracy": outputs.quant_accuracy,
    }


def _json_safe(value: object) -> object:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    return value


def _text(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"
