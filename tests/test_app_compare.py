"""The app's Compare view logic: inputs from widgets, cached reports, table rows and figures."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from quantlens.app import comparison, session
from quantlens.app.catalog import ModelCatalog, build_catalog
from quantlens.errors import ComparisonError, DatasetNotFoundError, InputError, ModelFormatError, ModelNotFoundError
from tests.fixtures import onnx_models

CONV_AND_DENSE = {"Conv", "Gemm", "Conv2d", "Linear", "MatMul"}


@pytest.fixture(scope="module")
def catalog() -> ModelCatalog:
    return build_catalog([])


@pytest.fixture(scope="module")
def weights_report(catalog):
    return comparison.compare_choices(
        catalog, "resnet8.onnx", "resnet8_int8.onnx", inputs=comparison.CompareInputs(), data_dir=None, trust=False
    )


# Inputs


def test_inputs_weights_only_ignore_widgets():
    inputs = comparison.CompareInputs.from_widgets(comparison.INPUT_NONE, start=5, count=3, seed=9)
    assert inputs == comparison.CompareInputs()
    assert not inputs.runs_models
    assert inputs.description is None


def test_inputs_cifar10_range():
    inputs = comparison.CompareInputs.from_widgets(comparison.INPUT_CIFAR10, start=10, count=8, seed=None)
    assert (inputs.start, inputs.count, inputs.seed) == (10, 8, 0)
    assert inputs.description == "cifar10:10-17"
    assert inputs.runs_models


def test_inputs_random_seed():
    inputs = comparison.CompareInputs.from_widgets(comparison.INPUT_RANDOM, start=None, count=None, seed=3)
    assert inputs.description == "random:3"
    assert inputs.batch(None).random_seed == 3


@pytest.mark.parametrize(
    ("source", "start", "count", "seed", "message"),
    [
        (comparison.INPUT_CIFAR10, 0, 0, None, "number of CIFAR-10 images must be a whole number from 1 to 64, got 0"),
        (comparison.INPUT_CIFAR10, 0, 65, None, "from 1 to 64, got 65"),
        (comparison.INPUT_CIFAR10, None, 8, None, "the first CIFAR-10 test index field is empty: enter a whole number from 0 to 9999"),
        (comparison.INPUT_CIFAR10, 2.5, 8, None, "got 2.5"),
        (comparison.INPUT_CIFAR10, float("nan"), 8, None, "got nan"),
        (comparison.INPUT_CIFAR10, 9999, 2, None, "run past the last index 9999"),
        (comparison.INPUT_RANDOM, None, None, -1, "random seed must be a whole number >= 0, got -1"),
        (comparison.INPUT_RANDOM, None, None, None, "random seed field is empty"),
        ("images from disk", None, None, None, "unknown comparison input 'images from disk'"),
    ],
)
def test_inputs_reject_invalid_widget_values(source, start, count, seed, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        comparison.CompareInputs.from_widgets(source, start=start, count=count, seed=seed)


# Model choice


def test_default_pair_is_resnet8_pair(catalog):
    assert comparison.default_pair(catalog) == ("resnet8.onnx", "resnet8_int8.onnx")


def test_default_pair_falls_back_to_first_label(tmp_path):
    path = onnx_models.build_float_convnet(tmp_path)
    only_user = build_catalog([path], include_bundled=False)
    assert comparison.default_pair(only_user) == (path.name, path.name)
    assert comparison.default_pair(build_catalog([], include_bundled=False)) == (None, None)


def test_compare_rejects_label_outside_catalog(catalog):
    with pytest.raises(ModelNotFoundError, match="not in the app's model list"):
        comparison.compare_choices(
            catalog, "/etc/passwd", "resnet8_int8.onnx", inputs=comparison.CompareInputs(), data_dir=None, trust=False
        )


def test_compare_rejects_missing_choice(catalog):
    with pytest.raises(InputError, match="choose a float model and a quantized model"):
        comparison.compare_choices(catalog, None, "resnet8_int8.onnx", inputs=comparison.CompareInputs(), data_dir=None, trust=False)


def test_compare_rejects_one_model_on_both_sides(catalog):
    with pytest.raises(InputError, match="resnet8.onnx is chosen as both"):
        comparison.compare_choices(catalog, "resnet8.onnx", "resnet8.onnx", inputs=comparison.CompareInputs(), data_dir=None, trust=False)


def test_compare_models_with_nothing_matching(tmp_path):
    mlp = onnx_models.build_float_mlp(tmp_path)
    catalog = build_catalog([mlp])
    with pytest.raises(ComparisonError, match=f"no layer of {mlp.name} matches a layer of resnet8_int8.onnx"):
        comparison.compare_choices(catalog, mlp.name, "resnet8_int8.onnx", inputs=comparison.CompareInputs(), data_dir=None, trust=False)


def test_compare_corrupt_model_names_file(tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(bytes(range(256)) * 8)
    catalog = build_catalog([broken])
    outcome = session.attempt(
        comparison.compare_choices, catalog, "resnet8.onnx", "broken.onnx",
        inputs=comparison.CompareInputs(), data_dir=None, trust=False,
    )
    assert not outcome.ok
    assert str(broken) in outcome.error
    with pytest.raises(ModelFormatError):
        comparison.compare_choices(catalog, "resnet8.onnx", "broken.onnx", inputs=comparison.CompareInputs(), data_dir=None, trust=False)


def test_compare_cifar10_missing_data(catalog, tmp_path):
    inputs = comparison.CompareInputs.from_widgets(comparison.INPUT_CIFAR10, start=0, count=2, seed=None)
    with pytest.raises(DatasetNotFoundError, match="Weights-only and random-input comparisons work without CIFAR-10"):
        comparison.compare_choices(catalog, "resnet8.onnx", "resnet8_int8.onnx", inputs=inputs, data_dir=tmp_path, trust=False)


# Report


def test_weights_report_is_cached(catalog, weights_report):
    again = comparison.run_comparison(
        catalog, "resnet8.onnx", "resnet8_int8.onnx", source=comparison.INPUT_NONE, start=0, count=8, seed=0,
        data_dir=None, trust=False,
    )
    assert again is weights_report
    assert weights_report.activations is None


def test_ranked_rows_of_resnet8(weights_report):
    rows = comparison.ranked_rows(weights_report)
    assert len(rows) == 12
    assert [row["rank"] for row in rows] == list(range(1, 13))
    assert sum(1 for row in rows if row["op_type"] in CONV_AND_DENSE) == 10
    assert "activation SQNR (dB)" not in rows[0]
    sqnr = [row["weight SQNR (dB)"] for row in rows]
    assert sqnr == sorted(sqnr)
    assert all(0.1 < row["RMSE / scale"] < 0.35 for row in rows)
    assert all(row["note"] == "" for row in rows)
    assert {row["match"] for row in rows} == {"exact"}


def test_report_with_random_input_has_activation_columns(catalog):
    inputs = comparison.CompareInputs.from_widgets(comparison.INPUT_RANDOM, start=None, count=None, seed=1)
    report = comparison.compare_choices(catalog, "resnet8.onnx", "resnet8_int8.onnx", inputs=inputs, data_dir=None, trust=False)
    rows = comparison.ranked_rows(report)
    assert report.inputs == "random:1"
    assert all(isinstance(row["activation SQNR (dB)"], float) for row in rows)
    assert "local SQNR (dB)" in rows[0]
    assert "over 1 input (random:1)" in comparison.summary_text(report)


def test_report_on_cifar10_images(catalog, cifar_dir):
    inputs = comparison.CompareInputs.from_widgets(comparison.INPUT_CIFAR10, start=0, count=4, seed=None)
    report = comparison.compare_choices(catalog, "resnet8.onnx", "resnet8_int8.onnx", inputs=inputs, data_dir=cifar_dir, trust=False)
    assert report.activations.samples == 4
    assert "Top-1 accuracy on 4 labelled inputs" in comparison.summary_text(report)


def test_db_cells_show_infinity_as_text():
    assert comparison.format_db(None) == "-"
    assert comparison.format_db(math.inf) == "inf"
    assert comparison.format_db(-math.inf) == "-inf"
    assert comparison.format_db(12.345) == "12.35"
    assert comparison.format_steps(None) == "-"
    assert comparison.format_steps(0.28904) == "0.2890"


def test_table_formats_cover_numeric_columns(weights_report):
    rows = comparison.ranked_rows(weights_report)
    formats = comparison.table_formats(rows)
    assert set(formats) == {"weight SQNR (dB)", "RMSE / scale"}
    assert comparison.table_formats([]) == {}


def test_table_shows_infinite_sqnr_as_inf():
    import marimo as mo

    rows = [{"weight SQNR (dB)": math.inf}, {"weight SQNR (dB)": 30.0}, {"weight SQNR (dB)": None}]
    table = mo.ui.table(rows, selection=None, format_mapping=comparison.table_formats(rows))
    assert table._component_args["data"] == '[{"weight SQNR (dB)":"inf"},{"weight SQNR (dB)":"30.00"},{"weight SQNR (dB)":"-"}]'


def test_unmatched_rows_list_both_sides(catalog):
    report = comparison.compare_choices(
        catalog, "resnet8.pt", "resnet8_int8.pt", inputs=comparison.CompareInputs(), data_dir=None, trust=False
    )
    rows = comparison.unmatched_rows(report)
    float_count = len(report.matching.unmatched_float)
    quant_count = len(report.matching.unmatched_quant)
    assert quant_count > 0
    assert len(rows) == float_count + quant_count
    assert [row["model"] for row in rows] == ["float"] * float_count + ["quantized"] * quant_count
    assert {row["layer"] for row in rows[float_count:]} == {layer.name or "(root)" for layer in report.matching.unmatched_quant}


def test_no_unmatched_rows_for_resnet8_onnx(weights_report):
    assert comparison.unmatched_rows(weights_report) == []


def test_model_warnings_for_swapped_models(catalog, weights_report):
    assert comparison.model_warnings(weights_report) == []
    swapped = comparison.compare_choices(
        catalog, "resnet8_int8.onnx", "resnet8.onnx", inputs=comparison.CompareInputs(), data_dir=None, trust=False
    )
    warnings = comparison.model_warnings(swapped)
    assert len(warnings) == 2
    assert warnings[0].startswith("resnet8.onnx has no quantized tensor")
    assert warnings[1].startswith("resnet8_int8.onnx has quantized tensors")


def test_sqnr_figure_marks_worst_layers(weights_report):
    figure = comparison.sqnr_figure(weights_report)
    names = [trace.name for trace in figure.data]
    assert names == ["weight SQNR", f"worst {comparison.WORST_MARKED}"]
    worst = figure.data[1]
    assert list(worst.x) == [result.float_name for result in weights_report.layers[: comparison.WORST_MARKED]]
    assert list(figure.data[0].x) == [result.float_name for result in weights_report.in_graph_order()]


# Matched layer


def test_layer_options_in_graph_order(weights_report):
    options = comparison.layer_options(weights_report)
    assert list(options.values()) == [result.float_name for result in weights_report.in_graph_order()]
    assert "/stack1/conv1/Conv (Conv)" in options


def test_layer_options_name_both_layers(catalog):
    report = comparison.compare_choices(
        catalog, "resnet8.pt", "resnet8_int8.onnx", inputs=comparison.CompareInputs(), data_dir=None, trust=False
    )
    labels = list(comparison.layer_options(report))
    assert any(" / /" in label for label in labels), labels


def test_default_layer_is_worst(weights_report):
    label = comparison.default_layer_label(weights_report)
    assert comparison.layer_options(weights_report)[label] == weights_report.layers[0].float_name


def test_layer_figures_overlay_and_scatter(weights_report):
    # 32 x 32 x 3 x 3 = 9216 weights, more than the scatter draws.
    result = comparison.layer_result(weights_report, "/stack2/conv2/Conv")
    figures = comparison.layer_figures(result)
    overlay = [trace for trace in figures.overlay.data if trace.type == "bar"]
    assert [trace.name for trace in overlay] == ["float", "dequantized"]
    assert list(overlay[0].x) == list(overlay[1].x)
    assert len(overlay[0].x) == comparison.OVERLAY_BINS
    assert {trace.type for trace in figures.scatter.data} == {"scatter"}
    points = figures.scatter.data[0]
    assert len(points.x) == 5000
    assert "(5,000 sampled elements)" in figures.scatter.layout.title.text
    assert "Weight SQNR" in comparison.layer_facts(result)


@pytest.mark.parametrize(("pair", "expected"), [
    (("resnet8.pt", "resnet8_int8.pt"), "no local SQNR: local error needs a quantized ONNX model"),
    (("resnet8.onnx", "resnet8_int8.onnx"), "dB; local SQNR "),
])
def test_layer_facts_explain_local_sqnr(catalog, pair, expected):
    inputs = comparison.CompareInputs.from_widgets(comparison.INPUT_RANDOM, start=None, count=None, seed=0)
    report = comparison.compare_choices(catalog, *pair, inputs=inputs, data_dir=None, trust=False)
    result = next(layer for layer in report.layers if layer.activation is not None)
    facts = comparison.layer_facts(result)
    assert expected in facts
    assert "- dB" not in facts


def test_layer_result_of_unknown_layer(weights_report):
    with pytest.raises(ComparisonError, match="'nope' is not a matched layer"):
        comparison.layer_result(weights_report, "nope")


def test_layer_figures_of_unaligned_weights(tmp_path):
    convnet = onnx_models.build_float_convnet(tmp_path)
    catalog = build_catalog([convnet])
    report = comparison.compare_choices(catalog, convnet.name, "resnet8_int8.onnx", inputs=comparison.CompareInputs(), data_dir=None, trust=False)
    result = comparison.layer_result(report, "/fc/Gemm")
    assert "not compared" in comparison.layer_facts(result)
    with pytest.raises(ComparisonError, match="cannot be compared"):
        comparison.layer_figures(result)


def test_compare_view_uses_catalog_paths_only(catalog, weights_report):
    paths = {Path(choice.path).resolve() for choice in catalog.choices}
    assert weights_report.float_model.path.resolve() in paths
    assert weights_report.quant_model.path.resolve() in paths
