"""CIFAR DenseNet (Huang et al., "Densely Connected Convolutional Networks", CVPR 2017, §3-4).

DenseNet-40 is the paper's basic variant for CIFAR: growth rate k=12, three dense blocks of
(40 - 4) / 3 = 12 layers, each layer BN-ReLU-Conv3×3 producing k new feature maps that are
concatenated to its input; transitions are BN-ReLU-Conv1×1 (no compression) + 2×2 avg-pool.
No bottleneck (that is DenseNet-BC). ≈1.0M parameters, as in the paper's Table 2.

Concatenation is an explicit `torch.cat`, which Torch-Pruning's dependency graph traces: pruning
one layer's k output maps shrinks the input of every later BN and conv that reads them.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from prunecli.models import register_model


class DenseLayer(nn.Module):
    """BN-ReLU-Conv3×3 producing `growth` maps, appended to the input along channels."""

    def __init__(self, in_channels: int, growth: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(in_channels)
        self.conv = nn.Conv2d(in_channels, growth, 3, 1, 1, bias=False)

    def forward(self, x):
        return torch.cat([x, self.conv(F.relu(self.bn(x)))], 1)


class Transition(nn.Module):
    """BN-ReLU-Conv1×1 keeping the channel count (no compression), then 2×2 average pooling."""

    def __init__(self, channels: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.conv = nn.Conv2d(channels, channels, 1, bias=False)

    def forward(self, x):
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2)


class CifarDenseNet(nn.Module):
    def __init__(self, depth: int = 40, growth: int = 12, num_classes: int = 10, stem: int = 16):
        super().__init__()
        if (depth - 4) % 3:
            raise ValueError(f"CIFAR DenseNet depth must be 3n+4, got {depth}")
        n = (depth - 4) // 3
        self.conv1 = nn.Conv2d(3, stem, 3, 1, 1, bias=False)
        channels = stem
        blocks = []
        for _ in range(3):
            layers = []
            for _ in range(n):
                layers.append(DenseLayer(channels, growth))
                channels += growth
            blocks.append(nn.Sequential(*layers))
        self.block1, self.block2, self.block3 = blocks
        self.trans1, self.trans2 = Transition(stem + n * growth), Transition(stem + 2 * n * growth)
        self.bn = nn.BatchNorm2d(channels)
        self.fc = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.conv1(x)
        x = self.trans1(self.block1(x))
        x = self.trans2(self.block2(x))
        x = F.relu(self.bn(self.block3(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


@register_model(
    "densenet40",
    family="cifar_densenet",
    description="CIFAR DenseNet-40 (k=12, 3×12 BN-ReLU-Conv3×3 layers; Huang et al. 2017)",
)
def densenet40(num_classes: int = 10):
    return CifarDenseNet(40, 12, num_classes)


@register_model(
    "densenet_tiny",
    family="cifar_densenet",
    description="tiny CIFAR DenseNet-10 (k=4, 3×2 layers) for tests",
    tiny=True,
)
def densenet_tiny(num_classes: int = 10):
    return CifarDenseNet(10, 4, num_classes, stem=8)
