"""Float vs quantized comparison on the bundled ResNet8 files: matching, cross-checks, report, CLI.

The bundled models may be retrained, so no test asserts an accuracy or an absolute SQNR.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from quantlens.cli.main import main
from quantlens.compare import MatchMethod, compare_models, load_mapping, match_layers
from quantlens.compare.charts import histogram_overlay_figure, scatter_figure, sqnr_figure
from quantlens.compare.folding import fold_batchnorm, op_family
from quantlens.compare.local import LOCAL_UNAVAILABLE
from quantlens.compare.naming import normalize_name
from quantlens.compare.weights import weight_arrays
from quantlens.errors import ComparisonError, InputError
from quantlens.readers import open_model
from quantlens.records import Layer, Model, Role, Tensor

QUANTIZED_MODELS = ("resnet8_int8.onnx", "resnet8_uint8.onnx", "resnet8_int8_qop.onnx", "resnet8_int8.pt")
CONV_AND_DENSE = {
    "conv", "stack1.conv1", "stack1.conv2", "stack2.conv1", "stack2.conv2", "stack2.shortcut",
    "stack3.conv1", "stack3.conv2", "stack3.shortcut", "fc",
}
PLANTED_LAYER = "/stack2/conv1/Conv"


def _matched_conv_and_dense(float_path: Path, quant_path: Path) -> set[str]:
    matching = match_layers(open_model(float_path), open_model(quant_path))
    names = set()
    for match in matching.matches:
        if op_family(match.float_layer.op_type) in ("conv", "linear"):
            assert normalize_name(match.float_name) == normalize_name(match.quant_name)
            names.add(normalize_name(match.float_name))
    return names


@pytest.fixture(scope="module")
def qdq_report(bundled, cifar_dir):
    return compare_models(bundled["resnet8.onnx"], bundled["resnet8_int8.onnx"], inputs="cifar10:0-7", data_dir=cifar_dir)


@pytest.fixture(scope="module")
def torch_report(bundled, cifar_dir):
    return compare_models(bundled["resnet8.pt"], bundled["resnet8_int8.pt"], inputs="cifar10:0-3", data_dir=cifar_dir)


@pytest.fixture(scope="module")
def planted_model(bundled, tmp_path_factory) -> Path:
    """resnet8_int8.onnx with the weight scale of PLANTED_LAYER multiplied by 8."""
    model = onnx.load(str(bundled["resnet8_int8.onnx"]))
    weight = next(n for n in model.graph.node if n.name == PLANTED_LAYER).input[1]
    dequantize = next(n for n in model.graph.node if n.output[0] == weight)
    scale = next(i for i in model.graph.initializer if i.name == dequantize.input[1])
    scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) * np.float32(8), scale.name))
    path = tmp_path_factory.mktemp("planted") / "resnet8_int8_planted.onnx"
    onnx.save(model, str(path))
    return path


# Names and families


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("/stack1/conv1/Conv", "stack1.conv1"),
        ("/stack1/conv1/Conv_quant", "stack1.conv1"),
        ("stack1.conv1", "stack1.conv1"),
        ("/stack1/conv1/Conv_output_0_DequantizeLinear_Output", "stack1.conv1"),
        ("/pool/GlobalAveragePool_output_0_quantized", "pool"),
        ("/stack1/Add_1", "stack1"),
    ],
)
def test_normalize_name(name, expected):
    assert normalize_name(name) == expected


@pytest.mark.parametrize(
    ("op_type", "family"),
    [("Conv", "conv"), ("QLinearConv", "conv"), ("quantized::conv2d_relu", "conv"), ("ConvReLU2d", "conv"),
     ("Gemm", "linear"), ("QGemm", "linear"), ("Linear", "linear"), ("BatchNorm2d", "batchnorm")],
)
def test_op_family(op_type, family):
    assert op_family(op_type) == family


def test_fold_batchnorm_worked_example():
    def vector(name: str, role: Role, value: float) -> Tensor:
        array = np.array([value], dtype=np.float64)
        return Tensor(name, role, (1,), "float64", load_values=lambda: array)

    batchnorm = Layer("bn", "BatchNorm2d", (
        vector("bn.weight", Role.WEIGHT, 3.0), vector("bn.bias", Role.BIAS, 0.5),
        vector("bn.running_mean", Role.PARAMETER, 1.0), vector("bn.running_var", Role.PARAMETER, 4.0 - 1e-5),
    ), index=1)
    weight, bias = fold_batchnorm(np.array([[2.0]]), None, batchnorm)
    assert weight[0, 0] == pytest.approx(3.0)
    assert bias[0] == pytest.approx(-1.0)


# Matching


@pytest.mark.parametrize("quantized", QUANTIZED_MODELS)
def test_every_conv_and_dense_matches(bundled, quantized):
    assert _matched_conv_and_dense(bundled["resnet8.onnx"], bundled[quantized]) == CONV_AND_DENSE


def test_torch_float_matches_torchscript(bundled):
    assert _matched_conv_and_dense(bundled["resnet8.pt"], bundled["resnet8_int8.pt"]) == CONV_AND_DENSE


def test_torch_batchnorm_folded_not_unmatched(bundled):
    matching = match_layers(open_model(bundled["resnet8.pt"]), open_model(bundled["resnet8_int8.pt"]))
    assert matching.for_float("conv").float_batchnorm.name == "bn"
    assert not [layer for layer in matching.unmatched_float if op_family(layer.op_type) == "batchnorm"]


def test_unmatched_reported_on_both_sides(bundled):
    matching = match_layers(open_model(bundled["resnet8.onnx"]), open_model(bundled["resnet8_int8.pt"]))
    assert {"pool", "flatten"} <= {layer.name for layer in matching.unmatched_quant}
    assert {"/preprocess/Mul", "/preprocess/Add"} <= {layer.name for layer in matching.unmatched_float}


def test_order_stage_matches_renamed_layers(bundled, tmp_path):
    model = onnx.load(str(bundled["resnet8_int8.onnx"]))
    for index, node in enumerate(model.graph.node):
        node.name = f"node_{index}"
    path = tmp_path / "renamed.onnx"
    onnx.save(model, str(path))
    matching = match_layers(open_model(bundled["resnet8.onnx"]), open_model(path))
    conv = [m for m in matching.matches if op_family(m.float_layer.op_type) in ("conv", "linear")]
    assert len(conv) == 10
    assert {m.method for m in conv} <= {MatchMethod.ORDER, MatchMethod.COSINE}
    weights = [weight_arrays(m) for m in conv]
    assert all(np.allclose(reference, values, atol=0.01) for reference, values, _ in weights)


def test_dequantize_named_like_float_output_not_matched():
    """The TFLite converter names an int8 model's final DEQUANTIZE after the float model's FC output."""
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(10, 16))

    def fully_connected(name: str, index: int, values: np.ndarray) -> Layer:
        tensor = Tensor(f"{name}/weights", Role.WEIGHT, values.shape, "float64", load_values=lambda: values)
        return Layer(name, "FULLY_CONNECTED", (tensor,), index=index)

    float_model = Model(Path("float.tflite"), "tflite", (fully_connected("logits", 0, weights),))
    quant_model = Model(Path("int8.tflite"), "tflite", (
        fully_connected("dense/MatMul;dense/BiasAdd", 0, weights + 0.01),
        Layer("logits", "DEQUANTIZE", (), index=1),
    ))
    matching = match_layers(float_model, quant_model)
    assert matching.for_float("logits").quant_name == "dense/MatMul;dense/BiasAdd"
    assert matching.for_float("logits").method is MatchMethod.ORDER
    assert [layer.name for layer in matching.unmatched_quant] == ["logits"]


def test_mapping_overrides_matcher(bundled):
    mapping = {"/stack1/conv1/Conv": "/stack1/conv2/Conv", "/stack1/conv2/Conv": "/stack1/conv1/Conv"}
    matching = match_layers(open_model(bundled["resnet8.onnx"]), open_model(bundled["resnet8_int8.onnx"]), mapping=mapping)
    match = matching.for_float("/stack1/conv1/Conv")
    assert match.quant_name == "/stack1/conv2/Conv"
    assert match.method is MatchMethod.MAPPING


def test_mapping_unknown_names_raise(bundled):
    mapping = {"/no/such/Conv": "/stack1/conv1/Conv", "/stack1/conv2/Conv": "missing_layer"}
    with pytest.raises(ComparisonError) as error:
        match_layers(open_model(bundled["resnet8.onnx"]), open_model(bundled["resnet8_int8.onnx"]), mapping=mapping)
    assert "'/no/such/Conv'" in str(error.value)
    assert "'missing_layer'" in str(error.value)


def test_mapping_file_must_be_object(tmp_path):
    path = tmp_path / "mapping.json"
    path.write_text("[1, 2]")
    with pytest.raises(InputError, match="JSON object"):
        load_mapping(path)


def test_mapping_file_missing(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_mapping(tmp_path / "absent.json")


# Cross-checks


def test_weight_sqnr_agrees_with_torch(bundled):
    from torch.ao.ns.fx.utils import compute_sqnr

    report = compare_models(bundled["resnet8.pt"], bundled["resnet8_int8.pt"])
    for result in report.layers:
        arrays = weight_arrays(result.match)
        if arrays is None:
            continue
        reference, values, _ = arrays
        expected = float(compute_sqnr(torch.from_numpy(reference).float(), torch.from_numpy(values).float()))
        assert result.weight_sqnr_db == pytest.approx(expected, abs=1e-3), result.float_name


def test_weight_sqnr_agrees_with_torch_on_qdq(bundled):
    from torch.ao.ns.fx.utils import compute_sqnr

    report = compare_models(bundled["resnet8.onnx"], bundled["resnet8_int8.onnx"])
    for result in report.layers:
        reference, values, _ = weight_arrays(result.match)
        expected = float(compute_sqnr(torch.from_numpy(reference).float(), torch.from_numpy(values).float()))
        assert result.weight_sqnr_db == pytest.approx(expected, abs=1e-3), result.float_name


def test_activation_sqnr_agrees_with_qdq_loss_debug(bundled, cifar_dir, qdq_report, tmp_path):
    from onnxruntime.quantization import qdq_loss_debug
    from quantlens.inputs import parse_input
    from quantlens.runtime import open_session

    session = open_session(bundled["resnet8.onnx"])
    feed = [{session.inference.get_inputs()[0].name: session.adapter.prepare(parse_input("cifar10:0-7", data_dir=cifar_dir))}]
    collected = {}
    for name in ("resnet8.onnx", "resnet8_int8.onnx"):
        augmented = tmp_path / f"augmented_{name}"
        qdq_loss_debug.modify_model_output_intermediate_tensors(str(bundled[name]), str(augmented))
        collected[name] = qdq_loss_debug.collect_activations(str(augmented), feed)
    matched = qdq_loss_debug.create_activation_matching(collected["resnet8_int8.onnx"], collected["resnet8.onnx"])
    expected = qdq_loss_debug.compute_activation_error(matched)
    compared = 0
    for result in qdq_report.activations.results:
        # Identical tensors: ours is +inf, theirs is floored at float64 eps; not comparable.
        if result.pair.float_name not in expected or math.isinf(result.sqnr_db):
            continue
        assert result.sqnr_db == pytest.approx(expected[result.pair.float_name]["xmodel_err"], abs=0.01), result.pair.float_name
        compared += 1
    assert compared >= 15


# Report


def test_report_ranks_worst_first(qdq_report):
    values = [result.activation_sqnr_db for result in qdq_report.layers]
    assert values == sorted(values)


def test_layer_output_pairs_fused_relu(qdq_report):
    result = next(r for r in qdq_report.layers if r.float_name == "/conv/Conv")
    assert result.activation.pair.float_name == "/relu/Relu_output_0"
    assert result.activation.pair.quant_name == "/relu/Relu_output_0_DequantizeLinear_Output"


def test_qoperator_pairs_fused_relu(bundled, cifar_dir):
    report = compare_models(bundled["resnet8.onnx"], bundled["resnet8_int8_qop.onnx"], inputs="cifar10:0-1", data_dir=cifar_dir)
    result = next(r for r in report.layers if r.float_name == "/stack1/conv1/Conv")
    assert result.activation.pair.float_name == "/stack1/relu1/Relu_output_0"
    assert result.local_sqnr_db is not None


def test_torch_pairs_after_batchnorm_and_relu(torch_report):
    by_name = {r.float_name: r.activation.pair.float_name for r in torch_report.layers if r.activation is not None}
    assert by_name["conv"] == "relu"
    assert by_name["stack1.conv2"] == "stack1.bn2"


def test_local_error_for_qdq_layers(qdq_report):
    conv_layers = [r for r in qdq_report.layers if r.match.float_layer.op_type in ("Conv", "Gemm")]
    assert all(r.local_sqnr_db is not None for r in conv_layers)


def test_local_error_missing_for_torchscript(torch_report):
    notes = {r.activation.local_note for r in torch_report.layers if r.activation is not None}
    assert notes == {LOCAL_UNAVAILABLE}


def test_output_agreement_in_range(qdq_report):
    outputs = qdq_report.outputs
    assert outputs.samples == 8
    assert 0.0 <= outputs.top1_agreement <= 1.0
    assert outputs.mean_kl_divergence >= 0.0


def test_planted_scale_ranks_worst_by_weight(bundled, planted_model):
    report = compare_models(bundled["resnet8.onnx"], planted_model)
    assert report.layers[0].float_name == PLANTED_LAYER


@pytest.fixture(scope="module")
def planted_report(bundled, planted_model, cifar_dir):
    return compare_models(bundled["resnet8.onnx"], planted_model, inputs="cifar10:0-3", data_dir=cifar_dir)


def test_planted_scale_ranks_worst_by_activation(planted_report):
    assert planted_report.ranked_by == "activation"
    assert planted_report.layers[0].float_name == PLANTED_LAYER


def test_planted_scale_worst_local(planted_report):
    local = [r for r in planted_report.layers if r.local_sqnr_db is not None]
    assert min(local, key=lambda r: r.local_sqnr_db).float_name == PLANTED_LAYER


def test_output_shape_mismatch_noted(tmp_path):
    pytest.importorskip("ai_edge_litert")
    from tests.fixtures.tflite_models import write_float_conv, write_int8_conv

    # Two unrelated TFLite files whose outputs differ in shape.
    report = compare_models(write_float_conv(tmp_path).path, write_int8_conv(tmp_path).path, inputs="random:0")
    assert report.outputs is None
    assert any("different shapes" in note for note in report.notes)


def test_rows_csv_json_agree(qdq_report):
    rows = qdq_report.to_rows()
    data = json.loads(qdq_report.to_json())
    assert [row["float_layer"] for row in data["layers"]] == [row.float_layer for row in rows]
    assert qdq_report.to_csv().splitlines()[0].startswith("rank,float_layer,quant_layer")


def test_json_writes_inf_as_string(qdq_report):
    data = json.loads(qdq_report.to_json())
    identical = [row for row in data["activations"] if row["float_activation"] == "/preprocess/Transpose_output_0"]
    assert identical[0]["sqnr_db"] == "inf"


def test_html_self_contained(qdq_report):
    page = qdq_report.to_html()
    assert not re.search(r"<script[^>]+src=", page)
    assert "Plotly.newPlot" in page


# Charts


def test_sqnr_figure_marks_worst(qdq_report):
    figure = sqnr_figure(qdq_report, worst=2)
    worst = [trace for trace in figure.data if trace.name == "worst 2"]
    assert list(worst[0].x) == [r.float_name for r in qdq_report.layers[:2]]


def test_histogram_overlay_shares_range():
    figure = histogram_overlay_figure(np.linspace(-1, 1, 100), np.linspace(0, 2, 100), bins=10)
    assert np.allclose(figure.data[0].x, figure.data[1].x)


def test_scatter_samples_at_most_max_points():
    values = np.arange(20_000, dtype=np.float32)
    figure = scatter_figure(values, values + 0.5, max_points=5000)
    assert len(figure.data[0].x) == 5000


# CLI


def test_cli_writes_files(bundled, cifar_dir, tmp_path, capsys):
    outputs = {kind: tmp_path / f"report.{kind}" for kind in ("csv", "json", "html")}
    code = main([
        "compare", str(bundled["resnet8.onnx"]), str(bundled["resnet8_int8.onnx"]), "--input", "cifar10:0-7",
        "--data-dir", str(cifar_dir), "--csv", str(outputs["csv"]), "--json", str(outputs["json"]),
        "--html", str(outputs["html"]), "--top", "3",
    ])
    printed = capsys.readouterr().out
    assert code == 0
    assert all(path.is_file() for path in outputs.values())
    assert not re.search(r"<script[^>]+src=[\"']?https?://", outputs["html"].read_text())
    assert "top-1 agreement" in printed
    assert len(json.loads(outputs["json"].read_text())["layers"]) == 12


def test_cli_weights_only(bundled, capsys):
    assert main(["compare", str(bundled["resnet8.onnx"]), str(bundled["resnet8_int8_qop.onnx"])]) == 0
    assert "weights only" in capsys.readouterr().out


def test_cli_same_file_warns(bundled, caplog):
    with caplog.at_level("WARNING", logger="quantlens"):
        assert main(["compare", "resnet8.onnx", str(bundled["resnet8.onnx"])]) == 0
    assert "both models are resnet8.onnx" in caplog.text


def test_cli_unknown_mapping_name_exits_2(bundled, tmp_path, capsys):
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps({"/no/such/Conv": "/conv/Conv"}))
    code = main(["compare", str(bundled["resnet8.onnx"]), str(bundled["resnet8_int8.onnx"]), "--mapping", str(mapping)])
    error = capsys.readouterr().err
    assert code == 2
    assert "/no/such/Conv" in error
    assert len(error.strip().splitlines()) == 1


def test_cli_help_states_units(capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    text = capsys.readouterr().out
    assert "dB" in text
    assert "default: 20" in text


def test_cli_random_input_leaves_model_unchanged(bundled, tmp_path):
    copy = tmp_path / "copy.onnx"
    shutil.copy(bundled["resnet8_int8.onnx"], copy)
    before = copy.read_bytes()
    code = main(["compare", str(bundled["resnet8.onnx"]), str(copy), "--input", "random:1", "--no-local"])
    assert code == 0
    assert copy.read_bytes() == before
