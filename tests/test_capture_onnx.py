"""Capture from ONNX models run by onnxruntime, checked against sub-models and hand dequantization."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from quantlens.capture import capture, list_capture_points
from quantlens.errors import InputError, LayerNotFoundError
from quantlens.inputs import cifar10_samples, random_input
from quantlens.runtime import open_session
from tests.fixtures import onnx_models
from tests.fixtures.processes import printed_words

ONNX_MODELS = ("resnet8.onnx", "resnet8_int8.onnx", "resnet8_uint8.onnx", "resnet8_int8_qop.onnx")


def run_plain(path: Path, inputs: np.ndarray, output: str) -> np.ndarray:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    inference = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return inference.run([output], {inference.get_inputs()[0].name: inputs})[0]


def initializer(path: Path, name: str) -> np.ndarray:
    model = onnx.load(str(path))
    return next(numpy_helper.to_array(t) for t in model.graph.initializer if t.name == name)


def make_model(nodes, inputs, outputs, initializers=(), name="tiny") -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.fixture(scope="module")
def sessions(bundled):
    return {name: open_session(bundled[name]) for name in ONNX_MODELS}


@pytest.fixture(scope="module")
def cifar_batch(cifar_dir):
    return cifar10_samples([3, 7], data_dir=cifar_dir)


@pytest.mark.parametrize("name", ONNX_MODELS)
def test_outputs_bit_exact(sessions, cifar_batch, name):
    session = sessions[name]
    result = capture(session, cifar_batch)
    assert np.array_equal(result.outputs[0], session.predict(cifar_batch))


def test_single_run_outputs_from_captured_graph(sessions, cifar_batch):
    session = sessions["resnet8_uint8.onnx"]
    exact = capture(session, cifar_batch)
    single = capture(session, cifar_batch, exact_outputs=False)
    last = single.activations[-1].tensor.values
    assert np.array_equal(single.outputs[0], last)
    assert any(notice.startswith("outputs come from the captured graph") for notice in single.notices)
    assert not any(notice.startswith("outputs come from the captured graph") for notice in exact.notices)
    # One quantization step of the output at most: the fused and unfused graphs round differently.
    assert np.max(np.abs(single.outputs[0] - exact.outputs[0])) <= 0.016


@pytest.mark.parametrize("name", ONNX_MODELS)
def test_points_match_capture_order(sessions, name):
    session = sessions[name]
    names = [p.name for p in list_capture_points(session)]
    assert capture(session, random_input(0)).names == names


def test_intermediate_matches_extracted_submodel(sessions, cifar_batch, bundled, tmp_path):
    value = "/stack2/relu1/Relu_output_0"
    result = capture(sessions["resnet8.onnx"], cifar_batch, layers=[value])
    extracted = tmp_path / "head.onnx"
    onnx.utils.extract_model(str(bundled["resnet8.onnx"]), str(extracted), ["input"], [value])
    inputs = sessions["resnet8.onnx"].adapter.prepare(cifar_batch)
    expected = run_plain(extracted, inputs, value)
    assert np.allclose(result.activation(value).tensor.values, expected, rtol=1e-5, atol=1e-5)


def test_layer_and_op_type(sessions):
    result = capture(sessions["resnet8.onnx"], random_input(0), layers=["/stack1/conv1/Conv"])
    activation = result.activations[0]
    assert activation.layer == "/stack1/conv1/Conv"
    assert activation.op_type == "Conv"
    assert activation.output_index == 0


def test_weight_dequantize_is_not_activation(sessions):
    names = {p.name for p in list_capture_points(sessions["resnet8_int8.onnx"])}
    assert "conv.weight_DequantizeLinear_Output" not in names


@pytest.mark.parametrize("name, dtype", [("resnet8_int8.onnx", "int8"), ("resnet8_uint8.onnx", "uint8")])
def test_qdq_activations_dequantize(sessions, name, dtype):
    result = capture(sessions[name], random_input(1))
    quantized = [a.tensor for a in result.activations if a.op_type == "QuantizeLinear"]
    assert quantized
    for tensor in quantized:
        assert tensor.dtype == dtype
        assert tensor.quantization is not None, tensor.name
        expected = np.float32(tensor.quantization.scale) * (
            tensor.codes.astype(np.float32) - np.float32(tensor.quantization.zero_point)
        )
        assert np.array_equal(tensor.values, expected), tensor.name


def test_qdq_codes_match_dequantize_node(sessions):
    result = capture(sessions["resnet8_int8.onnx"], random_input(2))
    quantized = result.activation("/stack1/conv2/Conv_output_0_QuantizeLinear_Output").tensor
    dequantized = result.activation("/stack1/conv2/Conv_output_0_DequantizeLinear_Output").tensor
    assert np.array_equal(quantized.values, dequantized.values)


def test_qdq_scale_from_initializer(sessions, bundled):
    result = capture(sessions["resnet8_int8.onnx"], random_input(0))
    tensor = result.activation("/stack1/conv2/Conv_output_0_QuantizeLinear_Output").tensor
    model = onnx.load(str(bundled["resnet8_int8.onnx"]))
    node = next(n for n in model.graph.node if n.output[0] == tensor.name)
    assert float(tensor.quantization.scale) == float(initializer(bundled["resnet8_int8.onnx"], node.input[1]))
    assert int(tensor.quantization.zero_point) == int(initializer(bundled["resnet8_int8.onnx"], node.input[2]))


def test_qoperator_conv_quantization(sessions, bundled):
    result = capture(sessions["resnet8_int8_qop.onnx"], random_input(0))
    tensor = result.activation("/stack1/conv1/Conv_output_0_quantized").tensor
    path = bundled["resnet8_int8_qop.onnx"]
    assert result.activation(tensor.name).op_type == "QLinearConv"
    assert float(tensor.quantization.scale) == float(initializer(path, "/stack1/conv1/Conv_output_0_scale"))
    assert int(tensor.quantization.zero_point) == int(initializer(path, "/stack1/conv1/Conv_output_0_zero_point"))


def test_qoperator_every_integer_value_quantized(sessions):
    result = capture(sessions["resnet8_int8_qop.onnx"], random_input(0))
    integer = [a.tensor for a in result.activations if a.tensor.dtype in ("int8", "uint8")]
    assert integer
    assert all(t.quantization is not None for t in integer)
    assert not [notice for notice in result.notices if "no scale and zero_point" in notice]


def test_model_file_unchanged(bundled, sessions):
    path = bundled["resnet8_int8.onnx"]
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    capture(sessions["resnet8_int8.onnx"], random_input(0))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_unknown_layer(sessions):
    with pytest.raises(LayerNotFoundError, match="'/conv/Con'.*did you mean '/conv/Conv'"):
        capture(sessions["resnet8.onnx"], random_input(0), layers=["/conv/Con"])


def test_empty_layer_list(sessions):
    with pytest.raises(LayerNotFoundError, match="empty"):
        capture(sessions["resnet8.onnx"], random_input(0), layers=[])


def test_device_rejected_for_onnx(sessions):
    with pytest.raises(InputError, match="PyTorch models only"):
        capture(sessions["resnet8.onnx"], random_input(0), device="cpu")


# Tiny fixture models


def test_slash_names_from_fixture(tmp_path):
    session = open_session(onnx_models.build_float_convnet(tmp_path))
    result = capture(session, random_input(0))
    assert result.names[0] == "/block/conv1/Conv_output_0"
    assert result.activations[0].layer == "/block/conv1/Conv"
    assert result.names[-1] == "logits"
    assert np.array_equal(result.outputs[0], session.predict(random_input(0)))


def test_unnamed_nodes_use_reader_names(tmp_path):
    shape = numpy_helper.from_array(np.array([1, -1], np.int64), name="shape_value")
    model = make_model(
        [helper.make_node("Transpose", ["x"], ["nchw"], name="", perm=[0, 3, 1, 2]),
         helper.make_node("Constant", [], ["shape_const"], name="", value=shape),
         helper.make_node("Reshape", ["nchw", "shape_const"], ["flat"], name=""),
         helper.make_node("Relu", ["flat"], ["y"], name="/act/Relu")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 4, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 48])],
    )
    path = tmp_path / "unnamed.onnx"
    onnx.save(model, str(path))
    layers = {p.name: p.layer for p in list_capture_points(open_session(path))}
    assert layers == {"nchw": "Transpose_0", "flat": "Reshape_2", "y": "/act/Relu"}


def test_qdq_per_channel_fixture(tmp_path):
    session = open_session(onnx_models.build_qdq_per_channel(tmp_path))
    result = capture(session, random_input(0))
    quantized = [a.tensor for a in result.activations if a.tensor.is_quantized]
    assert quantized
    assert np.array_equal(result.outputs[0], session.predict(random_input(0)))


def test_qoperator_fixture(tmp_path):
    session = open_session(onnx_models.build_qoperator(tmp_path))
    result = capture(session, random_input(0))
    ops = {a.op_type for a in result.activations if a.tensor.is_quantized}
    assert "QLinearConv" in ops


def test_external_data_model(tmp_path):
    source = onnx_models.build_float_convnet(tmp_path)
    path = onnx_models.save_with_external_data(source, tmp_path / "external")
    session = open_session(path)
    result = capture(session, random_input(0))
    assert np.array_equal(result.outputs[0], session.predict(random_input(0)))
    assert len(result) == 6


def test_non_image_input(tmp_path):
    weight = numpy_helper.from_array(np.ones((4, 2), np.float32), name="w")
    model = make_model(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm"), helper.make_node("Relu", ["y"], ["z"], name="act")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 2])],
        [weight],
    )
    path = tmp_path / "vector.onnx"
    onnx.save(model, str(path))
    session = open_session(path)
    assert capture(session, random_input(0)).names == ["y", "z"]
    images = cifar10_like_batch()
    with pytest.raises(InputError, match="not image-shaped"):
        capture(session, images)


def cifar10_like_batch():
    from quantlens.inputs import InputBatch

    return InputBatch(images=np.zeros((1, 32, 32, 3), np.uint8), labels=(0,), descriptions=("zeros",))


def test_fixed_batch_runs_in_slices(tmp_path, cifar_dir):
    model = make_model(
        [helper.make_node("ReduceMean", ["x"], ["m"], name="mean", axes=[1, 2], keepdims=0),
         helper.make_node("Neg", ["m"], ["n"], name="neg")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32, 32, 3])],
        [helper.make_tensor_value_info("n", TensorProto.FLOAT, [1, 3])],
    )
    path = tmp_path / "fixed.onnx"
    onnx.save(model, str(path))
    session = open_session(path)
    batch = cifar10_samples([0, 1, 2], data_dir=cifar_dir)
    result = capture(session, batch)
    assert result.activation("m").tensor.shape == (3, 3)
    assert result.outputs[0].shape == (3, 3)


def test_sequence_values_are_not_capture_points(tmp_path):
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("SequenceConstruct", ["x", "r"], ["seq"], name="pack"),
        helper.make_node("SequenceAt", ["seq", "index"], ["y"], name="pick"),
    ]
    index = numpy_helper.from_array(np.array(1, dtype=np.int64), "index")
    model = make_model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])],
        [index],
    )
    path = tmp_path / "sequence.onnx"
    onnx.save(model, str(path))
    names = [point.name for point in list_capture_points(open_session(path))]
    assert names == ["r", "y"]


def test_capture_of_plain_cnn_does_not_import_onnx(bundled):
    printed = printed_words(
        "import sys, quantlens",
        f"session = quantlens.open_session({str(bundled['resnet8_int8.onnx'])!r})",
        "result = quantlens.capture_activations(session, quantlens.parse_input('random:0'))",
        "print(len(result.activations) > 10, 'onnx' in sys.modules)",
    )
    assert printed == ["True", "False"]
