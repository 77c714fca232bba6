"""ONNX reader against tiny generated models, with golden values read back by onnx and onnxruntime."""

from __future__ import annotations

import hashlib
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from quantlens.errors import ModelFormatError, UnsupportedModelError
from quantlens.readers import onnx_reader, open_model
from quantlens.records import Model, Role
from tests.fixtures import onnx_models

CONVNET_LAYERS = ["/block/conv1/Conv", "/block/conv2/Conv", "/fc/Gemm"]
QOPERATOR_LAYERS = ["/block/conv1/Conv_quant", "/block/conv2/Conv_quant", "/fc/Gemm_quant"]
QUANTIZED_TENSORS = [
    "block.conv1.weight_quantized", "block.conv1.bias_quantized",
    "block.conv2.weight_quantized", "block.conv2.bias_quantized",
    "fc.weight_quantized", "fc.bias_quantized",
]
QUANTIZED_FIXTURES = ["qdq_per_channel", "qdq_per_tensor", "qdq_uint8", "qoperator"]
GOLDEN_FIXTURES = [*QUANTIZED_FIXTURES, "qoperator_matmul"]


@pytest.fixture(scope="module")
def model_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Build every fixture model once, each in its own folder."""
    builders = {
        "float_convnet": onnx_models.build_float_convnet,
        "batchnorm_matmul": onnx_models.build_float_batchnorm_matmul,
        "qdq_per_channel": onnx_models.build_qdq_per_channel,
        "qdq_per_tensor": onnx_models.build_qdq_per_tensor,
        "qdq_uint8": onnx_models.build_qdq_uint8,
        "qoperator": onnx_models.build_qoperator,
        "qoperator_matmul": onnx_models.build_qoperator_matmul,
    }
    paths = {name: build(tmp_path_factory.mktemp(name)) for name, build in builders.items()}
    paths["external"] = onnx_models.save_with_external_data(
        paths["qdq_per_channel"], tmp_path_factory.mktemp("external")
    )
    return paths


@pytest.fixture(scope="module")
def models(model_paths: dict[str, Path]) -> dict[str, Model]:
    return {name: onnx_reader.load(path) for name, path in model_paths.items()}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_initializers(path: Path) -> dict[str, np.ndarray]:
    """Read every initializer of ``path`` with onnx itself, independently of the reader."""
    return {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}


def layer_summary(model: Model) -> list[tuple[str, str, list[tuple[str, str, tuple[int, ...], str]]]]:
    """(layer name, op_type, [(role, tensor name, shape, dtype), ...]) for every layer."""
    return [
        (layer.name, layer.op_type, [(str(t.role), t.name, t.shape, t.dtype) for t in layer.tensors])
        for layer in model.layers
    ]


# Layers, roles, shapes and dtypes


def test_float_convnet_layers(models):
    assert layer_summary(models["float_convnet"]) == [
        ("/block/conv1/Conv", "Conv", [
            ("weight", "block.conv1.weight", (4, 3, 3, 3), "float32"),
            ("bias", "block.conv1.bias", (4,), "float32"),
        ]),
        ("/block/conv2/Conv", "Conv", [
            ("weight", "block.conv2.weight", (4, 4, 3, 3), "float32"),
            ("bias", "block.conv2.bias", (4,), "float32"),
        ]),
        ("/fc/Gemm", "Gemm", [
            ("weight", "fc.weight", (2, 4), "float32"),
            ("bias", "fc.bias", (2,), "float32"),
        ]),
    ]


def test_layer_index_is_position(models):
    for name in ("float_convnet", "batchnorm_matmul", "qoperator"):
        layers = models[name].layers
        assert [layer.index for layer in layers] == list(range(len(layers)))


def test_float_values_equal_initializers(models, model_paths):
    initializers = read_initializers(model_paths["float_convnet"])
    for _, tensor in models["float_convnet"].tensors():
        assert tensor.codes is None
        assert np.array_equal(tensor.values, initializers[tensor.name])


def test_batchnorm_matmul_layers(models):
    assert layer_summary(models["batchnorm_matmul"]) == [
        ("/features/conv/Conv", "Conv", [("weight", "features.conv.weight", (2, 3, 3, 3), "float32")]),
        ("/features/bn/BatchNormalization", "BatchNormalization", [
            ("weight", "features.bn.weight", (2,), "float32"),
            ("bias", "features.bn.bias", (2,), "float32"),
            ("parameter", "features.bn.running_mean", (2,), "float32"),
            ("parameter", "features.bn.running_var", (2,), "float32"),
        ]),
        ("Reshape_5", "Reshape", [("parameter", "shape_const", (2,), "int64")]),
        ("/head/MatMul", "MatMul", [("weight", "head.weight", (32, 3), "float32")]),
        ("/head/MatMul #2", "Add", [("parameter", "head.bias", (3,), "float32")]),
    ]


def test_constant_node_values(models):
    tensor = models["batchnorm_matmul"].layer("Reshape_5").tensor("shape_const")
    assert np.array_equal(tensor.values, np.array([-1, 32], dtype=np.int64))


def test_duplicate_node_name_warns(model_paths, caplog):
    with caplog.at_level(logging.WARNING, logger="quantlens.readers.onnx_reader"):
        onnx_reader.load(model_paths["batchnorm_matmul"])
    assert "'/head/MatMul #2'" in caplog.text


@pytest.mark.parametrize(
    ("fixture", "weight_dtype", "axis"),
    [
        ("qdq_per_channel", "int8", 0),
        ("qdq_per_tensor", "int8", None),
        ("qdq_uint8", "uint8", None),
        ("qoperator", "int8", 0),
    ],
)
def test_quantized_layers(models, fixture, weight_dtype, axis):
    model = models[fixture]
    expected_names = QOPERATOR_LAYERS if fixture == "qoperator" else CONVNET_LAYERS
    assert model.layer_names == expected_names
    assert [t.name for _, t in model.tensors()] == QUANTIZED_TENSORS
    for layer in model.layers:
        assert [t.role for t in layer.tensors] == [Role.WEIGHT, Role.BIAS]
        assert layer.weight.dtype == weight_dtype
        assert layer.weight.quantization.storage_dtype == weight_dtype
        assert layer.weight.quantization.axis == axis
        assert layer.bias.dtype == "int32"
        assert layer.bias.quantization.axis == axis


def test_quantized_shapes_match_float(models):
    float_shapes = [t.shape for _, t in models["float_convnet"].tensors()]
    for fixture in QUANTIZED_FIXTURES:
        assert [t.shape for _, t in models[fixture].tensors()] == float_shapes


def test_qoperator_op_types(models):
    assert [layer.op_type for layer in models["qoperator"].layers] == ["QLinearConv", "QLinearConv", "QGemm"]


def test_qoperator_matmul_layers(models):
    assert layer_summary(models["qoperator_matmul"]) == [
        ("/fc1/MatMul_quant", "QLinearMatMul", [("weight", "fc1.weight_quantized", (8, 6), "int8")]),
        ("/fc1/Add_quant", "QLinearAdd", [("parameter", "fc1.bias_quantized", (6,), "uint8")]),
        ("/fc2/MatMul_quant", "QLinearMatMul", [("weight", "fc2.weight_quantized", (6, 3), "int8")]),
    ]


def test_qlinear_matmul_per_column(models):
    weight = models["qoperator_matmul"].layer("/fc1/MatMul_quant").weight
    assert weight.quantization.axis == 1
    assert weight.quantization.scale.shape == (6,)


def test_integer_ops_layers(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="quantlens.readers.onnx_reader"):
        model = onnx_reader.load(onnx_models.build_integer_ops(tmp_path))
    assert layer_summary(model) == [
        ("/mmi/MatMulInteger", "MatMulInteger", [
            ("weight", "mmi.b", (4, 2), "uint8"),
            ("parameter", "mmi.a_zero_point", (), "uint8"),
            ("parameter", "mmi.b_zero_point", (), "uint8"),
        ]),
        ("/nbits/MatMulNBits", "MatMulNBits", [
            ("parameter", "nbits.b", (2, 1, 2), "uint8"),
            ("parameter", "nbits.scales", (2,), "float32"),
        ]),
    ]
    assert "quantized ops MatMulNBits" in caplog.text
    assert not model.layer("/mmi/MatMulInteger").weight.is_quantized


def test_integer_ranges(models):
    for _, tensor in models["qdq_uint8"].tensors():
        expected = (0, 255) if tensor.dtype == "uint8" else (-(2**31), 2**31 - 1)
        assert (tensor.quantization.qmin, tensor.quantization.qmax) == expected


# Golden values: the file's initializers and onnxruntime's DequantizeLinear


@dataclass(frozen=True)
class FileQuantization:
    """Codes and quantization parameters of one tensor, read straight from the file."""

    codes: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int | None  # DequantizeLinear's axis attribute, or the QOperator per-channel axis


# QOperator input positions, from the ONNX and onnxruntime operator docs:
# op_type -> [(integer input, its scale, its zero_point, per-channel axis)] ...
QOPERATOR_INPUTS = {
    "QLinearConv": [(3, 4, 5, 0)],
    "QGemm": [(3, 4, 5, 0)],  # the fixtures set transB, so B is (N, K) with one scale per row
    "QLinearMatMul": [(3, 4, 5, 1)],
    "QLinearAdd": [(0, 1, 2, None), (3, 4, 5, None)],
}
# ... and op_type -> (int32 bias, input scale, weight scale).
QOPERATOR_BIASES = {"QLinearConv": (8, 1, 4), "QGemm": (6, 1, 4)}


def read_file_quantization(path: Path, tensor_name: str) -> FileQuantization:
    """Find how the file quantizes ``tensor_name``: its DequantizeLinear node or QOperator node."""
    arrays = read_initializers(path)
    for node in onnx.load(str(path)).graph.node:
        inputs = list(node.input)
        if node.op_type == "DequantizeLinear" and inputs[0] == tensor_name:
            attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            axis = attributes.get("axis", 1)  # 1 is the ONNX default
            return FileQuantization(arrays[tensor_name], arrays[inputs[1]], arrays[inputs[2]], axis)
        for position, scale, zero_point, axis in QOPERATOR_INPUTS.get(node.op_type, []):
            if inputs[position] == tensor_name:
                scales, zero_points = arrays[inputs[scale]], arrays[inputs[zero_point]]
                return FileQuantization(arrays[tensor_name], scales, zero_points, axis)
        position, input_scale, weight_scale = QOPERATOR_BIASES.get(node.op_type, (None, None, None))
        if position is not None and inputs[position] == tensor_name:
            weight_scales = arrays[inputs[weight_scale]].astype(np.float32)
            bias_scale = np.float32(arrays[inputs[input_scale]]) * weight_scales
            zeros = np.zeros(bias_scale.shape, dtype=np.int32)
            return FileQuantization(arrays[tensor_name], bias_scale, zeros, 0)
    raise LookupError(f"{path.name} does not quantize {tensor_name!r}")


def dequantize_with_onnxruntime(quantization: FileQuantization) -> np.ndarray:
    """Run a one-node DequantizeLinear model on onnxruntime's CPU provider."""
    codes = quantization.codes
    attributes = {} if quantization.axis is None else {"axis": quantization.axis}
    node = helper.make_node("DequantizeLinear", ["x", "x_scale", "x_zero_point"], ["y"], **attributes)
    graph = helper.make_graph(
        [node],
        "dequantize",
        [helper.make_tensor_value_info("x", helper.np_dtype_to_tensor_dtype(codes.dtype), codes.shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, codes.shape)],
        [
            numpy_helper.from_array(quantization.scale, "x_scale"),
            numpy_helper.from_array(quantization.zero_point, "x_zero_point"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", onnx_models.OPSET)])
    model.ir_version = onnx_models.IR_VERSION
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": codes})[0]


@pytest.mark.parametrize("fixture", GOLDEN_FIXTURES)
def test_codes_equal_file(models, model_paths, fixture):
    for _, tensor in models[fixture].tensors():
        expected = read_file_quantization(model_paths[fixture], tensor.name)
        assert tensor.codes.dtype == expected.codes.dtype
        assert np.array_equal(tensor.codes, expected.codes)


@pytest.mark.parametrize("fixture", GOLDEN_FIXTURES)
def test_scale_zero_point_equal_file(models, model_paths, fixture):
    for _, tensor in models[fixture].tensors():
        expected = read_file_quantization(model_paths[fixture], tensor.name)
        quantization = tensor.quantization
        assert np.array_equal(quantization.scale, expected.scale.reshape(quantization.scale.shape))
        expected_zero_point = expected.zero_point.reshape(quantization.zero_point.shape)
        assert np.array_equal(quantization.zero_point, expected_zero_point)


@pytest.mark.parametrize("fixture", GOLDEN_FIXTURES)
def test_axis_equals_file(models, model_paths, fixture):
    for _, tensor in models[fixture].tensors():
        expected = read_file_quantization(model_paths[fixture], tensor.name)
        # A single scale is per-tensor, whatever the axis attribute.
        expected_axis = expected.axis if expected.scale.size > 1 else None
        assert tensor.quantization.axis == expected_axis


@pytest.mark.parametrize("fixture", GOLDEN_FIXTURES)
def test_values_equal_onnxruntime(models, model_paths, fixture):
    for _, tensor in models[fixture].tensors():
        expected = dequantize_with_onnxruntime(read_file_quantization(model_paths[fixture], tensor.name))
        assert tensor.values.dtype == np.float32
        assert np.array_equal(tensor.values, expected)


def test_qoperator_bias_scale_product(models, model_paths):
    arrays = read_initializers(model_paths["qoperator"])
    bias = models["qoperator"].layer("/block/conv2/Conv_quant").bias
    expected = arrays["/block/conv1/Conv_output_0_scale"] * arrays["block.conv2.weight_scale"]
    assert expected.dtype == np.float32
    assert np.array_equal(bias.quantization.scale, expected)
    assert np.array_equal(bias.quantization.zero_point, np.zeros(4))


def test_qdq_and_qoperator_agree(models):
    qdq = models["qdq_per_channel"].tensors()
    qoperator = models["qoperator"].tensors()
    for (_, left), (_, right) in zip(qdq, qoperator, strict=True):
        assert np.array_equal(left.codes, right.codes)
        assert np.array_equal(left.values, right.values)


# Lazy loading and external data


def test_external_values_equal_inline(models):
    inline = list(models["qdq_per_channel"].tensors())
    external = list(models["external"].tensors())
    assert [t.name for _, t in external] == [t.name for _, t in inline]
    for (_, left), (_, right) in zip(inline, external):
        assert np.array_equal(left.codes, right.codes)
        assert np.array_equal(left.values, right.values)


def test_values_read_on_access(model_paths, tmp_path):
    """Open, then zero the external data file: values read afterwards are the zeros."""
    path = onnx_models.copy_model(model_paths["external"], tmp_path)
    model = onnx_reader.load(path)
    weight = model.layer("/block/conv1/Conv").weight
    data_file = path.with_suffix(".data")
    data_file.write_bytes(bytes(data_file.stat().st_size))
    assert np.count_nonzero(weight.codes) == 0


def test_inline_codes_not_all_zero(models):
    assert np.count_nonzero(models["qdq_per_channel"].layer("/block/conv1/Conv").weight.codes) > 0


def test_missing_external_file(model_paths, tmp_path):
    shutil.copy2(model_paths["external"], tmp_path / "model.onnx")
    with pytest.raises(ModelFormatError) as raised:
        onnx_reader.load(tmp_path / "model.onnx")
    assert "convnet_qdq_per_channel.data" in str(raised.value)
    assert "is missing" in str(raised.value)


def test_truncated_external_file(model_paths, tmp_path):
    path = onnx_models.copy_model(model_paths["external"], tmp_path)
    data_file = path.with_suffix(".data")
    data_file.write_bytes(data_file.read_bytes()[:100])
    with pytest.raises(ModelFormatError, match="truncated"):
        onnx_reader.load(path)


def test_external_location_outside_folder(model_paths, tmp_path):
    model = onnx.load(str(model_paths["external"]), load_external_data=False)
    for initializer in model.graph.initializer:
        for entry in initializer.external_data:
            if entry.key == "location":
                entry.value = "../outside.data"
    (tmp_path / "inner").mkdir()
    path = tmp_path / "inner" / "model.onnx"
    onnx.save_model(model, str(path))
    with pytest.raises(ModelFormatError, match="outside the model folder"):
        onnx_reader.load(path)


# Corrupt files


def write_corrupt_file(kind: str, folder: Path, valid_model: Path) -> Path:
    path = folder / f"{kind}.onnx"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        data = valid_model.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 512, dtype=np.uint8).tobytes())
    return path


@pytest.mark.parametrize("kind", ["empty", "truncated", "random"])
def test_corrupt_file_raises(model_paths, tmp_path, kind):
    path = write_corrupt_file(kind, tmp_path, model_paths["float_convnet"])
    with pytest.raises(ModelFormatError) as raised:
        open_model(path)
    assert f"{kind}.onnx" in str(raised.value)


@pytest.mark.parametrize("kind", ["empty", "truncated", "random"])
def test_load_corrupt_file_raises(model_paths, tmp_path, kind):
    path = write_corrupt_file(kind, tmp_path, model_paths["float_convnet"])
    with pytest.raises(ModelFormatError, match="not an ONNX model"):
        onnx_reader.load(path)


@pytest.mark.parametrize("kind", ["empty", "truncated", "random"])
def test_corrupt_file_unchanged(model_paths, tmp_path, kind):
    path = write_corrupt_file(kind, tmp_path, model_paths["float_convnet"])
    before = sha256(path)
    with pytest.raises(ModelFormatError):
        open_model(path)
    assert sha256(path) == before


def test_model_files_unchanged(model_paths):
    external = model_paths["external"]
    paths = [model_paths["qdq_per_channel"], external, external.with_suffix(".data")]
    before = [sha256(path) for path in paths]
    model = onnx_reader.load(model_paths["external"])
    values = [tensor.values for _, tensor in model.tensors()]
    assert len(values) == 6
    assert [sha256(path) for path in paths] == before


def test_blocked_quantization_unsupported(tmp_path):
    path = onnx_models.build_dequantize_model(
        tmp_path, "blocked.onnx", codes=np.ones((4, 2), dtype=np.int8),
        scale=np.full((2, 2), 0.5, dtype=np.float32), zero_point=np.zeros((2, 2), dtype=np.int8),
        opset=21, axis=0, block_size=2,
    )
    with pytest.raises(UnsupportedModelError, match="'w_DequantizeLinear'.*block_size=2"):
        onnx_reader.load(path)


def test_runtime_quantized_weight_unsupported(tmp_path):
    path = onnx_models.build_runtime_quantized_weight(tmp_path)
    with pytest.raises(UnsupportedModelError, match="'fc.weight' through a QuantizeLinear"):
        onnx_reader.load(path)


# DequantizeLinear edge cases


def test_invalid_scales_kept(tmp_path, caplog):
    path = onnx_models.build_dequantize_model(
        tmp_path, "bad_scales.onnx", codes=np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int8),
        scale=np.array([0.5, 0.0, -0.25], dtype=np.float32), zero_point=np.zeros(3, dtype=np.int8), axis=1,
    )
    with caplog.at_level(logging.WARNING, logger="quantlens.readers.onnx_quant"):
        weight = onnx_reader.load(path).layer("/fc/MatMul").weight
    assert np.array_equal(weight.quantization.invalid_scales(), [1, 2])
    assert "2 of 3 scales of 'w_quantized'" in caplog.text
    assert np.array_equal(weight.values, np.array([[0.5, 0.0, -0.75], [2.0, 0.0, -1.5]], dtype=np.float32))


def test_negative_axis_normalized(tmp_path):
    path = onnx_models.build_dequantize_model(
        tmp_path, "negative_axis.onnx", codes=np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int8),
        scale=np.array([0.5, 1.0, 2.0], dtype=np.float32),
        zero_point=np.array([0, 1, 2], dtype=np.int8),
        axis=-1,
    )
    weight = onnx_reader.load(path).layer("/fc/MatMul").weight
    assert weight.quantization.axis == 1
    assert np.array_equal(weight.values, np.array([[0.5, 1.0, 2.0], [2.0, 4.0, 8.0]], dtype=np.float32))


def test_missing_zero_point_is_zero(tmp_path):
    path = onnx_models.build_dequantize_model(
        tmp_path, "no_zero_point.onnx", codes=np.array([[-128, 127]], dtype=np.int8),
        scale=np.array(0.5, dtype=np.float32), zero_point=None,
    )
    weight = onnx_reader.load(path).layer("/fc/MatMul").weight
    assert weight.quantization.axis is None
    assert int(weight.quantization.zero_point) == 0
    assert np.array_equal(weight.values, np.array([[-64.0, 63.5]], dtype=np.float32))


def test_scale_count_mismatch(tmp_path):
    path = onnx_models.build_dequantize_model(
        tmp_path, "mismatch.onnx", codes=np.ones((2, 3), dtype=np.int8),
        scale=np.ones(2, dtype=np.float32), zero_point=np.zeros(2, dtype=np.int8), axis=1,
    )
    with pytest.raises(ModelFormatError, match="2 scales for 'w_quantized'"):
        onnx_reader.load(path)


def test_zero_point_count_mismatch(tmp_path):
    path = onnx_models.build_dequantize_model(
        tmp_path, "zero_point_mismatch.onnx", codes=np.ones((2, 3), dtype=np.int8),
        scale=np.ones(3, dtype=np.float32), zero_point=np.zeros(2, dtype=np.int8), axis=1,
    )
    with pytest.raises(ModelFormatError, match="2 zero points and 3 scales"):
        onnx_reader.load(path)


# Sniffing


def test_sniff_accepts_models(model_paths):
    for path in model_paths.values():
        assert onnx_reader.sniff(path.read_bytes()[:64]), path.name


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"\x08",
        b"\x08\x08",
        b"PK\x03\x04" + bytes(60),
        b"\x80\x02}q\x00",
        b"\x08\x00\x12\x04",
        b"\x08\x07\x08\x01",
    ],
    ids=["empty", "tag-only", "no-next-field", "zip", "pickle", "ir-version-0", "unknown-field"],
)
def test_sniff_rejects(head):
    assert not onnx_reader.sniff(head)


# Input spec and metadata


def test_input_spec_nchw(models):
    spec = models["float_convnet"].input_spec
    assert spec.name == "input"
    assert spec.shape == (1, 3, 8, 8)
    assert spec.dtype == "float32"
    assert spec.layout == "NCHW"
    assert spec.source == "signature"


def test_input_spec_nhwc_dynamic(models):
    spec = models["batchnorm_matmul"].input_spec
    assert spec.shape == (None, 4, 4, 3)
    assert spec.layout == "NHWC"


def test_input_spec_from_metadata(tmp_path):
    metadata_spec = {"layout": "NHWC", "shape": [None, 32, 32, 3], "dtype": "uint8", "scaling": "raw"}
    model = onnx_reader.load(onnx_models.build_convnet_with_input_metadata(tmp_path, metadata_spec))
    assert model.input_spec.source == "metadata"
    assert model.input_spec.layout == "NHWC"
    assert model.input_spec.shape == (None, 32, 32, 3)
    assert model.input_spec.dtype == "uint8"
    assert model.input_spec.scaling == "raw"
    assert model.metadata["author"] == "tests"


def test_invalid_input_metadata_falls_back(tmp_path, caplog):
    path = onnx_models.build_float_convnet(tmp_path, metadata={"quantlens.input": "{not json"})
    with caplog.at_level(logging.WARNING, logger="quantlens.readers.onnx_reader"):
        model = onnx_reader.load(path)
    assert model.input_spec.source == "signature"
    assert "not valid JSON" in caplog.text


def test_model_format(models):
    assert models["float_convnet"].format == "onnx"


# Graph values for activation capture


def test_graph_value_names(model_paths):
    assert onnx_reader.graph_value_names(model_paths["float_convnet"]) == [
        ("/block/conv1/Conv_output_0", "/block/conv1/Conv", "Conv"),
        ("/block/relu/Relu_output_0", "/block/relu/Relu", "Relu"),
        ("/block/conv2/Conv_output_0", "/block/conv2/Conv", "Conv"),
        ("/pool/GlobalAveragePool_output_0", "/pool/GlobalAveragePool", "GlobalAveragePool"),
        ("/Flatten_output_0", "/Flatten", "Flatten"),
        ("logits", "/fc/Gemm", "Gemm"),
    ]


def test_graph_value_names_match_layers(model_paths):
    values = onnx_reader.graph_value_names(model_paths["batchnorm_matmul"])
    assert ("flat", "Reshape_5", "Reshape") in values
    assert ("logits", "/head/MatMul #2", "Add") in values
