"""A float TFLite model compared layer by layer with its int8 twin, through the API and the CLI.

Activation errors are recomputed from the LiteRT interpreter's own tensors (reference kernels),
and weight errors from the arrays the fixture quantized. The SQNR bounds sit a few dB below the
values measured on these fixtures (weights 43.6-45.9 dB, activations 31.2-37.6 dB on CIFAR-10
test images 0-63), far above what a wrong pairing or a wrong scale gives (below 0 dB).
"""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert", reason="the tflite extra is not installed")

from ai_edge_litert.interpreter import Interpreter, OpResolverType  # noqa: E402

from quantlens.cli.main import main  # noqa: E402
from quantlens.compare import MatchMethod, compare_models  # noqa: E402
from quantlens.errors import UnsupportedModelError  # noqa: E402
from tests.fixtures.tflite_twins import (  # noqa: E402
    CONVS,
    FC_BIAS_NAME,
    FC_INT8_OUTPUT_NAME,
    FC_WEIGHTS_NAME,
    FLOAT_WEIGHT_LAYERS,
    INT8_WEIGHT_LAYERS,
    MEAN_NAME,
    OUTPUT_NAME,
    QUANTIZE_NAME,
    TwinModels,
    standardize,
    write_int8_twin,
    write_keras_twin,
    write_twins,
)

WEIGHT_SQNR_BOUND_DB = 40.0
ACTIVATION_SQNR_BOUND_DB = 28.0
SAMPLES = 64
INPUTS = f"cifar10:0-{SAMPLES - 1}"
PLANTED_FILTER = CONVS[1].filter_name
PLANTED_LAYER = CONVS[1].output_name
# Codes kept and scale multiplied by 8 give 8 * w, an error of 7 * w: SQNR = -20 * log10(7).
PLANTED_WEIGHT_SQNR_DB = -20 * math.log10(7)


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> TwinModels:
    return write_twins(tmp_path_factory.mktemp("twins"))


@pytest.fixture(scope="module")
def planted_path(twins: TwinModels) -> Path:
    built = write_int8_twin(
        twins.float_path.parent, twins.weights, twins.ranges,
        file_name="twin_int8_planted.tflite", weight_scale_factors={PLANTED_FILTER: 8.0},
    )
    return built.path


@pytest.fixture(scope="module")
def weights_report(twins: TwinModels):
    return compare_models(twins.float_path, twins.int8_path)


@pytest.fixture(scope="module")
def report(twins: TwinModels, cifar_dir: Path):
    return compare_models(twins.float_path, twins.int8_path, inputs=INPUTS, data_dir=cifar_dir)


def cifar_images(cifar_dir: Path, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Read the first ``count`` CIFAR-10 test images as uint8 NHWC, and their labels, with pickle alone."""
    with (cifar_dir / "test_batch").open("rb") as handle:
        batch = pickle.load(handle, encoding="bytes")
    images = np.asarray(batch[b"data"][:count], dtype=np.uint8).reshape(count, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, np.asarray(batch[b"labels"][:count], dtype=np.int64)


def interpreter_tensors(path: Path, inputs: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """Run each input through a reference-kernel interpreter and return the named tensors, dequantized, stacked."""
    interpreter = Interpreter(
        model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
        experimental_preserve_all_tensors=True,
    )
    interpreter.allocate_tensors()
    details = {d["name"]: d for d in interpreter.get_tensor_details()}
    parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for sample in inputs:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], sample[np.newaxis])
        interpreter.invoke()
        for name in names:
            detail = details[name]
            values = interpreter.get_tensor(detail["index"])
            scale, zero_point = detail["quantization"]
            if values.dtype == np.int8:
                values = (values.astype(np.float64) - zero_point) * scale
            parts[name].append(values.astype(np.float64))
    return {name: np.concatenate(arrays) for name, arrays in parts.items()}


def sqnr(reference: np.ndarray, values: np.ndarray) -> float:
    return 20 * math.log10(np.linalg.norm(reference) / np.linalg.norm(reference - values))


# --- matching ---


def test_every_weight_layer_matched(weights_report):
    matching = weights_report.matching
    pairs = {match.float_name: match.quant_name for match in matching.matches}
    for float_name, quant_name in zip(FLOAT_WEIGHT_LAYERS, INT8_WEIGHT_LAYERS):
        assert pairs[float_name] == quant_name
    assert matching.for_float(CONVS[0].output_name).method is MatchMethod.EXACT
    assert matching.for_float(OUTPUT_NAME).method is MatchMethod.ORDER
    assert pairs[MEAN_NAME] == MEAN_NAME
    assert matching.unmatched_float == ()


def test_quantize_and_dequantize_stay_unmatched(weights_report):
    unmatched = [(layer.name, layer.op_type) for layer in weights_report.matching.unmatched_quant]
    assert unmatched == [(QUANTIZE_NAME, "QUANTIZE"), (OUTPUT_NAME, "DEQUANTIZE")]


# --- weights ---


def test_weight_sqnr_high_per_layer(weights_report):
    for name in FLOAT_WEIGHT_LAYERS:
        weight = next(result.weight for result in weights_report.layers if result.float_name == name)
        assert math.isfinite(weight.sqnr_db), name
        assert weight.sqnr_db > WEIGHT_SQNR_BOUND_DB, name
        # Round-to-nearest without clipping gives an RMSE of 1/sqrt(12) = 0.289 steps.
        assert 0.26 < weight.rmse_over_scale < 0.31, name
        assert weight.axis_order == tuple(range(len(weight.axis_order))), name


def test_weight_sqnr_equals_fixture_quantization(twins, weights_report):
    quantization = twins.int8.quantization
    for conv in CONVS:
        scales = np.asarray(quantization[conv.filter_name].scale, dtype=np.float32).reshape(-1, 1, 1, 1)
        dequantized = twins.int8.arrays[conv.filter_name].astype(np.float32) * scales
        result = next(r for r in weights_report.layers if r.float_name == conv.output_name)
        assert result.weight.granularity == "per-channel(axis=0)"
        assert result.weight.sqnr_db == pytest.approx(sqnr(twins.weights[conv.filter_name], dequantized), abs=1e-6)
    fc = next(r for r in weights_report.layers if r.float_name == OUTPUT_NAME)
    fc_values = twins.int8.arrays[FC_WEIGHTS_NAME].astype(np.float32) * np.float32(quantization[FC_WEIGHTS_NAME].scale[0])
    assert fc.weight.granularity == "per-tensor"
    assert fc.weight.sqnr_db == pytest.approx(sqnr(twins.weights[FC_WEIGHTS_NAME], fc_values), abs=1e-6)
    bias_values = twins.int8.arrays[FC_BIAS_NAME].astype(np.float32) * np.float32(quantization[FC_BIAS_NAME].scale[0])
    assert fc.weight.bias.sqnr_db == pytest.approx(sqnr(twins.weights[FC_BIAS_NAME], bias_values), abs=1e-6)


def test_planted_scale_worst_by_weight(twins, planted_path):
    planted = compare_models(twins.float_path, planted_path)
    assert planted.ranked_by == "weight"
    assert planted.layers[0].float_name == PLANTED_LAYER
    assert planted.layers[0].weight_sqnr_db == pytest.approx(PLANTED_WEIGHT_SQNR_DB, abs=0.01)
    assert all(result.weight_sqnr_db > WEIGHT_SQNR_BOUND_DB for result in planted.layers[1:])


# --- activations ---


def test_activation_sqnr_high_per_layer(report):
    assert report.ranked_by == "activation"
    assert report.activations.samples == SAMPLES
    for name in (*FLOAT_WEIGHT_LAYERS, MEAN_NAME):
        result = next(r for r in report.layers if r.float_name == name)
        assert math.isfinite(result.activation_sqnr_db), name
        assert result.activation_sqnr_db > ACTIVATION_SQNR_BOUND_DB, name


def test_activation_pairs_follow_layers(report):
    pairs = {r.float_name: (r.activation.pair.float_name, r.activation.pair.quant_name) for r in report.layers}
    for float_name, quant_name in zip(FLOAT_WEIGHT_LAYERS, INT8_WEIGHT_LAYERS):
        assert pairs[float_name] == (float_name, quant_name)


def test_activation_sqnr_matches_interpreter(twins, report, cifar_dir):
    images, _ = cifar_images(cifar_dir, SAMPLES)
    inputs = standardize(images)
    float_names = [*FLOAT_WEIGHT_LAYERS, MEAN_NAME]
    quant_names = [*INT8_WEIGHT_LAYERS, MEAN_NAME]
    float_values = interpreter_tensors(twins.float_path, inputs, float_names)
    quant_values = interpreter_tensors(twins.int8_path, inputs, quant_names)
    for float_name, quant_name in zip(float_names, quant_names):
        result = next(r for r in report.layers if r.float_name == float_name)
        expected = sqnr(float_values[float_name], quant_values[quant_name])
        # quantlens dequantizes in float32, this test in float64.
        assert result.activation_sqnr_db == pytest.approx(expected, abs=1e-4), float_name


def test_output_agreement_matches_interpreter(twins, report, cifar_dir):
    images, labels = cifar_images(cifar_dir, SAMPLES)
    inputs = standardize(images)
    float_logits = interpreter_tensors(twins.float_path, inputs, [OUTPUT_NAME])[OUTPUT_NAME]
    quant_logits = interpreter_tensors(twins.int8_path, inputs, [FC_INT8_OUTPUT_NAME])[FC_INT8_OUTPUT_NAME]
    outputs = report.outputs
    assert outputs.labelled == SAMPLES
    assert outputs.float_correct == int(np.sum(float_logits.argmax(axis=1) == labels))
    assert outputs.quant_correct == int(np.sum(quant_logits.argmax(axis=1) == labels))
    assert outputs.top1_agreement == np.mean(float_logits.argmax(axis=1) == quant_logits.argmax(axis=1))


def test_planted_scale_worst_by_activation(twins, planted_path, report, cifar_dir):
    planted = compare_models(twins.float_path, planted_path, inputs=INPUTS, data_dir=cifar_dir)
    assert planted.layers[0].float_name == PLANTED_LAYER
    assert planted.layers[0].activation_sqnr_db < 0
    before = CONVS[0].output_name
    clean = next(r for r in report.layers if r.float_name == before)
    upstream = next(r for r in planted.layers if r.float_name == before)
    assert upstream.activation_sqnr_db == clean.activation_sqnr_db


# --- Keras twin, weights only ---


def test_keras_twin_weights_match_tflite(twins, weights_report, tmp_path):
    keras_path = write_keras_twin(tmp_path, twins.weights)
    keras_report = compare_models(keras_path, twins.int8_path)
    pairs = {r.float_name: r for r in keras_report.layers}
    for keras_name, tflite_float, quant_name in zip(("conv1", "conv2", "conv3", "dense"), FLOAT_WEIGHT_LAYERS, INT8_WEIGHT_LAYERS):
        result = pairs[keras_name]
        assert result.quant_name == quant_name
        assert result.match.method is MatchMethod.ORDER
        same_weights = next(r for r in weights_report.layers if r.float_name == tflite_float)
        assert result.weight_sqnr_db == pytest.approx(same_weights.weight_sqnr_db, abs=1e-9), keras_name
    # HWIO kernels and (in, out) Dense kernels are transposed into the TFLite OHWI and (out, in) layouts.
    assert pairs["conv2"].weight.axis_order == (1, 2, 3, 0)
    assert pairs["conv2"].weight.channel_axis == 3
    assert pairs["dense"].weight.axis_order == (1, 0)
    assert keras_report.activations is None


def test_keras_twin_activations_need_runtime(twins, tmp_path):
    keras_path = write_keras_twin(tmp_path, twins.weights)
    with pytest.raises(UnsupportedModelError, match="twin_float.h5.*without --input"):
        compare_models(keras_path, twins.int8_path, inputs="random:0")


# --- CLI ---


def test_cli_compare_with_inputs(twins, report, cifar_dir, tmp_path, capsys):
    json_path, csv_path = tmp_path / "report.json", tmp_path / "report.csv"
    arguments = [
        "compare", str(twins.float_path), str(twins.int8_path), "--input", INPUTS, "--data-dir", str(cifar_dir),
        "--json", str(json_path), "--csv", str(csv_path), "--top", "0",
    ]
    assert main(arguments) == 0
    output = capsys.readouterr().out
    assert "twin_float.tflite (tflite) vs twin_int8.tflite (tflite): 5 layers matched" in output
    assert f"unmatched quantized layers: {QUANTIZE_NAME} (QUANTIZE), {OUTPUT_NAME} (DEQUANTIZE)" in output
    assert f"top-1 accuracy on {SAMPLES} labelled inputs" in output
    assert "no local SQNR" in output
    data = json.loads(json_path.read_text())
    assert data["ranked_by"] == "activation"
    assert [row["float_layer"] for row in data["layers"]] == [r.float_name for r in report.layers]
    assert [row["activation_sqnr_db"] for row in data["layers"]] == pytest.approx([r.activation_sqnr_db for r in report.layers])
    assert len(csv_path.read_text().splitlines()) == 1 + len(report.layers)


def test_cli_compare_planted_weights_only(twins, planted_path, capsys):
    assert main(["compare", str(twins.float_path), str(planted_path), "--top", "1"]) == 0
    output = capsys.readouterr().out
    lines = output.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("#"))
    assert lines[header + 2].split()[1] == PLANTED_LAYER
    assert "layers ranked worst first by weight SQNR" in output
    assert "1 of 5" in output
    assert "weights only: pass --input" in output


def test_cli_compare_missing_model(twins, tmp_path, capsys):
    missing = tmp_path / "absent.tflite"
    assert main(["compare", str(twins.float_path), str(missing)]) == 2
    assert "absent.tflite" in capsys.readouterr().err
