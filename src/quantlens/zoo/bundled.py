"""The ResNet8 models shipped inside the package, and lookup of model arguments by name."""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from quantlens.errors import ModelNotFoundError

MODEL_SUFFIXES = (".onnx", ".pt", ".pth", ".safetensors", ".tflite", ".h5")

# Description of each bundled file, for `quantlens models` and the app's model list.
DESCRIPTIONS = {
    "resnet8.pt": "float32 PyTorch state_dict (architecture resnet8)",
    "resnet8.onnx": "float32 ONNX",
    "resnet8_int8.onnx": "ONNX QDQ, int8 activations and per-channel int8 weights",
    "resnet8_uint8.onnx": "ONNX QDQ, uint8 activations and weights",
    "resnet8_int8_qop.onnx": "ONNX QOperator (QLinearConv), int8",
    "resnet8_int8.pt": "PyTorch int8 TorchScript (FX graph mode, x86, per-channel weights)",
}


@dataclass(frozen=True)
class BundledModel:
    """A model file shipped with quantlens."""

    name: str
    path: Path
    description: str

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


def models_dir() -> Path:
    """Return the folder of the bundled model files inside the installed package."""
    return Path(str(resources.files("quantlens") / "models"))


def bundled_models() -> list[BundledModel]:
    """List the bundled models present in the package, in a stable order."""
    folder = models_dir()
    found = []
    for name, description in DESCRIPTIONS.items():
        path = folder / name
        if path.is_file():
            found.append(BundledModel(name=name, path=path, description=description))
    return found


def resolve_model(argument: str | os.PathLike[str]) -> Path:
    """Return the file a MODEL argument names: an existing path, else a bundled model's name."""
    path = Path(argument).expanduser()
    if path.exists():
        return path
    bundled = {model.name: model.path for model in bundled_models()}
    if str(argument) in bundled:
        return bundled[str(argument)]
    names = ", ".join(bundled) or "none installed"
    raise ModelNotFoundError(
        f"model not found: {str(argument)!r} is neither an existing file nor a bundled model "
        f"({names})"
    )


def find_model_files(folder: str | os.PathLike[str]) -> list[Path]:
    """List model files (by extension) directly inside ``folder``, sorted by name."""
    return sorted(
        p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in MODEL_SUFFIXES
    )
