"""A ResNet-50-sized convolutional network with random weights, written for the benchmark.

Bottleneck blocks (1x1, 3x3, 1x1 convolutions, each followed by BatchNorm) in four stages of
3, 4, 6 and 3 blocks, with the stride on the 3x3 convolution. With ``base_width=64`` and 1000
classes it has 25,557,032 parameters, the size of the usual ResNet-50.
"""

from __future__ import annotations

import torch
from torch import nn

STAGE_BLOCKS = (3, 4, 6, 3)
EXPANSION = 4


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand; a 1x1 projection shortcut when the shape changes."""

    def __init__(self, in_channels: int, width: int, stride: int) -> None:
        super().__init__()
        out_channels = width * EXPANSION
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        self.relu3 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu1(self.bn1(self.conv1(x)))
        y = self.relu2(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu3(y + self.shortcut(x))


class BottleneckNet(nn.Module):
    """Stem (7x7 stride-2 convolution, max pooling), four bottleneck stages, pooling, classifier.

    Input: NCHW float32, e.g. ``(8, 3, 224, 224)``; output: ``(8, classes)`` logits.
    """

    def __init__(self, *, base_width: int = 64, classes: int = 1000) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, base_width, 7, stride=2, padding=3, bias=False)
        self.bn = nn.BatchNorm2d(base_width)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        stages = []
        in_channels = base_width
        for index, blocks in enumerate(STAGE_BLOCKS):
            width = base_width * 2**index
            stride = 1 if index == 0 else 2
            stage = []
            for block in range(blocks):
                stage.append(Bottleneck(in_channels, width, stride if block == 0 else 1))
                in_channels = width * EXPANSION
            stages.append(nn.Sequential(*stage))
        self.stages = nn.Sequential(*stages)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(in_channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu(self.bn(self.conv(x))))
        x = self.stages(x)
        return self.fc(self.flatten(self.avgpool(x)))


def build_network(*, base_width: int, seed: int = 0) -> BottleneckNet:
    """Build the network in eval mode with seeded random weights and BatchNorm statistics.

    BatchNorm running means and variances are drawn too (means N(0, 0.1), variances U(0.5, 1.5)),
    so folding them into the convolutions changes the weights, as with a trained model.
    """
    torch.manual_seed(seed)
    network = BottleneckNet(base_width=base_width)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, nn.BatchNorm2d):
                channels = module.num_features
                module.running_mean.copy_(0.1 * torch.randn(channels, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(channels, generator=generator))
    return network.eval()


def parameter_count(network: nn.Module) -> int:
    """Count the parameters (BatchNorm running statistics excluded)."""
    return sum(parameter.numel() for parameter in network.parameters())
