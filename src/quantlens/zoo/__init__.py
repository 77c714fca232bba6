"""The bundled ResNet8 family: architecture, training, export and quantization."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Imported for annotations only, so that `quantlens.zoo.bundled` loads without torch.
    from torch import nn


def architectures() -> dict[str, Callable[[], nn.Module]]:
    """Return the architectures a quantlens state_dict checkpoint may name, by name."""
    from quantlens.zoo.resnet8 import ResNet8

    return {"resnet8": ResNet8}
