"""ResNet8 as in the MLPerf Tiny image-classification benchmark, in PyTorch.

Input is ``(N, 32, 32, 3)`` float32 raw pixels 0-255, channels last, like the benchmark's Keras
model. The ``preprocess`` module moves channels first and normalizes with CIFAR-10's per-channel
mean and std, so every exported file takes that same raw input.
"""

from __future__ import annotations

import torch
from torch import nn

# CIFAR-10 training-set statistics per RGB channel, in 0-255 pixel units.
CIFAR10_MEAN = (125.307, 122.950, 113.865)
CIFAR10_STD = (62.993, 62.089, 66.705)

# The input interface every bundled file records (ONNX metadata_props, TorchScript extra files
# and the state_dict checkpoint) so that quantlens can feed it without guessing.
INPUT_SPEC = {
    "layout": "NHWC",
    "shape": [None, 32, 32, 3],
    "dtype": "float32",
    "scaling": "raw",
    "value_range": [0.0, 255.0],
}
ARCHITECTURE = "resnet8"


class Preprocess(nn.Module):
    """NHWC raw pixels to NCHW normalized values: ``(x - mean) / std`` per channel."""

    def __init__(self) -> None:
        super().__init__()
        std = torch.tensor(CIFAR10_STD)
        self.register_buffer("scale", (1.0 / std).view(1, 3, 1, 1))
        self.register_buffer("shift", (-torch.tensor(CIFAR10_MEAN) / std).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 1, 2) * self.scale + self.shift


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm; a 1x1 convolution shortcut when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride)
        else:
            self.shortcut = nn.Identity()
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu1(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu2(y + self.shortcut(x))


class ResNet8(nn.Module):
    """MLPerf Tiny ResNet8: 16-filter stem, three residual stacks (16, 32, 64), pooling, dense."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.preprocess = Preprocess()
        self.conv = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        self.stack1 = ResidualBlock(16, 16, stride=1)
        self.stack2 = ResidualBlock(16, 32, stride=2)
        self.stack3 = ResidualBlock(32, 64, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn(self.conv(self.preprocess(x))))
        x = self.stack3(self.stack2(self.stack1(x)))
        return self.fc(self.flatten(self.pool(x)))


def count_parameters(model: nn.Module) -> int:
    """Count trainable parameters (BatchNorm running statistics excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
