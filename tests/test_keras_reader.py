"""Keras HDF5 reader on tiny files written with h5py in the Keras 2 layout."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

h5py = pytest.importorskip("h5py", reason="the keras extra is not installed")

from quantlens.cli.main import main  # noqa: E402
from quantlens.errors import MissingDependencyError, ModelFormatError, UnsupportedModelError  # noqa: E402
from quantlens.readers import choose_reader, open_model  # noqa: E402
from quantlens.records import Role  # noqa: E402
from quantlens.runtime import open_session  # noqa: E402
from tests.fixtures.keras_models import write_functional_nested, write_sequential, write_weights_only  # noqa: E402

SEQUENTIAL_LAYERS = [
    ("input_1", "InputLayer"),
    ("conv2d", "Conv2D"),
    ("batch_normalization", "BatchNormalization"),
    ("re_lu", "ReLU"),
    ("flatten", "Flatten"),
    ("dense", "Dense"),
]


def test_hdf5_sniffed_by_signature(tmp_path):
    path, _ = write_sequential(tmp_path)
    assert choose_reader(path).name == "keras"


def test_sequential_layers_in_config_order(tmp_path):
    path, _ = write_sequential(tmp_path, reverse_layer_names=True)
    model = open_model(path)
    assert model.format == "keras"
    assert [(layer.name, layer.op_type) for layer in model.layers] == SEQUENTIAL_LAYERS


def test_sequential_weights_exact(tmp_path):
    path, written = write_sequential(tmp_path)
    model = open_model(path)
    read = {f"model_weights/{layer.name}/{tensor.name}": tensor for layer, tensor in model.tensors()}
    assert sorted(read) == sorted(written)
    for key, array in written.items():
        assert read[key].shape == array.shape, key
        assert read[key].dtype == "float32", key
        np.testing.assert_array_equal(read[key].values, array, err_msg=key)


def test_conv_and_dense_roles(tmp_path):
    path, written = write_sequential(tmp_path)
    model = open_model(path)
    conv = model.layer("conv2d")
    assert conv.weight is not None and conv.bias is not None
    assert conv.weight.name == "conv2d/kernel:0"
    assert conv.bias.name == "conv2d/bias:0"
    np.testing.assert_array_equal(model.layer("dense").weight.values, written["model_weights/dense/dense/kernel:0"])


def test_batch_norm_roles(tmp_path):
    path, _ = write_sequential(tmp_path)
    roles = [(t.name.split("/")[-1], t.role) for t in open_model(path).layer("batch_normalization").tensors]
    assert roles == [
        ("gamma:0", Role.WEIGHT),
        ("beta:0", Role.BIAS),
        ("moving_mean:0", Role.PARAMETER),
        ("moving_variance:0", Role.PARAMETER),
    ]


def test_input_spec_from_input_layer(tmp_path):
    path, _ = write_sequential(tmp_path)
    spec = open_model(path).input_spec
    assert spec is not None
    assert spec.name == "input_1"
    assert spec.shape == (None, 8, 8, 3)
    assert spec.layout == "NHWC"
    assert spec.dtype == "float32"


def test_metadata_has_keras_version(tmp_path):
    path, _ = write_sequential(tmp_path)
    assert open_model(path).metadata == {"keras_version": "2.15.0", "backend": "tensorflow"}


def test_values_load_after_file_closed(tmp_path):
    path, written = write_sequential(tmp_path)
    tensor = open_model(path).layer("conv2d").weight
    assert tensor is not None
    np.testing.assert_array_equal(tensor.values, written["model_weights/conv2d/conv2d/kernel:0"])


def test_functional_nested_model_flattened(tmp_path):
    path, written = write_functional_nested(tmp_path)
    model = open_model(path)
    assert [(layer.name, layer.op_type) for layer in model.layers] == [
        ("input_1", "InputLayer"),
        ("stem", "Conv2D"),
        ("block/block_conv", "Conv2D"),
        ("head", "Dense"),
    ]
    inner = model.layer("block/block_conv")
    assert [t.name for t in inner.tensors] == ["block_conv/kernel:0", "block_conv/bias:0"]
    np.testing.assert_array_equal(inner.weight.values, written["model_weights/block/block_conv/kernel:0"])
    assert model.layer("head").bias is None
    assert model.input_spec is not None and model.input_spec.shape == (None, 8, 8, 3)


def test_weights_only_file(tmp_path):
    path, written = write_weights_only(tmp_path)
    model = open_model(path)
    assert model.layer_names == ["conv2d", "batch_normalization", "re_lu", "flatten", "dense"]
    assert {layer.op_type for layer in model.layers} == {"unknown"}
    assert model.input_spec is None
    np.testing.assert_array_equal(model.layer("dense").bias.values, written["dense/dense/bias:0"])


def test_cli_layers_on_h5(tmp_path, capsys):
    path, _ = write_sequential(tmp_path)
    assert main(["layers", str(path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["tensors"]
    assert [r["layer"] for r in rows] == ["conv2d"] * 2 + ["batch_normalization"] * 4 + ["dense"] * 2


def test_cli_stats_on_h5(tmp_path, capsys):
    path, _ = write_sequential(tmp_path)
    assert main(["stats", str(path), "--layer", "dense"]) == 0
    assert "dense/kernel:0" in capsys.readouterr().out


def test_session_rejects_keras(tmp_path):
    path, _ = write_sequential(tmp_path)
    with pytest.raises(UnsupportedModelError, match="convert it to TFLite or ONNX"):
        open_session(path)


# --- errors ---


def test_random_bytes_named_h5(tmp_path):
    path = tmp_path / "random.h5"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 512, dtype=np.uint8).tobytes())
    with pytest.raises(ModelFormatError, match="random.h5"):
        open_model(path)


def test_truncated_h5(tmp_path):
    source, _ = write_sequential(tmp_path)
    path = tmp_path / "truncated.h5"
    path.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    with pytest.raises(ModelFormatError, match="truncated.h5"):
        open_model(path)


def test_hdf5_without_keras_groups(tmp_path):
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("x", data=np.zeros(3))
    with pytest.raises(ModelFormatError, match="no model_weights group"):
        open_model(path)


def test_invalid_model_config(tmp_path):
    path, _ = write_sequential(tmp_path)
    with h5py.File(path, "a") as handle:
        handle.attrs["model_config"] = b"{not json"
    with pytest.raises(ModelFormatError, match="model_config is not valid JSON"):
        open_model(path)


def test_missing_dataset_named(tmp_path):
    path, _ = write_sequential(tmp_path)
    with h5py.File(path, "a") as handle:
        del handle["model_weights/dense/dense/bias:0"]
    with pytest.raises(ModelFormatError, match="'model_weights/dense/dense/bias:0' is missing"):
        open_model(path)


def test_missing_h5py_names_extra(tmp_path, monkeypatch):
    path, _ = write_sequential(tmp_path)
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(MissingDependencyError, match='pip install "quantlens\\[keras\\]"'):
        open_model(path)

