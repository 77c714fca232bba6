"""The PyTorch and safetensors readers against tiny models built in fixtures.

Quantized tensors are checked exactly against the in-memory FX int8 models they were saved from:
codes against ``int_repr()``, values against torch's ``dequantize()``, and scale, zero_point and
axis against the tensor's own quantization parameters.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from quantlens.errors import ModelFormatError, UntrustedPickleError
from quantlens.readers import open_model, readers
from quantlens.readers.safetensors_reader import sniff_safetensors
from quantlens.readers.torch_reader import sniff_torch
from quantlens.records import Model, Role
from quantlens.zoo.resnet8 import ResNet8
from tests.fixtures import torch_models

STATE_DICT_LAYERS = ["features.0.conv", "features.0.bn", "head.0", "head.1", "head.3"]
GUESSED_OP_TYPES = {
    "features.0.conv": "Conv2d",
    "features.0.bn": "BatchNorm2d",
    "head.0": "Linear",
    "head.1": "BatchNorm1d",
    "head.3": "Linear",
}
# safetensors does not keep insertion order, so layers come in name order.
SAFETENSORS_LAYERS = ["features.0.bn", "features.0.conv", "head.0", "head.1", "head.3"]
SAFETENSORS_OP_TYPES = {**GUESSED_OP_TYPES, "features.0.bn": "BatchNorm"}
MODULE_OP_TYPES = {
    "features.0.conv": "Conv2d",
    "features.0.bn": "BatchNorm2d",
    "features.0.relu": "ReLU",
    "features.1": "MaxPool2d",
    "flatten": "Flatten",
    "head.0": "Linear",
    "head.1": "BatchNorm1d",
    "head.2": "ReLU",
    "head.3": "Linear",
}
BATCH_NORM_ROLES = {
    "features.0.bn.weight": Role.WEIGHT,
    "features.0.bn.bias": Role.BIAS,
    "features.0.bn.running_mean": Role.PARAMETER,
    "features.0.bn.running_var": Role.PARAMETER,
    "features.0.bn.num_batches_tracked": Role.PARAMETER,
}
# FX folds each BatchNorm into the conv or Linear before it and fuses or removes the ReLUs, so
# these modules remain. The root layer "" contains the input scale and zero_point buffers FX adds.
INT8_TORCHSCRIPT_LAYERS = ["", "features.0.conv", "features.1", "flatten", "head.0", "head.3"]
QUANTIZED_LAYERS = ["features.0.conv", "head.0", "head.3"]
INT8_KINDS = ["scripted", "traced", "state_dict"]
DAMAGED = [
    "empty",
    "truncated",
    "truncated_legacy",
    "random_pt",
    "random_safetensors",
    "foreign_zip",
    "protocol4_pickle",
]

# torch 2.13 deprecates torch.jit.load, which the reader calls for every TorchScript file.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")


@dataclass(frozen=True)
class TorchFiles:
    """Every file the tests open, and the in-memory models they were saved from."""

    float_model: torch.nn.Module
    state_dicts: dict[str, Path]
    safetensors: Path
    bfloat16: Path
    resnet8: Path
    resnet8_safetensors: Path
    scripted_float: Path
    invalid_input_json: Path
    quantized: torch_models.QuantizedFiles
    pickles: dict[str, Path]
    malicious: Path
    marker: Path
    armed_malicious: Path
    armed_marker: Path
    damaged: dict[str, Path]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> TorchFiles:
    folder = tmp_path_factory.mktemp("torch_models")
    model = torch_models.build_float_model()
    state_dicts = torch_models.save_state_dicts(folder, model)
    scripted_float = torch_models.save_float_torchscript(folder, model, name="tiny_scripted.pt")
    return TorchFiles(
        float_model=model,
        state_dicts=state_dicts,
        safetensors=torch_models.save_safetensors(folder, model),
        bfloat16=torch_models.save_bfloat16_safetensors(folder),
        resnet8=torch_models.save_resnet8_checkpoint(folder),
        resnet8_safetensors=torch_models.save_resnet8_safetensors(folder),
        scripted_float=scripted_float,
        invalid_input_json=torch_models.save_float_torchscript(
            folder, model, name="invalid_input_json.pt", input_json="{not json"
        ),
        quantized=torch_models.save_quantized(folder, model),
        pickles=torch_models.save_full_pickles(folder, model),
        malicious=torch_models.save_malicious_pickle(folder, name="malicious.pt", marker=folder / "marker"),
        marker=folder / "marker",
        armed_malicious=torch_models.save_malicious_pickle(
            folder, name="armed_malicious.pt", marker=folder / "armed_marker"
        ),
        armed_marker=folder / "armed_marker",
        damaged=torch_models.save_damaged_files(
            folder, torchscript=scripted_float, legacy=state_dicts["legacy"]
        ),
    )


def _op_types(model: Model) -> dict[str, str]:
    return {layer.name: layer.op_type for layer in model.layers}


def _int8_path(files: TorchFiles, kind: str) -> Path:
    return {
        "scripted": files.quantized.scripted,
        "traced": files.quantized.traced,
        "state_dict": files.quantized.state_dict,
    }[kind]


def _int8_reference(files: TorchFiles, kind: str, layer: str) -> torch.nn.Module:
    """Return the in-memory quantized module that the file of ``kind`` saved as ``layer``."""
    source = files.quantized.per_tensor if kind == "traced" else files.quantized.per_channel
    return dict(source.named_modules())[layer]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- state_dict checkpoints -------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["plain", "nested", "model_state_dict", "legacy", "described"])
def test_state_dict_layer_names(files, variant):
    model = open_model(files.state_dicts[variant])

    assert model.format == "torch-state-dict"
    assert model.layer_names == STATE_DICT_LAYERS


def test_state_dict_op_types_guessed(files):
    model = open_model(files.state_dicts["plain"])

    assert _op_types(model) == GUESSED_OP_TYPES
    assert "guessed" in model.metadata["op_types"]


def test_state_dict_roles(files):
    layer = open_model(files.state_dicts["plain"]).layer("features.0.bn")

    assert {tensor.name: tensor.role for tensor in layer.tensors} == BATCH_NORM_ROLES


def test_state_dict_weight_before_bias(files):
    layer = open_model(files.state_dicts["plain"]).layer("head.0")

    assert [tensor.role for tensor in layer.tensors] == [Role.WEIGHT, Role.BIAS]


def test_state_dict_values_exact(files):
    expected = files.float_model.state_dict()
    model = open_model(files.state_dicts["nested"])

    for _, tensor in model.tensors():
        assert tensor.shape == tuple(expected[tensor.name].shape), tensor.name
        assert np.array_equal(tensor.values, expected[tensor.name].numpy()), tensor.name


def test_state_dict_dtypes(files):
    layer = open_model(files.state_dicts["plain"]).layer("features.0.bn")

    assert layer.tensor("features.0.bn.running_var").dtype == "float32"
    assert layer.tensor("features.0.bn.num_batches_tracked").dtype == "int64"


def test_layer_index_is_position(files):
    model = open_model(files.state_dicts["plain"])

    assert [layer.index for layer in model.layers] == list(range(len(model.layers)))


def test_checkpoint_scalars_in_metadata(files):
    nested = open_model(files.state_dicts["nested"])
    with_optimizer = open_model(files.state_dicts["model_state_dict"])

    assert nested.metadata["epoch"] == "3"
    assert with_optimizer.metadata["epoch"] == "7"
    assert "optimizer" not in with_optimizer.metadata


def test_checkpoint_input_spec_from_metadata(files):
    model = open_model(files.state_dicts["described"])

    assert model.input_spec is not None
    assert model.input_spec.source == "metadata"
    assert model.input_spec.layout == "NCHW"
    assert model.input_spec.shape == (None, 3, 8, 8)
    assert model.input_spec.scaling == "unit"
    assert model.metadata["architecture"] == "tinynet"


def test_plain_state_dict_has_no_input_spec(files):
    assert open_model(files.state_dicts["plain"]).input_spec is None


def test_bundled_architecture_gives_op_types(files):
    model = open_model(files.resnet8)
    module_types = {name: type(module).__name__ for name, module in ResNet8().named_modules()}

    assert _op_types(model) == {name: module_types[name] for name in model.layer_names}
    assert model.layer("preprocess").op_type == "Preprocess"
    assert "op_types" not in model.metadata


# --- safetensors --------------------------------------------------------------------------------


def test_safetensors_layer_names(files):
    model = open_model(files.safetensors)

    assert model.format == "safetensors"
    assert model.layer_names == SAFETENSORS_LAYERS


def test_safetensors_op_types(files):
    assert _op_types(open_model(files.safetensors)) == SAFETENSORS_OP_TYPES


def test_safetensors_header_metadata(files):
    model = open_model(files.safetensors)

    assert model.metadata["producer"] == "quantlens-tests"
    assert model.input_spec is None


def test_safetensors_values_exact(files):
    expected = files.float_model.state_dict()
    model = open_model(files.safetensors)

    for _, tensor in model.tensors():
        assert tensor.dtype == str(expected[tensor.name].dtype).removeprefix("torch."), tensor.name
        assert np.array_equal(tensor.values, expected[tensor.name].numpy()), tensor.name


def test_safetensors_bfloat16_widened(files):
    from safetensors.torch import load_file

    expected = load_file(str(files.bfloat16))["proj.weight"]
    tensor = open_model(files.bfloat16).layer("proj").weight

    assert tensor.dtype == "bfloat16"
    assert tensor.values.dtype == np.float32
    assert np.array_equal(tensor.values, expected.float().numpy())


def test_safetensors_architecture_gives_order(files):
    model = open_model(files.resnet8_safetensors)
    module_types = {name: type(module).__name__ for name, module in ResNet8().named_modules()}
    state_dict_order = list(dict.fromkeys(key.rpartition(".")[0] for key in ResNet8().state_dict()))

    assert model.layer_names == state_dict_order
    assert _op_types(model) == {name: module_types[name] for name in model.layer_names}


def test_safetensors_input_spec_from_metadata(files):
    model = open_model(files.resnet8_safetensors)

    assert model.input_spec is not None
    assert model.input_spec.source == "metadata"
    assert model.input_spec.layout == "NCHW"


# --- TorchScript --------------------------------------------------------------------------------


def test_torchscript_float_layers(files):
    model = open_model(files.scripted_float)

    assert model.format == "torchscript"
    assert model.layer_names == list(MODULE_OP_TYPES)
    assert _op_types(model) == MODULE_OP_TYPES


def test_torchscript_float_values_exact(files):
    expected = files.float_model.state_dict()
    model = open_model(files.scripted_float)

    for _, tensor in model.tensors():
        assert np.array_equal(tensor.values, expected[tensor.name].numpy()), tensor.name


def test_torchscript_without_extra_file_has_no_input_spec(files):
    assert open_model(files.scripted_float).input_spec is None


def test_invalid_input_json_ignored_with_warning(files, caplog):
    with caplog.at_level(logging.WARNING, logger="quantlens.readers"):
        model = open_model(files.invalid_input_json)

    assert model.input_spec is None
    assert "invalid JSON" in caplog.text
    assert model.layer_names == list(MODULE_OP_TYPES)


@pytest.mark.parametrize("kind", ["scripted", "traced"])
def test_int8_torchscript_layer_names(files, kind):
    assert open_model(_int8_path(files, kind)).layer_names == INT8_TORCHSCRIPT_LAYERS


@pytest.mark.parametrize("kind", ["scripted", "traced"])
def test_int8_torchscript_op_types(files, kind):
    model = open_model(_int8_path(files, kind))

    for layer in model.layers:
        assert layer.op_type == type(_int8_reference(files, kind, layer.name)).__name__, layer.name


def test_int8_input_spec_from_extra_file(files):
    model = open_model(files.quantized.scripted)

    assert model.input_spec is not None
    assert model.input_spec.source == "metadata"
    assert model.input_spec.layout == "NCHW"
    assert "quantlens.input.json" in model.metadata


# --- int8 golden checks -------------------------------------------------------------------------


@pytest.mark.parametrize("layer", QUANTIZED_LAYERS)
@pytest.mark.parametrize("kind", INT8_KINDS)
def test_int8_codes_match_int_repr(files, kind, layer):
    weight = open_model(_int8_path(files, kind)).layer(layer).weight
    reference = _int8_reference(files, kind, layer).weight()

    assert weight.dtype == "int8"
    assert weight.codes.dtype == np.int8
    assert np.array_equal(weight.codes, reference.int_repr().numpy())


@pytest.mark.parametrize("layer", QUANTIZED_LAYERS)
@pytest.mark.parametrize("kind", INT8_KINDS)
def test_int8_values_match_dequantize(files, kind, layer):
    weight = open_model(_int8_path(files, kind)).layer(layer).weight
    reference = _int8_reference(files, kind, layer).weight()

    assert np.array_equal(weight.values, reference.dequantize().numpy())


@pytest.mark.parametrize("layer", QUANTIZED_LAYERS)
@pytest.mark.parametrize("kind", INT8_KINDS)
def test_int8_quantization_parameters(files, kind, layer):
    quantization = open_model(_int8_path(files, kind)).layer(layer).weight.quantization
    reference = _int8_reference(files, kind, layer).weight()

    if kind == "traced":
        assert quantization.axis is None
        assert quantization.scale == np.float32(reference.q_scale())
        assert quantization.zero_point == reference.q_zero_point()
    else:
        assert quantization.axis == reference.q_per_channel_axis()
        assert np.array_equal(quantization.scale, reference.q_per_channel_scales().numpy().astype(np.float32))
        assert np.array_equal(quantization.zero_point, reference.q_per_channel_zero_points().numpy())


@pytest.mark.parametrize("kind", INT8_KINDS)
def test_int8_range_from_storage_dtype(files, kind):
    quantization = open_model(_int8_path(files, kind)).layer("head.0").weight.quantization

    assert quantization.storage_dtype == "int8"
    assert (quantization.qmin, quantization.qmax) == (-128, 127)


@pytest.mark.parametrize("layer", QUANTIZED_LAYERS)
@pytest.mark.parametrize("kind", INT8_KINDS)
def test_int8_bias_float_exact(files, kind, layer):
    bias = open_model(_int8_path(files, kind)).layer(layer).bias
    reference = _int8_reference(files, kind, layer).bias()

    assert bias.quantization is None
    assert np.array_equal(bias.values, reference.detach().numpy())


@pytest.mark.parametrize("kind", INT8_KINDS)
def test_int8_record_formula_matches_torch(files, kind):
    model = open_model(_int8_path(files, kind))

    for layer in QUANTIZED_LAYERS:
        weight = model.layer(layer).weight
        assert np.array_equal(weight.quantization.dequantize(weight.codes), weight.values), layer


@pytest.mark.parametrize("layer", QUANTIZED_LAYERS)
@pytest.mark.parametrize("kind", ["scripted", "state_dict"])
def test_int8_output_scale_and_zero_point(files, kind, layer):
    model = open_model(_int8_path(files, kind))
    reference = _int8_reference(files, kind, layer)

    assert model.layer(layer).tensor(f"{layer}.scale").values == np.float32(reference.scale)
    assert model.layer(layer).tensor(f"{layer}.zero_point").values == reference.zero_point


def test_int8_state_dict_matches_torchscript_names(files):
    scripted = open_model(files.quantized.scripted)
    state_dict = open_model(files.quantized.state_dict)

    assert [t.name for _, t in state_dict.tensors()] == [t.name for _, t in scripted.tensors()]


def test_int8_state_dict_linear_unpacked(files):
    layer = open_model(files.quantized.state_dict).layer("head.0")

    assert layer.op_type == "Linear"
    assert [tensor.name for tensor in layer.tensors[:2]] == ["head.0.weight", "head.0.bias"]
    assert layer.weight.is_quantized


# --- pickles that need trust --------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["module", "model_dict"])
def test_pickled_module_needs_trust(files, variant):
    path = files.pickles[variant]

    with pytest.raises(UntrustedPickleError) as raised:
        open_model(path)

    assert path.name in str(raised.value)
    assert "--trust" in str(raised.value)
    assert "trust=True" in str(raised.value)


def test_malicious_pickle_rejected(files):
    with pytest.raises(UntrustedPickleError):
        open_model(files.malicious)

    assert not files.marker.exists()


def test_malicious_fixture_runs_when_unpickled(files):
    # Proves that the payload is live, so the rejection test above can fail.
    torch.load(files.armed_malicious, weights_only=False)

    assert files.armed_marker.exists()


@pytest.mark.parametrize("variant", ["module", "model_dict"])
def test_trusted_module_layers(files, variant):
    model = open_model(files.pickles[variant], trust=True)

    assert model.format == "torch-module"
    assert model.layer_names == list(MODULE_OP_TYPES)
    assert _op_types(model) == MODULE_OP_TYPES


@pytest.mark.parametrize("variant", ["module", "model_dict"])
def test_trusted_module_values_exact(files, variant):
    expected = files.float_model.state_dict()
    model = open_model(files.pickles[variant], trust=True)

    for _, tensor in model.tensors():
        assert np.array_equal(tensor.values, expected[tensor.name].numpy()), tensor.name


def test_trusted_dict_keeps_epoch(files):
    assert open_model(files.pickles["model_dict"], trust=True).metadata["epoch"] == "3"


# --- damaged files ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DAMAGED)
def test_damaged_file_rejected(files, name):
    path = files.damaged[name]

    with pytest.raises(ModelFormatError) as raised:
        open_model(path)

    assert path.name in str(raised.value)


@pytest.mark.parametrize("name", ["truncated", "truncated_legacy"])
def test_truncated_file_says_truncated(files, name):
    with pytest.raises(ModelFormatError, match="truncated"):
        open_model(files.damaged[name])


def test_foreign_zip_names_missing_parts(files):
    with pytest.raises(ModelFormatError, match="no data.pkl and no code/ folder"):
        open_model(files.damaged["foreign_zip"])


def test_protocol4_pickle_suggests_trust(files):
    with pytest.raises(ModelFormatError, match="--trust"):
        open_model(files.damaged["protocol4_pickle"])


# --- files stay unchanged -----------------------------------------------------------------------

READABLE = {
    "state_dict": lambda f: f.state_dicts["plain"],
    "legacy_state_dict": lambda f: f.state_dicts["legacy"],
    "safetensors": lambda f: f.safetensors,
    "torchscript": lambda f: f.quantized.scripted,
    "int8_state_dict": lambda f: f.quantized.state_dict,
    "pickled_module": lambda f: f.pickles["module"],
}


@pytest.mark.parametrize("name", sorted(READABLE))
def test_reading_leaves_file_unchanged(files, name):
    path = READABLE[name](files)
    before = _sha256(path)

    model = open_model(path, trust=True)
    for _, tensor in model.tensors():
        tensor.view(integer=True)
        tensor.values

    assert _sha256(path) == before


def test_rejected_pickle_left_unchanged(files):
    before = _sha256(files.malicious)

    with pytest.raises(UntrustedPickleError):
        open_model(files.malicious)

    assert _sha256(files.malicious) == before


# --- signatures and registration ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"PK\x03\x04rest", True),
        (b"\x80\x02\x8a\x0a", True),
        (b"\x08\x07\x12\x04", False),
        (b"", False),
    ],
)
def test_sniff_torch(head, expected):
    assert sniff_torch(head) is expected


def test_sniff_safetensors_real_file(files):
    head = files.safetensors.read_bytes()[:64]

    assert sniff_safetensors(head)
    assert not sniff_torch(head)


def test_sniff_safetensors_rejects_torch_file(files):
    assert not sniff_safetensors(files.state_dicts["plain"].read_bytes()[:64])


def test_torch_readers_registered():
    names = {reader.name for reader in readers()}

    assert {"torch", "safetensors"} <= names
