"""Capture from eager nn.Module and TorchScript models, checked against direct calls of submodules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from quantlens.capture import capture, list_capture_points
from quantlens.capture.api import capture_backend
from quantlens.errors import CaptureError, LayerNotFoundError
from quantlens.inputs import InputBatch, random_input
from quantlens.records import InputSpec
from quantlens.runtime import open_session
from quantlens.runtime.torch_session import TorchSession, load_torch_session
from quantlens.zoo.resnet8 import ResNet8
from tests.fixtures.torch_models import build_float_model, quantize_fx

SPEC_8X8 = InputSpec(name=None, layout="NCHW", shape=(None, 3, 8, 8), dtype="float32", scaling="unit")


def eager_session(module: nn.Module, folder: Path) -> TorchSession:
    """Wrap an in-memory module as a session; the path only names it in messages."""
    return TorchSession(folder / "tiny.pt", module, format="torch-module", spec=SPEC_8X8)


class Pair(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x * 2, x - 1


class Heads(nn.Module):
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"cls": x.mean((2, 3)), "box": x.amax((2, 3))}


class StructuredNet(nn.Module):
    """A submodule that outputs a tuple, one that outputs a dict, and an in-place ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.pair = Pair()
        self.heads = Heads()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = self.pair(self.relu(self.conv(x)))
        outputs = self.heads(first + second)
        return outputs["cls"] + outputs["box"]


class Failing(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.conv(x)
        raise RuntimeError("broken forward")


@pytest.fixture(scope="module")
def float_checkpoint(bundled):
    return open_session(bundled["resnet8.pt"])


@pytest.fixture(scope="module")
def int8_torchscript(bundled):
    return open_session(bundled["resnet8_int8.pt"])


@pytest.fixture(scope="module")
def structured(tmp_path_factory):
    torch.manual_seed(0)
    return eager_session(StructuredNet().eval(), tmp_path_factory.mktemp("structured"))


def by_name(result, name):
    return result.activation(name).tensor


# Eager nn.Module


def test_eager_output_matches_plain_run(float_checkpoint):
    batch = random_input(3)
    result = capture(float_checkpoint, batch)
    plain = float_checkpoint.predict(batch)
    assert np.allclose(result.outputs[0], plain, rtol=0, atol=1e-6)


def test_eager_names_in_execution_order(float_checkpoint):
    names = capture(float_checkpoint, random_input(0)).names
    assert names[:5] == ["preprocess", "conv", "bn", "relu", "stack1.conv1"]
    assert names[-1] == "fc"


def test_eager_conv_matches_submodule_call(float_checkpoint):
    result = capture(float_checkpoint, random_input(1))
    relu1 = torch.from_numpy(by_name(result, "stack1.relu1").values)
    with torch.no_grad():
        expected = float_checkpoint.module.stack1.conv2(relu1).numpy()
    assert np.allclose(by_name(result, "stack1.conv2").values, expected, rtol=0, atol=1e-6)


def test_eager_list_points_are_modules(float_checkpoint):
    points = list_capture_points(float_checkpoint)
    assert points[0].name == "preprocess"
    assert points[0].op_type == "Preprocess"
    assert ("stack2.shortcut", "stack2.shortcut", "Conv2d") in points


def test_eager_tuple_outputs_get_index_suffix(structured):
    names = capture(structured, random_input(0)).names
    assert "pair:0" in names
    assert "pair:1" in names


def test_eager_dict_outputs_get_key_suffix(structured):
    names = capture(structured, random_input(0)).names
    assert "heads.cls" in names
    assert "heads.box" in names


def test_eager_tuple_values_match_module(structured):
    result = capture(structured, random_input(0))
    relu = by_name(result, "relu").values
    assert np.array_equal(by_name(result, "pair:1").values, relu - 1)


def test_eager_value_before_in_place_relu(structured):
    conv = by_name(capture(structured, random_input(0)), "conv").values
    assert (conv < 0).any()


def test_eager_in_place_change_copied_from_then_on(tmp_path):
    torch.manual_seed(0)
    module = StructuredNet().eval()
    session = eager_session(module, tmp_path)
    batch = random_input(0)
    inputs = torch.from_numpy(session.adapter.prepare(batch))
    expected = module.conv(inputs).detach().numpy()
    for _ in range(2):
        conv = by_name(capture(session, batch), "conv").values
        np.testing.assert_array_equal(conv, expected)
    assert capture_backend(session)._copied == {"conv"}


class SometimesInPlace(nn.Module):
    """A convolution whose output gets one added in place only when the input's mean is positive."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if x.mean() > 0:
            y.add_(1)
        return y


def test_eager_in_place_change_found_on_later_input(tmp_path):
    torch.manual_seed(0)
    module = SometimesInPlace().eval()
    session = eager_session(module, tmp_path)
    # Black pixels scale to 0 (no in-place add), white ones to 1 (the add runs).
    for pixels in (np.zeros((1, 8, 8, 3), np.uint8), np.full((1, 8, 8, 3), 255, np.uint8)):
        batch = InputBatch(images=pixels, labels=(None,), descriptions=("fixed",))
        inputs = torch.from_numpy(session.adapter.prepare(batch))
        expected = module.conv(inputs).detach().numpy()
        np.testing.assert_array_equal(by_name(capture(session, batch), "conv").values, expected)


def test_eager_select_suffixed_name(structured):
    result = capture(structured, random_input(0), layers=["pair:1"])
    assert result.names == ["pair:1"]


def test_eager_select_layer_keeps_all_outputs(structured):
    result = capture(structured, random_input(0), layers="heads")
    assert result.names == ["heads.cls", "heads.box"]


def test_eager_missing_suffix_raises(structured):
    with pytest.raises(LayerNotFoundError, match="pair:7"):
        capture(structured, random_input(0), layers=["pair:7"])


def test_eager_unknown_layer_raises(structured):
    with pytest.raises(LayerNotFoundError, match="'nope'.*--list-layers"):
        capture(structured, random_input(0), layers=["nope"])


def test_eager_hooks_removed_after_run(structured):
    capture(structured, random_input(0))
    assert all(not module._forward_hooks for module in structured.module.modules())


def test_eager_hooks_removed_after_error(tmp_path):
    session = eager_session(Failing().eval(), tmp_path)
    with pytest.raises(CaptureError, match="broken forward"):
        capture(session, random_input(0))
    assert not session.module.conv._forward_hooks


def test_eager_repeated_call_gets_call_suffix(tmp_path):
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.act = nn.Tanh()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(self.act(x))

    names = capture(eager_session(Twice().eval(), tmp_path), random_input(0)).names
    assert names == ["act", "act#1"]


def test_eager_device_cpu(structured):
    result = capture(structured, random_input(0), device="cpu")
    assert len(result) > 0


def test_eager_quantized_module_codes(tmp_path):
    quantized = quantize_fx(build_float_model(), backend="x86")
    result = capture(eager_session(quantized, tmp_path), random_input(0))
    tensors = [a.tensor for a in result.activations if a.tensor.is_quantized]
    assert tensors, "an FX int8 model has quantized module outputs"
    for tensor in tensors:
        scale, zero_point = tensor.quantization.broadcast(tensor.codes.ndim)
        expected = scale * (tensor.codes.astype(np.float32) - zero_point)
        assert np.allclose(tensor.values, expected, rtol=1e-6, atol=1e-7), tensor.name


# TorchScript


def test_torchscript_output_bit_exact(int8_torchscript):
    batch = random_input(5)
    result = capture(int8_torchscript, batch)
    assert np.array_equal(result.outputs[0], int8_torchscript.predict(batch))


def test_torchscript_names_follow_modules(int8_torchscript):
    points = {p.name: p for p in list_capture_points(int8_torchscript)}
    assert points["stack1.conv1"].op_type == "quantized::conv2d_relu"
    assert points["stack2.shortcut"].op_type == "quantized::conv2d"
    assert points["fc"].op_type == "quantized::linear"


def test_torchscript_points_match_capture(int8_torchscript):
    names = [p.name for p in list_capture_points(int8_torchscript)]
    assert capture(int8_torchscript, random_input(0)).names == names


def test_torchscript_conv_matches_submodule(int8_torchscript):
    result = capture(int8_torchscript, random_input(2))
    source = by_name(result, "conv")
    quantized_input = torch._make_per_tensor_quantized_tensor(
        torch.from_numpy(source.codes), float(source.quantization.scale), int(source.quantization.zero_point)
    )
    with torch.no_grad():
        expected = int8_torchscript.module.stack1.conv1(quantized_input)
    assert np.array_equal(by_name(result, "stack1.conv1").codes, expected.int_repr().numpy())


def test_torchscript_dequantized_values(int8_torchscript):
    tensor = by_name(capture(int8_torchscript, random_input(0)), "stack1.conv2")
    expected = tensor.quantization.scale * (tensor.codes.astype(np.float32) - tensor.quantization.zero_point)
    assert tensor.dtype == "uint8"
    assert np.allclose(tensor.values, expected, rtol=1e-6, atol=1e-7)


def test_torchscript_select_layer(int8_torchscript):
    result = capture(int8_torchscript, random_input(0), layers=["fc"])
    assert result.names == ["fc"]


def test_torchscript_unknown_layer(int8_torchscript):
    with pytest.raises(LayerNotFoundError, match="stack1.conv9"):
        capture(int8_torchscript, random_input(0), layers=["stack1.conv9"])


@pytest.fixture(scope="module")
def scripted_resnet(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("scripted") / "resnet8_scripted.pt"
    torch.jit.save(torch.jit.script(ResNet8().eval()), str(path))
    return load_torch_session(path, trust=False, layout="NHWC")


def test_scripted_nested_names(scripted_resnet):
    names = [p.name for p in list_capture_points(scripted_resnet)]
    assert "stack1.conv1" in names
    assert "stack1.bn1" in names
    assert "stack1/add" in names


def test_scripted_output_bit_exact(scripted_resnet):
    batch = random_input(1)
    assert np.array_equal(capture(scripted_resnet, batch).outputs[0], scripted_resnet.predict(batch))


def test_scripted_bn_matches_submodule(scripted_resnet):
    result = capture(scripted_resnet, random_input(1))
    conv = torch.from_numpy(by_name(result, "stack2.conv1").values)
    with torch.no_grad():
        expected = scripted_resnet.module.stack2.bn1(conv).numpy()
    assert np.array_equal(by_name(result, "stack2.bn1").values, expected)


def test_torchscript_value_before_in_place_relu(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "inplace.pt"
    torch.jit.save(torch.jit.script(StructuredNet().eval()), str(path))
    session = TorchSession(path, torch.jit.load(str(path)), format="torchscript", spec=SPEC_8X8)
    result = capture(session, random_input(0))
    assert (by_name(result, "conv").values < 0).any()
    assert np.array_equal(result.outputs[0], session.predict(random_input(0)))
