"""TFLite reader, LiteRT session and activation capture on tiny models built in the tests."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert", reason="the tflite extra is not installed")

from ai_edge_litert import schema_py_generated as schema  # noqa: E402
from ai_edge_litert.interpreter import Interpreter, OpResolverType  # noqa: E402

from quantlens.adapter import adapter_from_spec  # noqa: E402
from quantlens.capture.tflite_capture import capture_tflite  # noqa: E402
from quantlens.cli.main import main  # noqa: E402
from quantlens.errors import (  # noqa: E402
    CaptureError,
    LayerNotFoundError,
    MissingDependencyError,
    ModelFormatError,
)
from quantlens.inputs import InputBatch  # noqa: E402
from quantlens.readers import choose_reader, open_model  # noqa: E402
from quantlens.records import Role  # noqa: E402
from quantlens.runtime import open_session  # noqa: E402
from quantlens.runtime.tflite_session import TfliteSession  # noqa: E402
from tests.fixtures.tflite_models import (  # noqa: E402
    CONV_OUTPUT_SHAPE,
    FC_UNITS,
    INPUT_SHAPE,
    BuiltModel,
    GraphWriter,
    write_float16_conv,
    write_float_conv,
    write_int4_fully_connected,
    write_int8_conv,
)

# The numpy conv reference sums 27 products in float64; LiteRT's reference kernel sums in float32.
FLOAT_CONV_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tflite")


@pytest.fixture(scope="module")
def float_model(folder: Path) -> BuiltModel:
    return write_float_conv(folder)


@pytest.fixture(scope="module")
def int8_model(folder: Path) -> BuiltModel:
    return write_int8_conv(folder)


def images(count: int, seed: int = 0) -> InputBatch:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(count, *INPUT_SHAPE[1:]), dtype=np.uint8)
    return InputBatch(images=pixels, labels=(None,) * count, descriptions=tuple(f"image {i}" for i in range(count)))


def plain_run(path: Path, inputs: np.ndarray) -> np.ndarray:
    """Run a fresh reference-kernel interpreter without preserved tensors, one sample at a time."""
    interpreter = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interpreter.allocate_tensors()
    outputs = []
    for sample in inputs:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], sample[None])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))
    return np.concatenate(outputs)


def conv_same_reference(x: np.ndarray, filters: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """NHWC 2-D convolution, stride 1, SAME padding, filters ``(out, kh, kw, in)``, in float64."""
    kernel_h, kernel_w = filters.shape[1:3]
    padded = np.pad(x.astype(np.float64), ((0, 0), (kernel_h // 2,) * 2, (kernel_w // 2,) * 2, (0, 0)))
    height, width = x.shape[1:3]
    out = np.zeros((x.shape[0], height, width, filters.shape[0]))
    for dy in range(kernel_h):
        for dx in range(kernel_w):
            window = padded[:, dy : dy + height, dx : dx + width, :]
            out += np.einsum("nhwi,oi->nhwo", window, filters[:, dy, dx, :].astype(np.float64))
    return out + bias


# --- reader: float model ---


def test_tflite_sniffed_by_identifier(float_model):
    assert choose_reader(float_model.path).name == "tflite"


def test_float_layers_in_operator_order(float_model):
    model = open_model(float_model.path)
    assert model.format == "tflite"
    assert [(layer.name, layer.op_type) for layer in model.layers] == [("conv/output", "CONV_2D"), ("relu/output", "RELU")]


def test_float_conv_weight_and_bias(float_model):
    conv = open_model(float_model.path).layer("conv/output")
    assert [(t.name, t.role) for t in conv.tensors] == [("conv/filter", Role.WEIGHT), ("conv/bias", Role.BIAS)]
    assert conv.weight is not None and conv.bias is not None
    assert conv.weight.dtype == "float32"
    assert conv.weight.quantization is None
    assert conv.weight.shape == (3, 3, 3, 3)
    np.testing.assert_array_equal(conv.weight.values, float_model.arrays["conv/filter"])
    np.testing.assert_array_equal(conv.bias.values, float_model.arrays["conv/bias"])


def test_float_input_spec_from_subgraph(float_model):
    spec = open_model(float_model.path).input_spec
    assert spec is not None
    assert spec.shape == (None, 5, 5, 3)
    assert spec.layout == "NHWC"
    assert spec.dtype == "float32"
    assert spec.input_scale is None


def test_input_metadata_sets_scaling(tmp_path):
    built = write_float_conv(tmp_path, metadata=json.dumps({"layout": "NHWC", "scaling": "unit"}))
    model = open_model(built.path)
    assert model.input_spec is not None
    assert model.input_spec.scaling == "unit"
    assert model.input_spec.source == "metadata"
    assert model.input_spec.name == "input"
    assert model.metadata["description"] == "quantlens test model"


def test_input_metadata_keeps_subgraph_shape_and_dtype(tmp_path):
    metadata = json.dumps({"scaling": "raw", "shape": [1, 9, 9, 3], "dtype": "int8"})
    built = write_float_conv(tmp_path, metadata=metadata)
    spec = open_model(built.path).input_spec
    assert spec.shape == (None, 5, 5, 3)
    assert spec.dtype == "float32"
    assert spec.layout == "NHWC"
    session = open_session(built.path)
    assert session.adapter.describe() == "NHWC 5x5x3 float32, raw pixels 0-255 (from metadata)"
    inputs = session.adapter.prepare(images(1))
    np.testing.assert_array_equal(session.run(inputs)[0], plain_run(built.path, inputs))


# --- reader: int8 model ---


def test_int8_filter_per_channel_quantization(int8_model):
    weight = open_model(int8_model.path).layer("conv/output").weight
    written = int8_model.quantization["conv/filter"]
    assert weight is not None and weight.quantization is not None
    np.testing.assert_array_equal(weight.codes, int8_model.arrays["conv/filter"])
    assert weight.codes.dtype == np.int8
    np.testing.assert_array_equal(weight.quantization.scale, np.float32(written.scale))
    np.testing.assert_array_equal(weight.quantization.zero_point, written.zero_point)
    assert weight.quantization.axis == written.quantized_dimension == 0
    assert (weight.quantization.qmin, weight.quantization.qmax) == (-128, 127)
    assert weight.quantization.storage_dtype == "int8"


def test_int8_filter_values_are_dequantized(int8_model):
    weight = open_model(int8_model.path).layer("conv/output").weight
    codes = int8_model.arrays["conv/filter"]
    scales = np.float32(int8_model.quantization["conv/filter"].scale).reshape(-1, 1, 1, 1)
    assert weight is not None
    np.testing.assert_array_equal(weight.values, codes.astype(np.float32) * scales)
    # Golden value: channel 1 has scale 0.02, so code c dequantizes to float32(0.02) * c.
    assert weight.values[1, 0, 0, 0] == np.float32(0.02) * np.float32(codes[1, 0, 0, 0])


def test_int8_bias_is_int32_per_channel(int8_model):
    bias = open_model(int8_model.path).layer("conv/output").bias
    written = int8_model.quantization["conv/bias"]
    assert bias is not None and bias.quantization is not None
    assert bias.dtype == "int32"
    np.testing.assert_array_equal(bias.codes, int8_model.arrays["conv/bias"])
    np.testing.assert_array_equal(bias.quantization.scale, np.float32(written.scale))
    np.testing.assert_array_equal(bias.quantization.zero_point, [0, 0, 0])
    assert bias.quantization.axis == 0
    assert (bias.quantization.qmin, bias.quantization.qmax) == (-(2**31), 2**31 - 1)
    expected = int8_model.arrays["conv/bias"].astype(np.float32) * np.float32(written.scale)
    np.testing.assert_array_equal(bias.values, expected)


def test_int8_fc_weights_per_tensor(int8_model):
    fc = open_model(int8_model.path).layer("logits")
    assert fc.op_type == "FULLY_CONNECTED"
    assert fc.weight is not None and fc.weight.quantization is not None
    assert fc.weight.quantization.axis is None
    assert fc.weight.quantization.granularity == "per-tensor"
    assert float(fc.weight.quantization.scale) == np.float32(0.004)
    assert int(fc.weight.quantization.zero_point) == 0
    np.testing.assert_array_equal(fc.weight.codes, int8_model.arrays["fc/weights"])


def test_int8_input_spec_records_quantization(int8_model):
    spec = open_model(int8_model.path).input_spec
    assert spec is not None
    assert spec.dtype == "int8"
    assert spec.shape == INPUT_SHAPE
    assert spec.input_scale == np.float32(0.02)
    assert spec.input_zero_point == -10


def test_int8_adapter_quantizes_input(int8_model):
    spec = open_model(int8_model.path).input_spec
    adapter = adapter_from_spec(spec).with_options(scaling="unit")
    batch = images(1)
    codes = adapter.prepare(batch)
    unit = batch.images.astype(np.float32) / np.float32(255.0)
    expected = np.clip(np.rint(unit / np.float32(0.02)) - 10, -128, 127).astype(np.int8)
    assert codes.dtype == np.int8
    np.testing.assert_array_equal(codes, expected)


def test_int4_weights_unpacked(folder):
    built = write_int4_fully_connected(folder)
    weight = open_model(built.path).layer("logits").weight
    assert weight is not None and weight.quantization is not None
    assert weight.dtype == "int4"
    assert (weight.quantization.qmin, weight.quantization.qmax) == (-8, 7)
    np.testing.assert_array_equal(weight.codes, built.arrays["fc/weights"])


def test_int4_codes_match_interpreter(folder):
    """The interpreter's output agrees with a numpy FC on the unpacked codes, so the nibble order is right."""
    built = write_int4_fully_connected(folder)
    codes = open_model(built.path).layer("logits").weight.codes
    x = np.random.default_rng(7).integers(-20, 20, (1, 6)).astype(np.int8)
    output = plain_run(built.path, x)
    expected = np.clip(np.round((x.astype(np.int64) @ codes.T.astype(np.int64)) * 0.1 * 0.05 / 0.01), -128, 127)
    assert np.abs(output.astype(np.int64) - expected).max() <= 1


def test_float16_weight_through_dequantize(folder):
    built = write_float16_conv(folder)
    model = open_model(built.path)
    assert [(layer.name, layer.op_type) for layer in model.layers] == [("conv/filter", "DEQUANTIZE"), ("conv/output", "CONV_2D")]
    weight = model.layer("conv/filter").weight
    assert weight is not None
    assert weight.dtype == "float16"
    np.testing.assert_array_equal(weight.values, built.arrays["conv/filter_fp16"])
    conv = model.layer("conv/output")
    assert conv.weight is None
    assert [t.name for t in conv.tensors] == ["conv/bias"]


def test_float16_model_captures(folder):
    built = write_float16_conv(folder)
    session = TfliteSession(built.path)
    result = capture_tflite(session, images(1))
    assert result.names == ["conv/filter", "conv/output"]
    np.testing.assert_array_equal(result.activation("conv/filter").tensor.values, built.arrays["conv/filter_fp16"].astype(np.float32))
    inputs = session.adapter.prepare(images(1))
    expected = conv_same_reference(inputs, built.arrays["conv/filter_fp16"].astype(np.float32), built.arrays["conv/bias"])
    np.testing.assert_allclose(result.activation("conv/output").tensor.values, expected, rtol=0, atol=FLOAT_CONV_TOLERANCE)


# --- session and capture ---


def test_open_session_runs_tflite(float_model):
    session = open_session(float_model.path)
    assert isinstance(session, TfliteSession)
    inputs = session.adapter.prepare(images(1))
    (output,) = session.run(inputs)
    np.testing.assert_array_equal(output, plain_run(float_model.path, inputs))


def test_float_capture_matches_interpreter(float_model):
    session = TfliteSession(float_model.path)
    result = capture_tflite(session, images(1))
    assert result.names == ["conv/output", "relu/output"]
    inputs = session.adapter.prepare(images(1))
    np.testing.assert_array_equal(result.activation("relu/output").tensor.values, plain_run(float_model.path, inputs))
    np.testing.assert_array_equal(result.outputs[0], result.activation("relu/output").tensor.values)


def test_float_conv_activation_matches_numpy(float_model):
    session = TfliteSession(float_model.path)
    result = capture_tflite(session, images(1))
    conv = result.activation("conv/output")
    assert conv.layer == "conv/output"
    assert conv.op_type == "CONV_2D"
    assert conv.tensor.role == Role.ACTIVATION
    assert conv.tensor.quantization is None
    inputs = session.adapter.prepare(images(1))
    expected = conv_same_reference(inputs, float_model.arrays["conv/filter"], float_model.arrays["conv/bias"])
    np.testing.assert_allclose(conv.tensor.values, expected, rtol=0, atol=FLOAT_CONV_TOLERANCE)
    np.testing.assert_array_equal(result.activation("relu/output").tensor.values, np.maximum(conv.tensor.values, 0))


def test_dynamic_batch_runs_in_one_invoke(float_model):
    session = TfliteSession(float_model.path)
    result = capture_tflite(session, images(3))
    assert result.activation("conv/output").tensor.shape == (3, 5, 5, 3)
    assert result.notices == ()
    single = capture_tflite(TfliteSession(float_model.path), InputBatch(images=images(3).images[2:], labels=(None,), descriptions=("x",)))
    np.testing.assert_array_equal(result.outputs[0][2:], single.outputs[0])


def test_int8_activation_codes_and_quantization(int8_model):
    result = capture_tflite(TfliteSession(int8_model.path), images(1))
    assert result.names == ["conv/output", "logits"]
    conv = result.activation("conv/output").tensor
    assert conv.dtype == "int8"
    assert conv.codes is not None and conv.quantization is not None
    assert conv.codes.dtype == np.int8
    assert float(conv.quantization.scale) == np.float32(0.05)
    assert int(conv.quantization.zero_point) == 3
    expected = (conv.codes.astype(np.int64) - 3).astype(np.float32) * np.float32(0.05)
    np.testing.assert_array_equal(conv.values, expected)


def test_int8_capture_matches_interpreter(int8_model):
    session = TfliteSession(int8_model.path)
    result = capture_tflite(session, images(1))
    inputs = session.adapter.prepare(images(1))
    logits = result.activation("logits").tensor
    assert logits.shape == (1, FC_UNITS)
    np.testing.assert_array_equal(logits.codes, plain_run(int8_model.path, inputs))
    np.testing.assert_array_equal(result.outputs[0], logits.values)


def test_int8_run_dequantizes_outputs(int8_model):
    session = TfliteSession(int8_model.path)
    inputs = session.adapter.prepare(images(1))
    (output,) = session.run(inputs)
    codes = plain_run(int8_model.path, inputs)
    assert output.dtype == np.float32
    np.testing.assert_array_equal(output, (codes.astype(np.int64) + 2).astype(np.float32) * np.float32(0.1))


@pytest.mark.parametrize("fixture", ["float_model", "int8_model"])
def test_generic_capture_dispatches_tflite(request, fixture):
    from quantlens.capture import capture

    path = request.getfixturevalue(fixture).path
    generic = capture(open_session(path), images(2))
    direct = capture_tflite(TfliteSession(path), images(2))
    assert generic.names == direct.names
    for ours, theirs in zip(generic.activations, direct.activations):
        np.testing.assert_array_equal(ours.tensor.view(integer=True), theirs.tensor.view(integer=True))
    np.testing.assert_array_equal(generic.outputs[0], direct.outputs[0])


def test_int8_conv_within_one_code_of_numpy(int8_model):
    """The kernel requantizes with a fixed-point multiplier, so rounding may differ by one code."""
    session = TfliteSession(int8_model.path)
    inputs = session.adapter.prepare(images(1))
    codes = capture_tflite(session, images(1)).activation("conv/output").tensor.codes
    quant = int8_model.quantization
    accumulator = conv_same_reference(inputs.astype(np.float64) + 10, int8_model.arrays["conv/filter"], int8_model.arrays["conv/bias"])
    # Padding must add the input zero point, which is 0 after the shift by +10 above.
    multiplier = np.float64(np.float32(0.02)) * np.float64(np.float32(quant["conv/filter"].scale)) / np.float64(np.float32(0.05))
    expected = np.clip(np.round(accumulator * multiplier) + 3, -128, 127)
    assert np.abs(codes.astype(np.int64) - expected).max() <= 1


def test_fixed_batch_runs_per_sample(int8_model):
    session = TfliteSession(int8_model.path)
    result = capture_tflite(session, images(3))
    assert result.activation("conv/output").tensor.shape == (3, *CONV_OUTPUT_SHAPE[1:])
    assert result.outputs[0].shape == (3, FC_UNITS)
    assert any("one at a time" in notice for notice in result.notices)
    inputs = session.adapter.prepare(images(3))
    np.testing.assert_array_equal(result.activation("logits").tensor.codes, plain_run(int8_model.path, inputs))
    np.testing.assert_array_equal(result.outputs[0], result.activation("logits").tensor.values)


def test_capture_selected_layer(int8_model):
    result = capture_tflite(TfliteSession(int8_model.path), images(1), layers=["logits"])
    assert result.names == ["logits"]


def test_capture_unknown_layer(int8_model):
    with pytest.raises(LayerNotFoundError, match="logit"):
        capture_tflite(TfliteSession(int8_model.path), images(1), layers=["logit"])


def test_capture_needs_preserved_tensors(float_model):
    session = TfliteSession(float_model.path, preserve_all_tensors=False)
    with pytest.raises(CaptureError, match="preserve_all_tensors=True"):
        capture_tflite(session, images(1))


@pytest.mark.parametrize(("fixture", "tolerance"), [("float_model", 1e-5), ("int8_model", 1)])
def test_xnnpack_close_to_reference(request, fixture, tolerance):
    built = request.getfixturevalue(fixture)
    reference = capture_tflite(TfliteSession(built.path), images(2))
    fast = capture_tflite(TfliteSession(built.path, xnnpack=True), images(2))
    assert fast.names == reference.names
    for ours, theirs in zip(fast.activations, reference.activations):
        difference = np.abs(ours.tensor.view(integer=True).astype(np.float64) - theirs.tensor.view(integer=True))
        assert difference.max() <= tolerance, ours.name


# --- CLI ---


def test_cli_layers_lists_tflite_tensors(int8_model, capsys):
    assert main(["layers", str(int8_model.path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["tensors"]
    assert [(r["layer"], r["role"], r["quantized"]) for r in rows] == [
        ("conv/output", "weight", "per-channel(axis=0)"),
        ("conv/output", "bias", "per-channel(axis=0)"),
        ("logits", "weight", "per-tensor"),
        ("logits", "bias", "per-tensor"),
    ]


def test_cli_stats_of_tflite_weight(int8_model, capsys):
    assert main(["stats", str(int8_model.path), "--layer", "conv/output", "--int"]) == 0
    output = capsys.readouterr().out
    assert "conv/filter" in output
    assert "per-channel(axis=0)" in output


# --- errors ---


def test_random_bytes_named_tflite(folder):
    path = folder / "random.tflite"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 256, dtype=np.uint8).tobytes())
    with pytest.raises(ModelFormatError, match="random.tflite"):
        open_model(path)


@pytest.mark.parametrize("keep", [12, 0.5])
def test_truncated_tflite(float_model, folder, keep):
    data = float_model.path.read_bytes()
    length = keep if isinstance(keep, int) else int(len(data) * keep)
    path = folder / f"truncated_{length}.tflite"
    path.write_bytes(data[:length])
    with pytest.raises(ModelFormatError, match=path.name):
        open_model(path)


def test_buffer_size_mismatch(folder):
    graph = GraphWriter()
    x = graph.tensor("x", (3,), schema.TensorType.FLOAT32)
    y = graph.tensor("y", (3,), schema.TensorType.FLOAT32, data=np.zeros(2, dtype=np.float32))
    out = graph.tensor("out", (3,), schema.TensorType.FLOAT32)
    graph.operator(schema.BuiltinOperator.ADD, [x, y], [out])
    path = graph.write(folder / "short_buffer.tflite", inputs=[x], outputs=[out])
    tensor = open_model(path).layer("out").tensors[0]
    with pytest.raises(ModelFormatError, match="'y' of shape \\(3,\\) and dtype float32 needs 12 bytes, but its buffer holds 8"):
        tensor.values  # noqa: B018


def test_missing_litert_names_extra(float_model, monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.schema_py_generated", None)
    with pytest.raises(MissingDependencyError, match='pip install "quantlens\\[tflite\\]"'):
        open_model(float_model.path)
