"""``quantlens eval`` and ``quantlens activations`` on TFLite classifiers, checked against plain LiteRT runs.

The three models are the float twin, its int8 twin with float I/O (QUANTIZE and DEQUANTIZE ops)
and its int8 twin with int8 I/O, whose input scaling quantlens infers from the input
quantization. Each test computes the model input itself (CIFAR-10 standardization, then the
interpreter's own input quantization for int8 inputs) and runs a fresh reference-kernel
interpreter one sample at a time.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert", reason="the tflite extra is not installed")

from ai_edge_litert.interpreter import Interpreter, OpResolverType  # noqa: E402
from PIL import Image  # noqa: E402

from quantlens.cli.main import main  # noqa: E402
from quantlens.runtime import open_session  # noqa: E402
from tests.fixtures.tflite_twins import (  # noqa: E402
    CIFAR10_MEAN,
    CIFAR10_STD,
    CONVS,
    FC_INT8_OUTPUT_NAME,
    INPUT_NAME,
    MEAN_NAME,
    OUTPUT_NAME,
    QUANTIZE_NAME,
    TwinModels,
    calibration_images,
    standardize,
    write_int8_twin,
    write_twins,
)

EVAL_LIMIT = 300
FLOAT, INT8, INT8_IO = "float", "int8", "int8 with int8 I/O"
ACTIVATION_NAMES = {
    FLOAT: [*(conv.output_name for conv in CONVS), MEAN_NAME, OUTPUT_NAME],
    INT8: [QUANTIZE_NAME, *(conv.output_name for conv in CONVS), MEAN_NAME, FC_INT8_OUTPUT_NAME, OUTPUT_NAME],
    INT8_IO: [*(conv.output_name for conv in CONVS), MEAN_NAME, OUTPUT_NAME],
}


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> TwinModels:
    return write_twins(tmp_path_factory.mktemp("twins"), centered=True)


@pytest.fixture(scope="module")
def models(twins: TwinModels) -> dict[str, Path]:
    integer_io = write_int8_twin(
        twins.float_path.parent, twins.weights, twins.ranges, file_name="twin_int8_io.tflite", integer_io=True
    )
    return {FLOAT: twins.float_path, INT8: twins.int8_path, INT8_IO: integer_io.path}


def reference_interpreter(path: Path) -> Interpreter:
    interpreter = Interpreter(
        model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
        experimental_preserve_all_tensors=True,
    )
    interpreter.allocate_tensors()
    return interpreter


def model_input(interpreter: Interpreter, images: np.ndarray) -> np.ndarray:
    """Standardize uint8 NHWC images and quantize them with the model's own input quantization if its input is int8."""
    values = standardize(images)
    detail = interpreter.get_input_details()[0]
    if detail["dtype"] != np.int8:
        return values
    scale, zero_point = detail["quantization"]
    return np.clip(np.rint(values / np.float32(scale)) + zero_point, -128, 127).astype(np.int8)


def run_each(interpreter: Interpreter, inputs: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """Invoke once per sample and stack the named tensors as the interpreter stores them."""
    indices = {d["name"]: d["index"] for d in interpreter.get_tensor_details()}
    parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for sample in inputs:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], sample[np.newaxis])
        interpreter.invoke()
        for name in names:
            parts[name].append(interpreter.get_tensor(indices[name]))
    return {name: np.concatenate(arrays) for name, arrays in parts.items()}


def cifar_images(cifar_dir: Path, count: int) -> tuple[np.ndarray, np.ndarray]:
    with (cifar_dir / "test_batch").open("rb") as handle:
        batch = pickle.load(handle, encoding="bytes")
    images = np.asarray(batch[b"data"][:count], dtype=np.uint8).reshape(count, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, np.asarray(batch[b"labels"][:count], dtype=np.int64)


# --- eval ---


@pytest.mark.parametrize("kind", [FLOAT, INT8, INT8_IO])
def test_eval_counts_interpreter_argmax(models, kind, cifar_dir, capsys):
    path = models[kind]
    arguments = ["eval", str(path), "--data-dir", str(cifar_dir), "--limit", str(EVAL_LIMIT), "--json"]
    assert main(arguments) == 0
    result = json.loads(capsys.readouterr().out)

    images, labels = cifar_images(cifar_dir, EVAL_LIMIT)
    interpreter = reference_interpreter(path)
    output_name = interpreter.get_output_details()[0]["name"]
    logits = run_each(interpreter, model_input(interpreter, images), [output_name])[output_name]
    hits = logits.argmax(axis=1) == labels
    assert result["count"] == EVAL_LIMIT
    assert result["correct"] == int(hits.sum())
    assert result["accuracy"] == 100.0 * int(hits.sum()) / EVAL_LIMIT
    per_class = [100.0 * int(hits[labels == label].sum()) / int(np.sum(labels == label)) for label in range(10)]
    assert list(result["per_class_accuracy"].values()) == per_class


def test_eval_int8_agrees_with_float_input_twin(models, cifar_dir, capsys):
    """The int8-input twin quantizes its input in the adapter, the other one in its QUANTIZE op."""
    accuracies = []
    for kind in (INT8, INT8_IO):
        assert main(["eval", str(models[kind]), "--data-dir", str(cifar_dir), "--limit", str(EVAL_LIMIT), "--json"]) == 0
        accuracies.append(json.loads(capsys.readouterr().out)["correct"])
    assert accuracies[0] == accuracies[1]


# --- input adapter ---


def test_int8_input_scaling_inferred(models):
    adapter = open_session(models[INT8_IO]).adapter
    assert adapter.scaling == "standardize"
    assert adapter.mean == CIFAR10_MEAN
    assert adapter.std == CIFAR10_STD
    assert adapter.source.startswith("input quantization: scale 0.0161")
    assert "(from input quantization: scale" in adapter.describe()


def test_adapter_codes_equal_quantize_op(models):
    """The adapter's int8 input equals what the float-input twin's QUANTIZE op computes from the same pixels."""
    images = calibration_images(16, seed=5)
    codes = open_session(models[INT8_IO]).adapter.from_pixels(images)
    interpreter = reference_interpreter(models[INT8])
    quantized = run_each(interpreter, standardize(images), [QUANTIZE_NAME])[QUANTIZE_NAME]
    assert codes.dtype == np.int8
    np.testing.assert_array_equal(codes, quantized)


def test_scaling_option_overrides_inferred(models, tmp_path, capsys):
    paths, images = write_images(tmp_path, 1)
    saved = tmp_path / "unit.npz"
    arguments = ["activations", str(models[INT8_IO]), "--input", str(paths[0]), "--scaling", "unit", "--save", str(saved)]
    assert main(arguments) == 0
    assert "pixels scaled to 0-1 (from option)" in capsys.readouterr().out
    scale, zero_point = reference_interpreter(models[INT8_IO]).get_input_details()[0]["quantization"]
    unit = images.astype(np.float32) / np.float32(255.0)
    expected = np.clip(np.rint(unit / np.float32(scale)) + zero_point, -128, 127).astype(np.int8)
    with np.load(saved) as arrays:
        np.testing.assert_array_equal(arrays["__input__"], expected)


def test_unit_input_quantization_feeds_pixels(twins, tmp_path, capsys):
    """An int8 input calibrated on 0-1 (scale 1/255, zero_point -128) gets each pixel minus 128."""
    ranges = {**twins.ranges, INPUT_NAME: (0.0, 1.0)}
    built = write_int8_twin(tmp_path, twins.weights, ranges, file_name="twin_int8_unit.tflite", integer_io=True)
    paths, images = write_images(tmp_path, 2)
    saved = tmp_path / "unit.npz"
    assert main(["activations", str(built.path), "--input", *map(str, paths), "--save", str(saved)]) == 0
    output = capsys.readouterr().out
    assert "pixels scaled to 0-1 (from input quantization: scale 0.00392157 and zero_point -128 cover 0 to 1)" in output
    with np.load(saved) as arrays:
        np.testing.assert_array_equal(arrays["__input__"], images.astype(np.int16) - 128)


# --- activations ---


def write_images(folder: Path, count: int) -> tuple[list[Path], np.ndarray]:
    images = calibration_images(count, seed=9)
    paths = []
    for index, image in enumerate(images):
        path = folder / f"image_{index}.png"
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths, images


@pytest.mark.parametrize("kind", [FLOAT, INT8, INT8_IO])
def test_activations_saved_match_interpreter(models, kind, tmp_path, capsys):
    paths, images = write_images(tmp_path, 3)
    saved = tmp_path / "activations.npz"
    arguments = ["activations", str(models[kind]), "--input", *map(str, paths), "--save", str(saved)]
    assert main(arguments) == 0
    output = capsys.readouterr().out
    assert f"{len(ACTIVATION_NAMES[kind])} activations, statistics over all 3 inputs" in output

    interpreter = reference_interpreter(models[kind])
    inputs = model_input(interpreter, images)
    names = ACTIVATION_NAMES[kind]
    expected = run_each(interpreter, inputs, names)
    details = {d["name"]: d for d in interpreter.get_tensor_details()}
    with np.load(saved) as arrays:
        np.testing.assert_array_equal(arrays["__input__"], inputs)
        stored = sorted(key for key in arrays.files if not key.startswith("__") and not key.endswith("__codes"))
        assert stored == sorted(names)
        for name in names:
            values = expected[name]
            if values.dtype == np.int8:
                scale, zero_point = details[name]["quantization"]
                np.testing.assert_array_equal(arrays[f"{name}__codes"], values, err_msg=name)
                dequantized = (values.astype(np.int64) - zero_point).astype(np.float32) * np.float32(scale)
                np.testing.assert_array_equal(arrays[name], dequantized, err_msg=name)
            else:
                assert f"{name}__codes" not in arrays.files
                np.testing.assert_array_equal(arrays[name], values, err_msg=name)
        final = expected[OUTPUT_NAME]
        if final.dtype == np.int8:
            scale, zero_point = details[OUTPUT_NAME]["quantization"]
            final = (final.astype(np.int64) - zero_point).astype(np.float32) * np.float32(scale)
        np.testing.assert_array_equal(arrays["__output__"], final)


def test_activations_print_int8_quantization(models, tmp_path, capsys):
    paths, _ = write_images(tmp_path, 1)
    assert main(["activations", str(models[INT8_IO]), "--input", str(paths[0]), "--layer", MEAN_NAME]) == 0
    output = capsys.readouterr().out
    assert "input NHWC 32x32x3 int8, standardized with mean (0.4914, 0.4822, 0.4465)" in output
    assert "scale / zero_point" in output
    interpreter = reference_interpreter(models[INT8_IO])
    scale, zero_point = next(d for d in interpreter.get_tensor_details() if d["name"] == MEAN_NAME)["quantization"]
    assert f"scale={scale:.6g} zero_point={zero_point}" in output
