"""The onnx-free protobuf classes and helpers, against onnx's own helpers."""

from __future__ import annotations


import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from quantlens.readers import onnx_proto
from tests.fixtures.processes import printed_words

STANDARD_TYPES = [
    (TensorProto.FLOAT, np.float32),
    (TensorProto.DOUBLE, np.float64),
    (TensorProto.FLOAT16, np.float16),
    (TensorProto.INT8, np.int8),
    (TensorProto.UINT8, np.uint8),
    (TensorProto.INT16, np.int16),
    (TensorProto.UINT16, np.uint16),
    (TensorProto.INT32, np.int32),
    (TensorProto.UINT32, np.uint32),
    (TensorProto.INT64, np.int64),
    (TensorProto.UINT64, np.uint64),
    (TensorProto.BOOL, np.bool_),
]


def sample(dtype: type, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(0)
    if dtype is np.bool_:
        return rng.integers(0, 2, shape).astype(bool)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(max(info.min, -1000), min(info.max, 1000), shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def test_classes_are_onnx_classes():
    assert onnx_proto.ModelProto is onnx.ModelProto
    assert onnx_proto.TensorProto is onnx.TensorProto
    assert onnx_proto.NodeProto is onnx.NodeProto


@pytest.mark.parametrize(("data_type", "dtype"), STANDARD_TYPES)
@pytest.mark.parametrize("raw", [True, False])
@pytest.mark.parametrize("shape", [(2, 3), ()])
def test_to_array_equals_numpy_helper(data_type, dtype, raw, shape):
    values = sample(dtype, shape)
    tensor = helper.make_tensor("t", data_type, list(shape), values.tobytes() if raw else values.ravel().tolist(), raw=raw)
    expected = numpy_helper.to_array(tensor)
    actual = onnx_proto.to_array(tensor)
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(actual, expected)


def test_to_array_of_other_types_uses_onnx():
    tensor = helper.make_tensor("b", TensorProto.BFLOAT16, [3], [1.0, -2.0, 0.5])
    np.testing.assert_array_equal(onnx_proto.to_array(tensor), numpy_helper.to_array(tensor))


@pytest.mark.parametrize(("data_type", "dtype"), STANDARD_TYPES)
def test_numpy_dtype_equals_helper(data_type, dtype):
    assert onnx_proto.numpy_dtype(data_type) == np.dtype(helper.tensor_dtype_to_np_dtype(data_type))
    assert onnx_proto.numpy_dtype(data_type) == np.dtype(dtype)


@pytest.mark.parametrize(
    "attribute",
    [
        helper.make_attribute("f", 0.5),
        helper.make_attribute("i", 3),
        helper.make_attribute("s", b"text"),
        helper.make_attribute("fs", [0.5, 1.5]),
        helper.make_attribute("is", [1, 2, 3]),
        helper.make_attribute("ss", [b"a", b"b"]),
        helper.make_attribute("t", helper.make_tensor("t", TensorProto.INT64, [1], [7])),
    ],
    ids=lambda attribute: attribute.name,
)
def test_attribute_value_equals_helper(attribute):
    assert onnx_proto.attribute_value(attribute) == helper.get_attribute_value(attribute)


@pytest.mark.parametrize(
    ("data_type", "dims", "values"),
    [(TensorProto.FLOAT, [], [0.25]), (TensorProto.FLOAT, [3], [1.0, 2.0, 3.5]), (TensorProto.INT64, [2], [4, -5])],
)
def test_make_tensor_equals_helper(data_type, dims, values):
    assert onnx_proto.make_tensor("c", data_type, dims, values) == helper.make_tensor("c", data_type, dims, values)


def test_opening_onnx_model_does_not_import_onnx(bundled):
    # import onnx takes most of a large model's cold open, so the reader must not need it.
    printed = printed_words(
        "import sys, quantlens",
        "from quantlens.inspect import report_tensor",
        f"model = quantlens.open_model({str(bundled['resnet8_int8.onnx'])!r})",
        "report = report_tensor(model, model.layers[3].name, integer=True)",
        "print(len(model.layers), 'onnx' in sys.modules, 'ml_dtypes' in sys.modules)",
    )
    assert printed == ["12", "False", "False"]


def test_parsed_model_works_with_onnx_afterwards(bundled):
    printed = printed_words(
        "from quantlens.readers import onnx_proto",
        f"model = onnx_proto.load_model({str(bundled['resnet8_int8.onnx'])!r})",
        "import onnx",
        "onnx.checker.check_model(model)",
        "print(isinstance(model, onnx.ModelProto))",
    )
    assert printed == ["True"]
