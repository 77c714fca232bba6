"""The torch-free TorchScript reader gives what torch.jit.load gives, and falls back to it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from quantlens.readers import open_model
from quantlens.readers.torch_modules import read_torchscript
from quantlens.readers.torch_reader import _extra_file_names, _zip_names
from quantlens.readers.torchscript_archive import NotReadable, read_torchscript_archive
from quantlens.records import Model
from tests.fixtures import torch_models
from tests.fixtures.processes import printed_words


# Saved from a script, so that the classes live in __main__, as in most users' export scripts:
# TorchScript then names them __torch__.<Class>, without a module path.
EXPORT_SCRIPT = """
import sys
import torch
from torch import nn
from torch.ao import quantization


class Eager(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = quantization.QuantStub()
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(8 * 6 * 6, 10)
        self.dequant = quantization.DeQuantStub()

    def forward(self, x):
        x = self.relu(self.bn(self.conv(self.quant(x))))
        return self.dequant(self.fc(torch.flatten(x, 1)))


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(16, 32)
        self.b = nn.Linear(32, 4)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


torch.manual_seed(0)
folder = sys.argv[1]
model = Eager().eval()
model.qconfig = quantization.get_default_qconfig("x86")
prepared = quantization.prepare(quantization.fuse_modules(model, [["conv", "bn", "relu"]]))
prepared(torch.randn(4, 3, 8, 8))
torch.jit.save(torch.jit.script(quantization.convert(prepared)), folder + "/eager_static.pt")
for name, dtype in (("dynamic_int8", torch.qint8), ("dynamic_fp16", torch.float16)):
    dynamic = quantization.quantize_dynamic(Mlp().eval(), {nn.Linear}, dtype=dtype)
    torch.jit.save(torch.jit.script(dynamic), folder + "/" + name + ".pt")
"""


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory, bundled) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("torchscript")
    model = torch_models.build_float_model()
    quantized = torch_models.save_quantized(folder, model)
    # torch.jit.script reads the classes' source, so the script must be a file.
    script = folder / "export.py"
    script.write_text(EXPORT_SCRIPT)
    subprocess.run([sys.executable, str(script), str(folder)], check=True, capture_output=True)
    return {
        "float scripted": torch_models.save_float_torchscript(folder, model, name="float.pt"),
        "int8 scripted": quantized.scripted,
        "int8 traced": quantized.traced,
        "bundled int8": bundled["resnet8_int8.pt"],
        "eager static int8": folder / "eager_static.pt",
        "dynamic int8": folder / "dynamic_int8.pt",
        "dynamic fp16": folder / "dynamic_fp16.pt",
    }


READABLE = ["float scripted", "int8 scripted", "int8 traced", "bundled int8", "eager static int8", "dynamic int8"]


def both_readers(path: Path) -> tuple[Model, Model]:
    extra = _extra_file_names(_zip_names(path))
    return read_torchscript(path, extra_file_names=extra), read_torchscript_archive(path, extra_file_names=extra)


@pytest.mark.parametrize("kind", READABLE)
def test_same_layers_as_jit_load(archives, kind):
    expected, actual = both_readers(archives[kind])
    assert [(layer.name, layer.op_type) for layer in actual.layers] == [
        (layer.name, layer.op_type) for layer in expected.layers
    ]
    assert actual.metadata == expected.metadata
    assert actual.input_spec == expected.input_spec
    for (_, want), (_, got) in zip(expected.tensors(), actual.tensors(), strict=True):
        assert (got.name, got.role, got.shape, got.dtype) == (want.name, want.role, want.shape, want.dtype)


@pytest.mark.parametrize("kind", READABLE)
def test_same_values_as_torch(archives, kind):
    expected, actual = both_readers(archives[kind])
    quantized = 0
    for (_, want), (_, got) in zip(expected.tensors(), actual.tensors(), strict=True):
        assert got.values.dtype == want.values.dtype
        np.testing.assert_array_equal(got.values, want.values, err_msg=got.name)
        if want.quantization is not None:
            quantized += 1
            np.testing.assert_array_equal(got.codes, want.codes)
            assert got.quantization.axis == want.quantization.axis
            assert (got.quantization.qmin, got.quantization.qmax) == (want.quantization.qmin, want.quantization.qmax)
            np.testing.assert_array_equal(got.quantization.scale, want.quantization.scale)
            np.testing.assert_array_equal(got.quantization.zero_point, want.quantization.zero_point)
    assert quantized > 0 or kind == "float scripted"


def test_open_model_does_not_import_torch(bundled):
    printed = printed_words(
        "import sys, quantlens",
        f"model = quantlens.open_model({str(bundled['resnet8_int8.pt'])!r})",
        "values = model.layer('stack1.conv1').weight.values",
        "print(model.format, len(model.layers), 'torch' in sys.modules)",
    )
    assert printed == ["torchscript", "15", "False"]


class Upsampler(nn.Module):
    """A quantized transposed convolution, whose pickled state this reader does not interpret."""

    def __init__(self) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(3, 4, 2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(x)


def test_fp16_dynamic_linear_falls_back_to_jit_load(archives):
    path = archives["dynamic fp16"]
    with pytest.raises(NotReadable):
        read_torchscript_archive(path, extra_file_names=[])
    model = open_model(path)
    assert model.layer("a").weight.dtype == "float32"


def test_unknown_state_falls_back_to_jit_load(tmp_path):
    quantized = torch_models.quantize_fx(Upsampler().eval(), backend="x86")
    path = tmp_path / "upsampler.pt"
    torch.jit.save(torch.jit.trace(quantized, torch.zeros(1, 3, 8, 8)), str(path))
    with pytest.raises(NotReadable):
        read_torchscript_archive(path, extra_file_names=[])
    model = open_model(path)
    assert model.format == "torchscript"
    assert model.layer("up").weight.quantization is not None
