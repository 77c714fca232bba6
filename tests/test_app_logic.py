"""The app's library code: charts, name resolution, model list, views, sessions and the CLI plan."""

from __future__ import annotations

import dataclasses
import json
import importlib
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from quantlens import stats
from quantlens.app import charts, choices, histogram_widget, session, views
from quantlens.app.catalog import build_catalog
from quantlens.app.config import AppConfig, notebook_arguments
from quantlens.app.naming import MatchRule, canonical_name, resolve_layer
from quantlens.app.overview import COLUMNS, overview_csv, overview_rows
from quantlens.capture.records import Activation, CaptureResult
from quantlens.cli import app_commands
from quantlens.cli.main import main
from quantlens.errors import CaptureError, DatasetNotFoundError, InputError, ModelNotFoundError
from quantlens.inputs import random_input
from quantlens.records import Layer, Model, Quantization, Role, Tensor
from tests.fixtures import onnx_models
from tests.fixtures.app_views import render_subject

BLUE = charts.PALETTES[charts.Kind.WEIGHT].strong
ORANGE = charts.PALETTES[charts.Kind.ACTIVATION].strong


def float_tensor(name: str, values: np.ndarray, role: Role = Role.WEIGHT) -> Tensor:
    array = np.asarray(values, dtype=np.float32)
    return Tensor(name=name, role=role, shape=array.shape, dtype="float32", load_values=lambda: array)


def int8_tensor(name: str, codes: np.ndarray, scale: np.ndarray, axis: int | None) -> Tensor:
    codes = np.asarray(codes, dtype=np.int8)
    quantization = Quantization(
        scale=scale, zero_point=np.zeros_like(scale, dtype=np.int64), axis=axis, qmin=-128, qmax=127,
        storage_dtype="int8",
    )
    return Tensor(
        name=name, role=Role.WEIGHT, shape=codes.shape, dtype="int8", quantization=quantization,
        load_codes=lambda: codes,
    )


def layer(name: str, op_type: str = "Conv", tensors: tuple[Tensor, ...] = (), index: int = 0) -> Layer:
    return Layer(name=name, op_type=op_type, tensors=tensors, index=index)


def bar_trace(figure):
    bars = [trace for trace in figure.data if trace.type == "bar"]
    assert len(bars) == 1
    return bars[0]


# Charts


def widget_spec(histogram, kind=charts.Kind.WEIGHT, **options):
    return histogram_widget.histogram_spec(histogram, kind=kind, title="t", x_title="value", **options)


@pytest.mark.parametrize("bins", [10, 50, 55, 200])
def test_histogram_spec_has_one_bar_per_bin(bins):
    values = np.random.default_rng(0).normal(size=10_000)
    spec = widget_spec(stats.histogram(values, bins))
    assert len(spec["edges"]) == bins + 1
    assert len(spec["percents"]) == bins
    assert len(spec["labels"]) == bins
    assert len(spec["colors"]) == bins


def test_histogram_spec_in_percent():
    spec = widget_spec(stats.histogram(np.arange(1000, dtype=np.float32), 20))
    assert sum(spec["percents"]) == pytest.approx(100.0)
    assert spec["percents"][0] == pytest.approx(5.0)
    assert "%" in spec["y_title"]


def test_histogram_hover_labels_bin_range():
    spec = widget_spec(stats.histogram(np.array([0.0, 1.0, 2.0, 3.0]), 2))
    assert spec["labels"] == ["0 to 1.5 (2 elements)", "1.5 to 3 (2 elements)"]
    assert spec["unit"] == "of elements"


def test_histogram_selection_reads_back_in_marimo():
    import marimo as mo

    spec = widget_spec(stats.histogram(np.arange(100.0), 10))
    plot = mo.ui.anywidget(histogram_widget.HistogramWidget(spec=spec))
    assert histogram_widget.dragged_range(plot.value.get("selection")) is None
    # _convert_value is what marimo runs on the state the browser sends after a drag.
    plot._convert_value({"selection": [30.0, 10.0]})
    assert histogram_widget.dragged_range(plot.value["selection"]) == (10.0, 30.0)
    plot._convert_value({"selection": []})
    assert histogram_widget.dragged_range(plot.value["selection"]) is None


def widget_bytes(spec) -> int:
    """Bytes of the state marimo sends when the widget opens (its script and style included)."""
    return len(json.dumps(histogram_widget.HistogramWidget(spec=spec).get_state()).encode())


def test_histogram_payload_small_for_million_elements():
    values = np.random.default_rng(1).normal(size=1_000_000).astype(np.float32)
    spec = widget_spec(stats.histogram(values, 200), kind=charts.Kind.ACTIVATION, highlight=(-1.0, 1.0))
    assert widget_bytes(spec) < 50_000


def test_histogram_payload_independent_of_element_count():
    rng = np.random.default_rng(2)
    sizes = [widget_bytes(widget_spec(stats.histogram(rng.normal(size=count), 50))) for count in (1_000, 1_000_000)]
    assert abs(sizes[0] - sizes[1]) < 500


def test_histogram_colours_by_kind():
    histogram = stats.histogram(np.arange(10.0), 5)
    assert set(widget_spec(histogram)["colors"]) == {BLUE}
    assert set(widget_spec(histogram, kind=charts.Kind.ACTIVATION)["colors"]) == {ORANGE}


def test_histogram_highlights_bins_in_range():
    histogram = stats.histogram(np.arange(10.0), 10)  # edges 0, 0.9, 1.8, ... 9
    spec = widget_spec(histogram, highlight=(2.0, 4.0))
    strong = [index for index, color in enumerate(spec["colors"]) if color == BLUE]
    assert strong == [2, 3, 4]
    assert spec["shade"] == [2.0, 4.0]
    assert widget_spec(histogram)["shade"] is None


def test_bins_in_range_includes_touching_bins():
    edges = np.array([0.0, 1.0, 2.0, 3.0])
    assert charts.bins_in_range(edges, 1.0, 1.0).tolist() == [True, True, False]
    assert charts.bins_in_range(edges, 5.0, 6.0).tolist() == [False, False, False]


@pytest.mark.parametrize(
    ("low", "high", "bins", "width", "count"),
    [(-127, 127, 50, 6, 43), (-128, 127, 200, 2, 128), (-3, 3, 50, 1, 7), (0, 255, 10, 26, 10), (5, 5, 10, 1, 1)],
)
def test_code_histogram_bins_whole_codes(low, high, bins, width, count):
    codes = np.random.default_rng(7).integers(low, high + 1, 5000).astype(np.int16)
    codes[:2] = [low, high]
    histogram = views.view_histogram(codes, bins, integer=True)
    assert histogram.bins == count
    assert np.all(np.diff(histogram.edges) == width)
    assert views.codes_per_bin(histogram) == width
    assert views.axis_title(histogram, integer=True) == ("integer codes" if width == 1 else f"integer codes ({width} per bar)")
    assert histogram.edges[0] == low - 0.5
    assert histogram.total == codes.size


def test_code_histogram_labels_name_codes():
    codes = np.array([-2, -1, -1, 0, 3], dtype=np.int8)
    spec = widget_spec(views.view_histogram(codes, 10, integer=True), integer=True)
    assert "code -1 (2 elements)" in spec["labels"]
    assert "code -2 (1 element)" in spec["labels"]
    # 255 codes in at most 50 bins: 6 codes a bin, 43 bins.
    wide = widget_spec(views.view_histogram(np.arange(-127, 128, dtype=np.int8), 50, integer=True), integer=True)
    assert wide["labels"][0] == "codes -127 to -122 (6 elements)"
    assert wide["labels"][-1] == "codes 125 to 130 (3 elements)"


def test_dragged_range_sorts_bounds():
    assert histogram_widget.dragged_range(None) is None
    assert histogram_widget.dragged_range([1.0]) is None
    assert histogram_widget.dragged_range([3.0, -1.0]) == (-1.0, 3.0)


def test_integer_code_figure_one_bar_per_code():
    codes = np.array([-128, -1, 0, 0, 127, 127], dtype=np.int8)
    histogram = stats.integer_histogram(codes, -128, 127)
    saturation = stats.saturation(codes, -128, 127)
    figure = charts.integer_code_figure(histogram, kind=charts.Kind.WEIGHT, title="t", saturation=saturation)
    bar = bar_trace(figure)
    assert len(bar.x) == 256
    assert bar.x[0] == -128
    assert bar.x[-1] == 127
    assert bar.y[-1] == pytest.approx(100 * 2 / 6)
    colors = list(bar.marker.color)
    assert colors[0] == charts.SATURATION_COLOR
    assert colors[-1] == charts.SATURATION_COLOR
    assert colors[128] == BLUE


def test_channel_range_figure_bars_span_min_to_max():
    low = np.array([-1.0, -0.5, 0.0])
    high = np.array([1.0, 0.5, 2.0])
    figure = charts.channel_range_figure(low, high, kind=charts.Kind.WEIGHT, title="t", axis=0, y_title="value")
    bar = bar_trace(figure)
    assert list(bar.x) == [0, 1, 2]
    assert list(bar.base) == [-1.0, -0.5, 0.0]
    assert list(bar.y) == [2.0, 1.0, 2.0]
    assert "axis 0" in figure.layout.xaxis.title.text


# Activation -> layer name resolution


TORCH_LAYERS = (layer("stack1.conv1", "Conv2d", index=0), layer("stack1.bn1", "BatchNorm2d", index=1))
ONNX_LAYERS = (layer("/stack1/conv1/Conv", "Conv", index=0), layer("/stack1/conv2/Conv", "Conv", index=1))


def test_canonical_name_joins_separators():
    assert canonical_name("/stack1/conv1/Conv_output_0") == "stack1.conv1.Conv_output_0"
    assert canonical_name("block:1") == "block.1"
    assert canonical_name("relu#2") == "relu.2"


def test_resolve_exact_torch_name():
    match = resolve_layer("stack1.conv1", TORCH_LAYERS)
    assert match.layer is TORCH_LAYERS[0]
    assert match.rule is MatchRule.EXACT
    assert match.warning is None


def test_resolve_onnx_value_to_torch_layer_by_prefix():
    match = resolve_layer("/stack1/conv1/Conv_output_0", TORCH_LAYERS)
    assert match.layer is TORCH_LAYERS[0]
    assert match.rule is MatchRule.PREFIX


def test_resolve_onnx_value_to_onnx_node_by_prefix():
    match = resolve_layer("/stack1/conv2/Conv_output_0_QuantizeLinear_Output", ONNX_LAYERS)
    assert match.layer is ONNX_LAYERS[1]
    assert match.rule is MatchRule.PREFIX


def test_resolve_producer_before_name():
    match = resolve_layer("/stack1/relu1/Relu_output_0", ONNX_LAYERS, producer="/stack1/conv1/Conv")
    assert match.layer is ONNX_LAYERS[0]
    assert match.rule is MatchRule.EXACT


def test_resolve_module_name_to_onnx_node():
    match = resolve_layer("stack1.conv1", ONNX_LAYERS)
    assert match.layer is ONNX_LAYERS[0]


def test_resolve_block_does_not_match_submodule():
    assert resolve_layer("stack1", TORCH_LAYERS).layer is None


def test_resolve_prefers_longest_prefix():
    layers = (layer("stack1", "ResidualBlock"), layer("stack1.conv1", "Conv2d", index=1))
    assert resolve_layer("stack1.conv1:0", layers).layer is layers[1]


def test_resolve_prefix_needs_a_boundary():
    assert resolve_layer("stack1.conv10", TORCH_LAYERS).layer is None


def test_resolve_no_match_warns():
    match = resolve_layer("/pool/GlobalAveragePool_output_0", ONNX_LAYERS)
    assert match.layer is None
    assert match.rule is MatchRule.NONE
    assert "/pool/GlobalAveragePool_output_0" in match.warning


# Model list


def test_catalog_lists_bundled_models(bundled):
    catalog = build_catalog([])
    assert set(catalog.labels) == set(bundled)
    assert all(choice.bundled for choice in catalog.choices)
    assert catalog.problems == ()


def test_catalog_adds_given_file_and_folder(tmp_path):
    (tmp_path / "single").mkdir()
    single = onnx_models.build_float_convnet(tmp_path / "single")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a model")
    nested = folder / "nested"
    nested.mkdir()
    onnx_models.build_float_convnet(nested)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    in_folder = onnx_models.copy_model(onnx_models.build_qdq_per_channel(scratch), folder)
    catalog = build_catalog([single, folder], include_bundled=False)
    assert [choice.path for choice in catalog.choices] == [single, in_folder]
    assert catalog.default_label == catalog.choices[0].label


def test_catalog_reports_missing_and_non_model_paths(tmp_path):
    text = tmp_path / "readme.txt"
    text.write_text("x")
    empty = tmp_path / "empty"
    empty.mkdir()
    catalog = build_catalog([tmp_path / "missing.onnx", text, empty], include_bundled=False)
    assert catalog.choices == ()
    assert len(catalog.problems) == 3
    assert "not found" in catalog.problems[0]
    assert "extension" in catalog.problems[1]
    assert "no model files" in catalog.problems[2]


def test_catalog_rejects_unlisted_paths(tmp_path):
    model = onnx_models.build_float_convnet(tmp_path)
    catalog = build_catalog([], include_bundled=True)
    with pytest.raises(ModelNotFoundError, match="not in the app's model list"):
        catalog.choice(str(model))
    with pytest.raises(ModelNotFoundError):
        catalog.choice("../../etc/passwd")


def test_catalog_lists_a_file_once_and_keeps_labels_unique(tmp_path):
    first = tmp_path / "a"
    second = tmp_path / "b"
    first.mkdir()
    second.mkdir()
    first_model = onnx_models.build_float_convnet(first)
    second_model = onnx_models.build_float_convnet(second)
    catalog = build_catalog([first_model, first_model, first, second_model], include_bundled=False)
    assert len(catalog.choices) == 2
    assert len(set(catalog.labels)) == 2
    assert catalog.choice(catalog.labels[1]).path == second_model


def test_catalog_default_prefers_user_then_onnx(tmp_path):
    assert build_catalog([]).default_label.endswith(".onnx")
    user_model = onnx_models.build_float_convnet(tmp_path)
    assert build_catalog([user_model]).default_label == user_model.name
    assert build_catalog([], include_bundled=False).default_label is None


def test_config_reads_cli_args_and_environment(tmp_path):
    config = AppConfig.from_sources(
        {"model": ["/a.onnx", "/b"], "data-dir": str(tmp_path), "trust": ""},
        {"QUANTLENS_APP_MODELS": f"/c.onnx{os.pathsep}/d"},
    )
    assert config.model_paths == (Path("/a.onnx"), Path("/b"), Path("/c.onnx"), Path("/d"))
    assert config.data_dir == tmp_path
    assert config.trust is True
    single = AppConfig.from_sources({"model": "/a.onnx"}, {})
    assert single.model_paths == (Path("/a.onnx"),)
    assert single.data_dir is None
    assert single.trust is False


def test_notebook_arguments_are_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    arguments = notebook_arguments(["m.onnx"], data_dir="data", trust=True)
    assert arguments == [f"--model={tmp_path / 'm.onnx'}", f"--data-dir={tmp_path / 'data'}", "--trust"]


# Views


def test_default_range_is_mean_plus_minus_std():
    summary = stats.summarize(np.array([1.0, 3.0]))
    assert views.default_range(summary) == (1.0, 3.0)
    assert views.default_range(stats.summarize(np.array([]))) == (0.0, 0.0)


def test_statistics_rows_follow_view_and_show_quantization():
    tensor = int8_tensor("w", np.array([-2, 0, 4], dtype=np.int8), np.float32(0.5), axis=None)
    subject = views.Subject(kind=charts.Kind.WEIGHT, layer="conv", op_type="Conv", tensor=tensor)
    codes = dict(
        (row["statistic"], row["value"])
        for row in views.statistics_rows(subject, views.summarize_view(tensor, True), integer=True)
    )
    values = dict((row["statistic"], row["value"]) for row in views.statistics_rows(subject, views.summarize_view(tensor, False)))
    assert codes["max"] == "4"
    assert values["max"] == "2"
    assert codes["scale"] == "0.5"
    assert codes["zero_point"] == "0"
    assert codes["qmin / qmax"] == "-128 / 127"
    assert codes["shape"] == "3"
    assert codes["elements"] == "3"
    assert codes["dtype"] == "int8"
    assert values["dtype"] == "int8, dequantized for display"


def test_channel_rows_list_every_channel():
    codes = np.array([[1, -1], [2, -2], [3, -3]], dtype=np.int8)
    tensor = int8_tensor("w", codes, np.array([0.1, 0.2, 0.5], dtype=np.float32), axis=0)
    rows = views.channel_rows(tensor)
    assert [row["channel"] for row in rows] == ["0", "1", "2"]
    assert rows[2]["scale"] == "0.5"
    assert rows[2]["max"] == "1.5"
    assert views.channel_rows(float_tensor("f", np.ones((3, 2)))) == []


def test_code_view_int8_spans_full_range():
    tensor = int8_tensor("w", np.array([-128, 0, 127, 127], dtype=np.int8), np.float32(1.0), axis=None)
    view = views.code_view(tensor)
    assert view.histogram.bins == 256
    assert view.saturation.percent_at_qmax == pytest.approx(50.0)
    assert view.saturation.percent_at_qmin == pytest.approx(25.0)
    assert view.note is None


def test_code_view_int32_reports_instead_of_drawing():
    codes = np.array([-100_000, 0, 100_000], dtype=np.int32)
    quantization = Quantization(
        scale=np.float32(0.01), zero_point=np.int64(0), axis=None, qmin=-(2**31), qmax=2**31 - 1, storage_dtype="int32"
    )
    tensor = Tensor(name="b", role=Role.BIAS, shape=(3,), dtype="int32", quantization=quantization, load_codes=lambda: codes)
    view = views.code_view(tensor)
    assert view.histogram is None
    assert "bins them" in view.note


def test_code_view_int32_narrow_span_draws_present_codes():
    codes = np.array([-3, 0, 5], dtype=np.int32)
    quantization = Quantization(
        scale=np.float32(0.01), zero_point=np.int64(0), axis=None, qmin=-(2**31), qmax=2**31 - 1, storage_dtype="int32"
    )
    tensor = Tensor(name="b", role=Role.BIAS, shape=(3,), dtype="int32", quantization=quantization, load_codes=lambda: codes)
    view = views.code_view(tensor)
    assert view.histogram.bins == 9
    assert "codes present" in view.note


def test_range_error_messages():
    assert views.range_error(None) is None
    assert views.range_error({"low": 0.0, "high": 1.0}) is None
    assert "both" in views.range_error({"low": None, "high": 1.0})
    assert "min is empty" in views.range_error({"low": None, "high": 1.0})
    assert "min is 'abc'" in views.range_error({"low": "abc", "high": 1.0})
    assert "both" in views.range_error({"low": True, "high": 1.0})
    assert "greater" in views.range_error({"low": 2.0, "high": 1.0})
    assert "swap them" in views.range_error({"low": 2.0, "high": 1.0})
    assert views.submitted_range({"low": 2.0, "high": 1.0}) is None
    assert views.submitted_range({"low": " 1e-5", "high": "-1E3"}) is None
    assert views.submitted_range({"low": "-1E3", "high": "1e300"}) == (-1000.0, 1e300)
    assert "min is empty" in views.range_error({"low": "", "high": "1"})
    assert views.submitted_range({"low": -1, "high": 1}) == (-1.0, 1.0)


def test_output_channel_axis():
    weight = float_tensor("w", np.ones((4, 3)))
    assert views.output_channel_axis("Gemm", weight) == 0
    assert views.output_channel_axis("MatMul", weight) == 1
    per_channel = int8_tensor("q", np.ones((4, 3), dtype=np.int8), np.ones(3, dtype=np.float32), axis=1)
    assert views.output_channel_axis("Conv", per_channel) == 1


def test_uses_codes_only_for_quantized_tensors():
    quantized = int8_tensor("q", np.ones(2, dtype=np.int8), np.float32(1.0), axis=None)
    assert views.uses_codes(quantized, views.VIEW_CODES)
    assert not views.uses_codes(quantized, views.VIEW_VALUES)
    assert not views.uses_codes(float_tensor("f", np.ones(2)), views.VIEW_CODES)


def test_subject_titles_name_kind():
    weight = views.Subject(charts.Kind.WEIGHT, "conv", "Conv", float_tensor("conv.weight", np.ones(2)))
    bias = views.Subject(charts.Kind.WEIGHT, "conv", "Conv", float_tensor("conv.bias", np.ones(2), Role.BIAS))
    activation = views.Subject(
        charts.Kind.ACTIVATION, "conv", "Conv", float_tensor("conv", np.ones(2), Role.ACTIVATION)
    )
    assert weight.title(integer=False).startswith("Weight conv.weight of conv")
    assert bias.noun == "Bias"
    assert activation.title(integer=False).startswith("Activation conv output of conv")


# Sessions, capture and selection


def fake_result(activations: tuple[Activation, ...]) -> CaptureResult:
    from quantlens.adapter import adapter_from_spec
    from quantlens.records import InputSpec

    adapter = adapter_from_spec(InputSpec(name="x", layout=None, shape=(1, 2), dtype="float32"))
    return CaptureResult(
        model="m.onnx", inputs=random_input(0), adapter=adapter, activations=activations,
        outputs=(np.array([[0.0, 1.0, 2.0]]),),
    )


def test_attempt_turns_errors_into_messages():
    def fails():
        raise InputError("bad input: use 3")

    def crashes():
        raise ZeroDivisionError("division by zero")

    assert session.attempt(lambda: 4).value == 4
    assert session.attempt(fails).error == "bad input: use 3"
    assert session.attempt(crashes).error == "ZeroDivisionError: division by zero"


def test_input_request_validates_widget_values():
    assert session.InputRequest.from_widgets(session.SOURCE_CIFAR10, index=3, seed=None, upload=None).index == 3
    with pytest.raises(InputError, match="whole number"):
        session.InputRequest.from_widgets(session.SOURCE_CIFAR10, index=2.5, seed=None, upload=None)
    with pytest.raises(InputError, match="no image uploaded"):
        session.InputRequest.from_widgets(session.SOURCE_UPLOAD, index=None, seed=None, upload=None)
    first = session.InputRequest.from_widgets(session.SOURCE_UPLOAD, index=None, seed=None, upload=("a.png", b"x"))
    second = session.InputRequest.from_widgets(session.SOURCE_UPLOAD, index=None, seed=None, upload=("a.png", b"x"))
    assert first == second
    assert hash(first) == hash(second)


def test_cifar10_problem_names_missing_folder(tmp_path):
    problem = session.cifar10_problem(tmp_path / "missing")
    assert problem is not None
    assert "missing" in problem


def test_capture_on_tiny_model_is_cached(tmp_path):
    path = onnx_models.build_float_convnet(tmp_path)
    catalog = build_catalog([path], include_bundled=False)
    choice = catalog.choice(catalog.default_label)
    arguments = dict(source=session.SOURCE_RANDOM, index=None, seed=7, upload=None, data_dir=None, trust=False)
    first = session.run_capture(choice, **arguments)
    second = session.run_capture(choice, **arguments)
    assert first is second
    assert len(first) > 0
    assert len(session.top_predictions(first, 2)) == 2


def test_capture_without_cifar10_says_what_works(tmp_path):
    path = onnx_models.build_float_convnet(tmp_path)
    choice = build_catalog([path], include_bundled=False).choices[0]
    with pytest.raises(DatasetNotFoundError, match="Random input and uploaded images"):
        session.run_capture(
            choice, source=session.SOURCE_CIFAR10, index=0, seed=None, upload=None,
            data_dir=tmp_path / "no-cifar", trust=False,
        )


def test_empty_capture_is_an_error(tmp_path, monkeypatch):
    # The package root exports the capture function under the subpackage's name, so the
    # subpackage is taken from sys.modules.
    capture_package = importlib.import_module("quantlens.capture")

    path = onnx_models.build_float_convnet(tmp_path)
    monkeypatch.setattr(capture_package, "capture", lambda session_, batch: fake_result(()))
    request = session.InputRequest(source=session.SOURCE_RANDOM, seed=123)
    with pytest.raises(CaptureError, match="no activations"):
        session.capture_activations(path, False, request, None)


def test_upload_capture_resizes_image(tmp_path):
    path = onnx_models.build_float_convnet(tmp_path)
    choice = build_catalog([path], include_bundled=False).choices[0]
    buffer = io.BytesIO()
    Image.new("RGB", (40, 20), (200, 10, 10)).save(buffer, format="PNG")
    result = session.run_capture(
        choice, source=session.SOURCE_UPLOAD, index=None, seed=None,
        upload=("red.png", buffer.getvalue()), data_dir=None, trust=False,
    )
    assert result.inputs.descriptions == ("red.png",)
    assert any("resized" in notice for notice in result.inputs.notices)
    assert session.preview_png(result.inputs).startswith(b"\x89PNG")


def test_cifar10_problem_names_empty_folder(tmp_path):
    problem = session.cifar10_problem(tmp_path)
    assert problem is not None
    assert str(tmp_path) in problem
    assert "test_batch" in problem
    assert "--data-dir" in problem


def test_cifar10_problem_none_for_real_data(cifar_dir):
    assert session.cifar10_problem(cifar_dir) is None


def bad_model_catalog(folder: Path):
    import torch

    (folder / "broken.onnx").write_bytes(bytes(range(256)) * 16)
    (folder / "empty.pt").write_bytes(b"")
    torch.save(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()), folder / "pickled_module.pt")
    return build_catalog([folder])


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("broken.onnx", "Error loading ONNX model"),
        ("empty.pt", "is empty (0 bytes)"),
        ("pickled_module.pt", "restart it with `quantlens app --trust"),
    ],
)
def test_bad_model_files_become_messages(tmp_path, label, expected):
    catalog = bad_model_catalog(tmp_path)
    outcome = session.attempt(session.load_choice, catalog, label, trust=False)
    assert not outcome.ok
    assert expected in outcome.error
    assert label in outcome.error
    assert session.attempt(session.load_choice, catalog, "resnet8_int8.onnx", trust=False).ok


def test_pickled_module_opens_with_trust(tmp_path):
    catalog = bad_model_catalog(tmp_path)
    loaded = session.load_choice(catalog, "pickled_module.pt", trust=True)
    assert len(loaded.model.layers) > 0


@pytest.mark.parametrize(
    ("index", "expected"),
    [(None, "index field is empty: enter a whole number from 0 to 9999"), (2.5, "got 2.5"), (10_000, "out of range")],
)
def test_capture_rejects_bad_cifar10_index(tmp_path, cifar_dir, index, expected):
    choice = build_catalog([]).choice("resnet8.onnx")
    outcome = session.attempt(
        session.run_capture, choice, source=session.SOURCE_CIFAR10, index=index, seed=None, upload=None,
        data_dir=cifar_dir, trust=False,
    )
    assert expected in outcome.error


@pytest.mark.parametrize("name", ["resnet8_int8.onnx", "resnet8_int8.pt"])
def test_activation_numbers_match_cli_indices(bundled, capsys, name):
    assert main(["activations", name, "--list-layers"]) == 0
    rows = [line.split()[:2] for line in capsys.readouterr().out.splitlines() if line[:1].isdigit()]
    result = session.run_capture(
        build_catalog([]).choice(name), source=session.SOURCE_RANDOM, index=None, seed=0, upload=None,
        data_dir=None, trust=False,
    )
    labels = [label.split(" ")[:2] for label in choices.activation_options(result)]
    assert [(str(int(number.rstrip("."))), tensor) for number, tensor in labels] == [tuple(row) for row in rows]


def test_capture_rejects_upload_that_is_not_an_image():
    choice = build_catalog([]).choice("resnet8.onnx")
    outcome = session.attempt(
        session.run_capture, choice, source=session.SOURCE_UPLOAD, index=None, seed=None,
        upload=("notes.png", b"these are notes, not pixels"), data_dir=None, trust=False,
    )
    assert not outcome.ok
    assert "'notes.png' is not a readable image" in outcome.error
    assert "BytesIO" not in outcome.error
    after = session.attempt(
        session.run_capture, choice, source=session.SOURCE_RANDOM, index=None, seed=2, upload=None,
        data_dir=None, trust=False,
    )
    assert after.ok


def test_model_list_rejects_unlisted_label():
    import marimo as mo

    catalog = build_catalog([])
    picker = mo.ui.dropdown(options=catalog.labels, value=catalog.default_label)
    # marimo runs _convert_value on the value the browser sends, so a forged label stops there.
    with pytest.raises(ValueError, match="not a valid option"):
        picker._convert_value(["/etc/passwd"])
    with pytest.raises(ModelNotFoundError):
        session.load_choice(catalog, "/etc/passwd", trust=False)
    with pytest.raises(ModelNotFoundError):
        session.load_choice(catalog, "../resnet8.onnx", trust=False)


def test_pages_are_inspect_and_compare():
    assert [page.value for page in choices.Page] == ["Inspect", "Compare"]


def test_preview_of_random_input_is_none():
    assert session.preview_png(random_input(0)) is None


def test_top_predictions_name_classes():
    predictions = session.top_predictions(fake_result(()), 2)
    assert [p.name for p in predictions] == ["class 2", "class 1"]
    assert predictions[0].probability > predictions[1].probability
    ten = dataclasses.replace(fake_result(()), outputs=(np.arange(10.0).reshape(1, 10),))
    assert session.top_predictions(ten, 1)[0].name == "truck"


def test_choices_on_bundled_quantized_model(bundled):
    model = session.load_model(bundled["resnet8_int8.onnx"])
    assert session.load_model(bundled["resnet8_int8.onnx"]) is model
    options = choices.layer_options(model)
    default = choices.default_layer_label(model)
    assert model.layer(options[default]).weight is not None
    layer_name = options[default]
    tensors = choices.tensor_options(model.layer(layer_name))
    assert next(iter(tensors)).startswith("weight: ")
    picked = choices.pick_subject(
        model, mode=choices.Mode.WEIGHTS, layer_name=layer_name, tensor_name=next(iter(tensors.values())),
        result=None, activation_name=None,
    )
    assert picked.subject.kind is charts.Kind.WEIGHT
    assert picked.subject.tensor.is_quantized


def test_choices_for_activations_follow_layer():
    weight = float_tensor("conv.weight", np.ones((2, 2)))
    conv = layer("conv", "Conv2d", (weight,), index=0)
    model = Model(path=Path("m.pt"), format="test", layers=(conv,))
    relu = Activation("relu", "ReLU", 0, float_tensor("relu", np.ones(2), Role.ACTIVATION))
    conv_out = Activation("conv", "Conv2d", 0, float_tensor("conv", np.ones(2), Role.ACTIVATION))
    result = fake_result((relu, conv_out))
    options = choices.activation_options(result)
    assert list(options.values()) == ["relu", "conv"]
    assert choices.default_activation_label(result, model, "conv") == "1. conv (Conv2d)"
    picked = choices.pick_subject(
        model, mode=choices.Mode.ACTIVATIONS, layer_name="conv", tensor_name="conv.weight",
        result=result, activation_name="conv",
    )
    assert picked.subject.kind is charts.Kind.ACTIVATION
    assert choices.matching_weight(picked.match).tensor is weight
    unmatched = choices.pick_subject(
        model, mode=choices.Mode.ACTIVATIONS, layer_name=None, tensor_name=None, result=result,
        activation_name="relu",
    )
    assert unmatched.match.warning is not None


def test_overview_rows_and_csv(bundled):
    model = session.load_model(bundled["resnet8_int8.onnx"])
    rows = overview_rows(model)
    assert len(rows) == sum(1 for _ in model.tensors())
    text = overview_csv(rows)
    lines = text.strip().split("\n")
    assert lines[0] == ",".join(COLUMNS)
    assert len(lines) == len(rows) + 1


# CLI plan


def test_plan_loopback_run_needs_no_token():
    plan = app_commands.plan_server("run", host="127.0.0.1", port=9000, token=None, headless=True, arguments=["--trust"])
    assert "--no-token" in plan.command
    assert plan.url == "http://127.0.0.1:9000/"
    assert plan.token is None
    assert plan.command[plan.command.index("--") + 1 :] == ["--trust"]
    assert "--headless" in plan.command
    assert plan.command[1:5] == ["-m", "quantlens.app.serve", "run", str(app_commands.NOTEBOOK)]


def test_plan_other_host_requires_token():
    plan = app_commands.plan_server("run", host="0.0.0.0", port=9000, token=None, headless=True, arguments=[])
    assert plan.token
    assert plan.url.endswith(f"?access_token={plan.token}")
    assert "--token" in plan.command
    assert "--token-password-file" in plan.command
    assert plan.token not in " ".join(plan.command)


def test_plan_editor_always_has_token():
    plan = app_commands.plan_server("edit", host="localhost", port=9000, token="secret", headless=False, arguments=[])
    assert plan.token == "secret"
    assert plan.command[1:4] == ["-m", "marimo", "edit"]
    assert "--skip-update-check" in plan.command
    assert "--headless" not in plan.command


def test_app_listens_on_loopback_by_default():
    import argparse

    parser = argparse.ArgumentParser()
    app_commands.register(parser.add_subparsers())
    args = parser.parse_args(["app"])
    assert args.host == "127.0.0.1"
    plan = app_commands.plan_server("run", host=args.host, port=9000, token=args.token_password, headless=True, arguments=[])
    assert plan.command[plan.command.index("--host") + 1] == "127.0.0.1"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "example.org"])
def test_plan_every_other_host_gets_token(host):
    plan = app_commands.plan_server("run", host=host, port=9000, token=None, headless=True, arguments=[])
    assert plan.token
    assert "--no-token" not in plan.command
    assert plan.command[plan.command.index("--token") + 1 : plan.command.index("--token") + 3] == ["--token-password-file", "-"]


def test_is_loopback():
    assert app_commands.is_loopback("127.0.0.1")
    assert app_commands.is_loopback("localhost")
    assert app_commands.is_loopback("::1")
    assert not app_commands.is_loopback("0.0.0.0")
    assert not app_commands.is_loopback("example.org")


def test_check_paths_rejects_missing(tmp_path):
    with pytest.raises(ModelNotFoundError, match="missing.onnx"):
        app_commands.check_paths([str(tmp_path / "missing.onnx")], None)
    with pytest.raises(DatasetNotFoundError):
        app_commands.check_paths([], str(tmp_path / "nodata"))


def test_notebook_runs_as_script(tmp_path):
    model = onnx_models.build_qdq_per_channel(tmp_path)
    completed = subprocess.run(
        [sys.executable, str(app_commands.NOTEBOOK), f"--model={model}"],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "Traceback" not in completed.stderr


@pytest.mark.parametrize(
    "name",
    ["resnet8.pt", "resnet8.onnx", "resnet8_int8.onnx", "resnet8_uint8.onnx", "resnet8_int8_qop.onnx", "resnet8_int8.pt"],
)
def test_every_bundled_tensor_renders(bundled, name):
    model = session.load_model(bundled[name])
    count = 0
    for layer_, tensor in model.tensors():
        for integer in (False, True):
            render_subject(views.Subject.of_layer(layer_, tensor), integer=integer and tensor.is_quantized)
        count += 1
    assert count == sum(len(layer_.tensors) for layer_ in model.layers)


@pytest.mark.parametrize("name", ["resnet8_int8.onnx", "resnet8_int8.pt"])
def test_every_captured_activation_renders(bundled, name):
    choice = build_catalog([]).choice(name)
    result = session.run_capture(
        choice, source=session.SOURCE_RANDOM, index=None, seed=1, upload=None, data_dir=None, trust=False
    )
    model = session.load_model(choice.path)
    for activation_name in choices.activation_options(result).values():
        picked = choices.pick_subject(
            model, mode=choices.Mode.ACTIVATIONS, layer_name=None, tensor_name=None,
            result=result, activation_name=activation_name,
        )
        for integer in (False, True):
            render_subject(picked.subject, integer=integer and picked.subject.tensor.is_quantized)
        if picked.match.layer is not None:
            assert choices.weight_note(picked.match).startswith("Matched to layer")
        else:
            assert activation_name in picked.match.warning


@pytest.mark.parametrize("text", ["0", "65536", "99999", "-1", "http"])
def test_port_option_rejects_invalid_numbers(text, capsys):
    with pytest.raises(SystemExit) as caught:
        main(["app", "--port", text])
    assert caught.value.code == 2
    assert "use a number from 1 to 65535" in capsys.readouterr().err


def test_app_on_busy_port_is_one_line_error(capsys):
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        code = main(["app", "--port", str(port)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert f"127.0.0.1:{port}" in err
    assert "another program is listening there" in err


WARM_UP_NOTEBOOK = """
import marimo

app = marimo.App()


@app.cell
def _():
    import json
    import sys
    from pathlib import Path

    Path(sys.argv[0]).with_suffix(".json").write_text(json.dumps(sys.argv[1:]))
    return
"""


def test_warm_up_runs_notebook_with_its_arguments(tmp_path):
    from quantlens.app import serve

    notebook = tmp_path / "probe.py"
    notebook.write_text(WARM_UP_NOTEBOOK)
    argv = ["serve", "run", str(notebook), "--host", "127.0.0.1", "--", "--model=a.onnx", "--data-dir=d.py"]
    before = list(sys.argv)
    serve.warm_up(argv)
    assert sys.argv == before
    assert json.loads((tmp_path / "probe.json").read_text()) == ["--model=a.onnx", "--data-dir=d.py"]


def test_warm_up_ignores_failing_notebook(tmp_path):
    from quantlens.app import serve

    notebook = tmp_path / "broken.py"
    notebook.write_text("raise RuntimeError('broken notebook')\n")
    before = list(sys.argv)
    serve.warm_up(["serve", "run", str(notebook)])
    assert sys.argv == before
