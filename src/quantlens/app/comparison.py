"""The app's Compare view: which models and inputs to compare, cached reports and what to show.

Reports come from :mod:`quantlens.compare` and are cached per (float model file, quantized model
file, their modification times, trust, inputs, CIFAR-10 folder), so every viewer of one server
shares them. Models are picked by catalog label and inputs are CIFAR-10 indices or a random
seed, never a path, so the Compare view opens only files in the app's model list.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import plotly.graph_objects as go

from quantlens.app import session
from quantlens.app.catalog import ModelCatalog
from quantlens.compare import ComparisonReport, build_report, compare_activations, match_layers
from quantlens.compare import charts as compare_charts
from quantlens.compare.report import LayerResult
from quantlens.errors import ComparisonError, DatasetError, DatasetNotFoundError, InputError
from quantlens.inputs import CIFAR10_TEST_SIZE, InputBatch, cifar10_samples, random_input
from quantlens.records import Model

logger = logging.getLogger(__name__)

INPUT_NONE = "weights only"
INPUT_CIFAR10 = "weights and activations on CIFAR-10 test images"
INPUT_RANDOM = "weights and activations on random input"
INPUTS = (INPUT_NONE, INPUT_CIFAR10, INPUT_RANDOM)
MAX_IMAGES = 64  # both models run on every image in the request, so this bounds the wait
DEFAULT_IMAGES = 8
DEFAULT_FLOAT = "resnet8.onnx"
DEFAULT_QUANT = "resnet8_int8.onnx"
WORST_MARKED = 3
OVERLAY_BINS = 100
SQNR_COLUMNS = ("weight SQNR (dB)", "activation SQNR (dB)", "local SQNR (dB)")
RMSE_COLUMN = "RMSE / scale"


@dataclass(frozen=True)
class CompareInputs:
    """The inputs both models run on: none (weights only), CIFAR-10 test images or one random input.

    ``start`` and ``count`` select CIFAR-10 test images ``start`` to ``start + count - 1``;
    ``seed`` seeds the random input. Fields that the source does not use are 0, so equal
    requests compare equal and share one cached report.
    """

    source: str = INPUT_NONE
    start: int = 0
    count: int = 0
    seed: int = 0

    @classmethod
    def from_widgets(
        cls, source: str, *, start: float | None, count: float | None, seed: float | None
    ) -> CompareInputs:
        """Build the inputs from widget values; raises InputError naming the invalid value."""
        if source == INPUT_NONE:
            return cls()
        if source == INPUT_RANDOM:
            return cls(source=source, seed=_whole_number("random seed", seed, 0, None))
        if source != INPUT_CIFAR10:
            raise InputError(f"unknown comparison input {source!r}; choose one of {', '.join(INPUTS)}")
        first = _whole_number("first CIFAR-10 test index", start, 0, CIFAR10_TEST_SIZE - 1)
        count_ = _whole_number("number of CIFAR-10 images", count, 1, MAX_IMAGES)
        if first + count_ > CIFAR10_TEST_SIZE:
            raise InputError(
                f"CIFAR-10 test images {first} to {first + count_ - 1} run past the last index "
                f"{CIFAR10_TEST_SIZE - 1}; lower the first index or the number of images"
            )
        return cls(source=source, start=first, count=count_)

    @property
    def runs_models(self) -> bool:
        return self.source != INPUT_NONE

    @property
    def description(self) -> str | None:
        """The inputs in the syntax of ``quantlens compare --input``, e.g. ``cifar10:0-7``; None for none."""
        if self.source == INPUT_CIFAR10:
            return f"cifar10:{self.start}-{self.start + self.count - 1}"
        if self.source == INPUT_RANDOM:
            return f"random:{self.seed}"
        return None

    def batch(self, data_dir: Path | None) -> InputBatch:
        """Load the input batch; raises InputError for weights only, which runs no input."""
        if self.source == INPUT_CIFAR10:
            return cifar10_samples(list(range(self.start, self.start + self.count)), data_dir=data_dir)
        if self.source == INPUT_RANDOM:
            return random_input(self.seed)
        raise InputError("a weights-only comparison runs no input")


def _whole_number(name: str, value: float | None, low: int, high: int | None) -> int:
    limit = f"from {low} to {high}" if high is not None else f">= {low}"
    if value is None:
        raise InputError(f"the {name} field is empty: enter a whole number {limit}")
    if not isinstance(value, (int, float)) or not math.isfinite(value) or not float(value).is_integer():
        raise InputError(f"the {name} must be a whole number {limit}, got {value!r}")
    number = int(value)
    if number < low or (high is not None and number > high):
        raise InputError(f"the {name} must be a whole number {limit}, got {number}")
    return number


def default_pair(catalog: ModelCatalog) -> tuple[str | None, str | None]:
    """Return the labels preselected as (float, quantized): resnet8.onnx and resnet8_int8.onnx.

    A label missing from the catalog is replaced by the first label, so both lists always
    start with a valid choice. An empty catalog gives (None, None).
    """
    labels = catalog.labels
    fallback = labels[0] if labels else None
    return (
        DEFAULT_FLOAT if DEFAULT_FLOAT in labels else fallback,
        DEFAULT_QUANT if DEFAULT_QUANT in labels else fallback,
    )


def run_comparison(
    catalog: ModelCatalog,
    float_label: str | None,
    quant_label: str | None,
    *,
    source: str,
    start: float | None,
    count: float | None,
    seed: float | None,
    data_dir: Path | None,
    trust: bool,
) -> ComparisonReport:
    """Compare the two catalog models on the inputs the Compare view's widgets describe."""
    inputs = CompareInputs.from_widgets(source, start=start, count=count, seed=seed)
    return compare_choices(catalog, float_label, quant_label, inputs=inputs, data_dir=data_dir, trust=trust)


def compare_choices(
    catalog: ModelCatalog,
    float_label: str | None,
    quant_label: str | None,
    *,
    inputs: CompareInputs,
    data_dir: Path | None,
    trust: bool,
) -> ComparisonReport:
    """Compare the two catalog models, on ``inputs`` when it runs them; the report is cached.

    Raises InputError when a label is missing or both labels name one file, ModelNotFoundError
    for labels outside the catalog, and ComparisonError when no layer of one model matches a
    layer of the other.
    """
    if float_label is None or quant_label is None:
        raise InputError("choose a float model and a quantized model in the two lists")
    float_choice = catalog.choice(float_label)
    quant_choice = catalog.choice(quant_label)
    if float_choice.path.resolve() == quant_choice.path.resolve():
        raise InputError(
            f"{float_label} is chosen as both the float and the quantized model; choose its quantized "
            "version (or its float original) in the other list"
        )
    try:
        return _report(
            float_choice.path,
            quant_choice.path,
            trust,
            inputs,
            data_dir,
            session.modified_ns(float_choice.path),
            session.modified_ns(quant_choice.path),
        )
    except (DatasetNotFoundError, DatasetError) as error:
        raise type(error)(f"{error} Weights-only and random-input comparisons work without CIFAR-10.") from error


@functools.lru_cache(maxsize=8)
def _report(
    float_path: Path,
    quant_path: Path,
    trust: bool,
    inputs: CompareInputs,
    data_dir: Path | None,
    float_modified_ns: int,
    quant_modified_ns: int,
) -> ComparisonReport:
    float_model = session.load_model_in_app(float_path, trust)
    quant_model = session.load_model_in_app(quant_path, trust)
    matching = match_layers(float_model, quant_model)
    if not matching.matches:
        raise ComparisonError(
            f"no layer of {float_path.name} matches a layer of {quant_path.name} by name, order or weight "
            "shape; choose a float model and a quantized version of that same model"
        )
    if not inputs.runs_models:
        return build_report(float_model, quant_model, matching)
    float_session = session.load_session(float_path, trust)
    quant_session = session.load_session(quant_path, trust)
    batch = inputs.batch(data_dir)
    with session.CAPTURE_LOCK:
        activations = compare_activations(float_session, quant_session, batch, matching=matching)
    return build_report(float_model, quant_model, matching, activations=activations, inputs=inputs.description)


def model_warnings(report: ComparisonReport) -> list[str]:
    """Return warnings for a float model with quantized tensors or a quantized model without any."""
    warnings = []
    if not _has_quantized_tensor(report.quant_model):
        warnings.append(
            f"{report.quant_model.path.name} has no quantized tensor, so the errors below are not "
            "quantization errors; choose a quantized model in the Quantized model list"
        )
    if _has_quantized_tensor(report.float_model):
        warnings.append(
            f"{report.float_model.path.name} has quantized tensors; the float side should be the "
            "unquantized original model"
        )
    return warnings


def _has_quantized_tensor(model: Model) -> bool:
    return any(tensor.is_quantized for _, tensor in model.tensors())


def summary_text(report: ComparisonReport) -> str:
    """Describe the report in Markdown: the models, matches, ranking and output agreement."""
    matching = report.matching
    lines = [
        f"**{report.float_model.path.name}** ({report.float_model.format}) vs "
        f"**{report.quant_model.path.name}** ({report.quant_model.format}): "
        f"{len(matching.matches)} layers matched, {len(matching.unmatched_float)} float and "
        f"{len(matching.unmatched_quant)} quantized layers unmatched.",
        f"Ranked worst first by {report.ranked_by} SQNR (dB, higher is better){_over_inputs(report)}.",
    ]
    outputs = report.outputs
    if outputs is not None:
        lines.append(
            f"Outputs: top-1 agreement {100 * outputs.top1_agreement:.1f}%, mean KL divergence "
            f"{outputs.mean_kl_divergence:.3g} nats, logits SQNR {format_db(outputs.logits.sqnr_db)} dB."
        )
        if outputs.labelled:
            lines.append(
                f"Top-1 accuracy on {outputs.labelled} labelled inputs: float {outputs.float_accuracy:.1f}%, "
                f"quantized {outputs.quant_accuracy:.1f}%."
            )
    return "  \n".join(lines)


def _over_inputs(report: ComparisonReport) -> str:
    if report.activations is None:
        return ""
    samples = report.activations.samples
    return f" over {samples} input{'' if samples == 1 else 's'} ({report.inputs})"


def format_db(value: float | None) -> str:
    """Format a decibel value: ``-`` when missing, ``inf`` for identical tensors, else 2 decimals."""
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.2f}"


def ranked_rows(report: ComparisonReport) -> list[dict[str, object]]:
    """Return one table row per matched layer, worst first.

    SQNR columns are in dB (inf for identical tensors, None when not measured) and RMSE / scale
    is in quantization steps. Numbers stay numbers so that the table sorts them; show them with
    :func:`table_formats`. The activation and local SQNR columns are present only when the
    models ran on inputs.
    """
    rows = []
    for row in report.to_rows():
        entry: dict[str, object] = {
            "rank": row.rank,
            "float layer": row.float_layer,
            "quantized layer": row.quant_layer,
            "op_type": row.op_type,
            "match": row.method,
            SQNR_COLUMNS[0]: row.weight_sqnr_db,
        }
        if report.activations is not None:
            entry[SQNR_COLUMNS[1]] = row.activation_sqnr_db
            entry[SQNR_COLUMNS[2]] = row.local_sqnr_db
        entry[RMSE_COLUMN] = row.weight_rmse_over_scale
        entry["granularity"] = row.granularity or ""
        entry["note"] = row.note or ""
        rows.append(entry)
    return rows


def format_steps(value: float | None) -> str:
    """Format an RMSE / scale value: ``-`` when missing, else 4 decimals."""
    return "-" if value is None else f"{value:.4f}"


def table_formats(rows: list[dict[str, object]]) -> dict[str, Callable[[float | None], str]]:
    """Return column -> formatter for the numeric columns of ``rows`` (``mo.ui.table`` format_mapping).

    Infinite SQNR becomes the text ``inf`` here, which JSON could not carry as a number.
    """
    columns = rows[0].keys() if rows else ()
    formats: dict[str, Callable[[float | None], str]] = {}
    for column in columns:
        if column in SQNR_COLUMNS:
            formats[column] = format_db
        elif column == RMSE_COLUMN:
            formats[column] = format_steps
    return formats


def unmatched_rows(report: ComparisonReport) -> list[dict[str, object]]:
    """Return one row per unmatched layer of either model, float model first, in graph order."""
    matching = report.matching
    rows: list[dict[str, object]] = []
    for side, layers in (("float", matching.unmatched_float), ("quantized", matching.unmatched_quant)):
        rows.extend({"model": side, "layer": layer.name or "(root)", "op_type": layer.op_type} for layer in layers)
    return rows


def sqnr_figure(report: ComparisonReport) -> go.Figure:
    """Draw SQNR per matched layer in graph order with the worst ``WORST_MARKED`` layers marked.

    The legend sits between the title and the plot, where the library's layout lets them overlap.
    """
    figure = compare_charts.sqnr_figure(report, worst=WORST_MARKED)
    figure.update_layout(
        height=compare_charts.FIGURE_HEIGHT + 40,
        margin={"t": 90},
        title={"y": 0.97, "yanchor": "top"},
        legend={"x": 0, "y": 1.02, "xanchor": "left", "yanchor": "bottom"},
    )
    return figure


def layer_options(report: ComparisonReport) -> dict[str, str]:
    """Return label -> float layer name for every matched layer, in float graph order.

    Labels name both layers when their names differ, e.g. ``stack1.conv1 / /stack1/conv1/Conv (Conv2d)``.
    """
    options = {}
    for result in report.in_graph_order():
        names = result.float_name if result.float_name == result.quant_name else f"{result.float_name} / {result.quant_name}"
        options[f"{names} ({result.match.float_layer.op_type})"] = result.float_name
    return options


def default_layer_label(report: ComparisonReport) -> str | None:
    """Return the label of the worst-ranked layer that has a weight SQNR, else of the worst layer."""
    labels = {name: label for label, name in layer_options(report).items()}
    measured = [result for result in report.layers if result.weight is not None]
    for result in measured or list(report.layers):
        return labels[result.float_name]
    return None


def layer_result(report: ComparisonReport, float_name: str) -> LayerResult:
    """Return the result of the matched float layer ``float_name``; raises ComparisonError otherwise."""
    for result in report.layers:
        if result.float_name == float_name:
            return result
    raise ComparisonError(f"layer {float_name!r} is not a matched layer of this comparison; choose another layer")


@dataclass(frozen=True, repr=False, eq=False)
class LayerFigures:
    """The overlaid float and dequantized weight histograms of a matched layer, and their scatter."""

    overlay: go.Figure
    scatter: go.Figure


def layer_figures(result: LayerResult) -> LayerFigures:
    """Draw the weight histograms (one shared range) and the sampled scatter of a matched layer.

    Raises ComparisonError when either layer has no weight or the weights cannot be aligned.
    """
    overlay = compare_charts.weight_histogram_figure(result.match, bins=OVERLAY_BINS)
    scatter = compare_charts.weight_scatter_figure(result.match)
    return LayerFigures(overlay=overlay, scatter=_svg_scatter(scatter))


def _svg_scatter(figure: go.Figure) -> go.Figure:
    # Headless or GPU-less browsers may have no WebGL, and Scattergl then draws nothing. At most
    # compare_charts.DEFAULT_MAX_POINTS points are drawn, which SVG handles.
    traces = []
    for trace in figure.data:
        if trace.type == "scattergl":
            properties = trace.to_plotly_json()
            properties.pop("type")
            trace = go.Scatter(properties)
        traces.append(trace)
    return go.Figure(data=traces, layout=figure.layout)


def layer_facts(result: LayerResult) -> str:
    """Describe one matched layer's measurements in Markdown."""
    match = result.match
    parts = [f"**{match.float_name}** ({match.float_layer.op_type}) matched to **{match.quant_name}** by {match.method.description}."]
    weight = result.weight
    if weight is not None:
        parts.append(
            f"Weight SQNR {format_db(weight.sqnr_db)} dB, RMSE / scale "
            f"{'-' if weight.rmse_over_scale is None else f'{weight.rmse_over_scale:.3f}'}, {weight.granularity}."
        )
        if weight.worst_channel is not None:
            parts.append(f"Worst output channel {weight.worst_channel}: {format_db(weight.worst_channel_sqnr_db)} dB.")
        if weight.folded_batchnorm:
            parts.append(f"BatchNorm {weight.folded_batchnorm} folded into the float weight before comparing.")
    elif result.weight_note:
        parts.append(f"Weights not compared: {result.weight_note}.")
    if result.activation is not None:
        if result.local_sqnr_db is not None:
            local = f"local SQNR {format_db(result.local_sqnr_db)} dB"
        else:
            local = f"no local SQNR: {result.activation.local_note or 'not measured'}"
        parts.append(f"Activation SQNR {format_db(result.activation_sqnr_db)} dB; {local}.")
    return "  \n".join(parts)
