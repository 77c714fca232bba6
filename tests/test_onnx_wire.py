"""The wire-format ONNX parser that leaves large initializers in the file, against onnx.load."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from quantlens.readers import onnx_wire, open_model
from quantlens.readers.onnx_reader import parse_model_deferred
from tests.fixtures import onnx_models

BUNDLED = ("resnet8.onnx", "resnet8_int8.onnx", "resnet8_int8_qop.onnx")


def initializer_arrays(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {tensor.name: numpy_helper.to_array(tensor) for tensor in model.graph.initializer}


def deferred_arrays(model: onnx.ModelProto, path: Path) -> dict[str, np.ndarray]:
    """Decode each initializer, reading the deferred ones from ``path`` at their offset."""
    arrays = {}
    for tensor in model.graph.initializer:
        if tensor.data_location == TensorProto.EXTERNAL:
            entries = {entry.key: entry.value for entry in tensor.external_data}
            inline = TensorProto()
            inline.CopyFrom(tensor)
            del inline.external_data[:]
            inline.data_location = TensorProto.DEFAULT
            with open(path, "rb") as handle:
                handle.seek(int(entries["offset"]))
                inline.raw_data = handle.read(int(entries["length"]))
            tensor = inline
        arrays[tensor.name] = numpy_helper.to_array(tensor)
    return arrays


@pytest.mark.parametrize("name", BUNDLED)
def test_graph_equals_onnx_load(bundled, name):
    path = bundled[name]
    deferred = onnx_wire.parse_deferred(path)
    loaded = onnx.load(str(path))
    assert deferred.graph.node == loaded.graph.node
    assert deferred.graph.input == loaded.graph.input
    assert deferred.graph.output == loaded.graph.output
    assert deferred.metadata_props == loaded.metadata_props
    assert deferred.opset_import == loaded.opset_import
    assert deferred.ir_version == loaded.ir_version


@pytest.mark.parametrize("name", BUNDLED)
def test_initializer_values_equal_onnx_load(bundled, name):
    path = bundled[name]
    expected = initializer_arrays(onnx.load(str(path)))
    actual = deferred_arrays(onnx_wire.parse_deferred(path), path)
    assert list(actual) == list(expected)
    for key, array in expected.items():
        assert actual[key].dtype == array.dtype
        np.testing.assert_array_equal(actual[key], array)


def test_only_large_initializers_deferred(bundled):
    path = bundled["resnet8.onnx"]
    model = onnx_wire.parse_deferred(path)
    deferred = [t for t in model.graph.initializer if t.data_location == TensorProto.EXTERNAL]
    inline = [t for t in model.graph.initializer if t.data_location != TensorProto.EXTERNAL]
    assert deferred
    assert inline
    assert all(len(t.raw_data) < onnx_wire.MIN_DEFERRED_BYTES for t in inline)
    assert all(not t.raw_data for t in deferred)
    assert {e.value for t in deferred for e in t.external_data if e.key == "location"} == {path.name}


def test_open_model_reads_values_from_file(bundled):
    path = bundled["resnet8_int8.onnx"]
    expected = initializer_arrays(onnx.load(str(path)))
    model = open_model(path)
    checked = 0
    for layer in model.layers:
        for tensor in layer.tensors:
            if tensor.name in expected and tensor.codes is not None:
                np.testing.assert_array_equal(tensor.codes, expected[tensor.name])
                checked += 1
    assert checked >= 8


def test_repeated_graph_field_falls_back(bundled, tmp_path):
    # Protobuf merges a repeated message field; onnx.load does, the walker leaves it to onnx.load.
    source = bundled["resnet8.onnx"]
    extra = onnx.ModelProto()
    extra.graph.doc_string = "appended"
    path = tmp_path / "merged.onnx"
    path.write_bytes(source.read_bytes() + extra.SerializeToString())
    with pytest.raises(onnx_wire.WireError):
        onnx_wire.parse_deferred(path)
    model = parse_model_deferred(path)
    assert model.graph.doc_string == "appended"
    assert len(model.graph.node) == len(onnx.load(str(source)).graph.node)


@pytest.mark.parametrize("cut", [1, 100, 5000])
def test_truncated_file_rejected(bundled, tmp_path, cut):
    data = bundled["resnet8.onnx"].read_bytes()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) - cut])
    with pytest.raises(onnx_wire.WireError):
        onnx_wire.parse_deferred(path)


def test_empty_file_rejected(tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    with pytest.raises(onnx_wire.WireError):
        onnx_wire.parse_deferred(path)


def test_external_data_model_unchanged(tmp_path):
    source = onnx_models.build_float_convnet(tmp_path)
    (tmp_path / "external").mkdir()
    path = onnx_models.save_with_external_data(source, tmp_path / "external")
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    model = onnx_wire.parse_deferred(path)
    expected = onnx.load(str(path), load_external_data=False)
    assert model.graph.initializer == expected.graph.initializer
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
