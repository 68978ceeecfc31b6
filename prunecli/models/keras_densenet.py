"""The Keras DenseNet-40 of Li et al.'s reference code (PRL 2023), layer for layer.

Li et al., "A graphical approach for filter pruning by exploring the similarity relation between
feature maps", Pattern Recognition Letters 166 (2023); reference `utils/model.py::densenet` of
github.com/lijiang99/graphical-approach-for-filter-pruning: growth 12, three dense blocks of 12
layers, 16 initial filters, no bottleneck, compression 1, dropout 0.2. In order:

- stem: Conv3×3 (16, no bias); no BN or dropout after it;
- dense layer: BN → ReLU → Conv3×3 (12, no bias) → Dropout(0.2), concatenated after its input;
- transition (after blocks 1 and 2): BN → ReLU → Conv1×1 (as many filters as inputs, no bias)
  → Dropout(0.2) → AveragePooling 2×2;
- head: BN → ReLU → global average pooling → Dense.

Against our `densenet40` (`cifar_densenet.py`) it adds the dropout, Keras' initialisers (conv
he_uniform, Dense glorot_uniform with a zero bias) and Keras' BatchNorm defaults (momentum 0.99,
i.e. PyTorch `momentum=0.01`, ε = 1e-3). Its `l2(1e-4)` is on every parameter: conv kernels, BN
γ and β, the Dense kernel and bias (`keras_regularized()`, for `--weight-decay-mode keras`).
All 39 convs are prunable, each by its own similarity graph (concatenation couples no outputs).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from prunecli.models import register_model
from prunecli.models.keras_resnet import KERAS_BN


class KerasDenseLayer(nn.Module):
    def __init__(self, in_channels: int, growth: int, drop: float):
        super().__init__()
        self.bn = nn.BatchNorm2d(in_channels, **KERAS_BN)
        self.conv = nn.Conv2d(in_channels, growth, 3, 1, 1, bias=False)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        return torch.cat([x, self.drop(self.conv(F.relu(self.bn(x))))], 1)


class KerasTransition(nn.Module):
    def __init__(self, channels: int, drop: float):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, **KERAS_BN)
        self.conv = nn.Conv2d(channels, channels, 1, bias=False)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        return F.avg_pool2d(self.drop(self.conv(F.relu(self.bn(x)))), 2)


class KerasDenseNet(nn.Module):
    def __init__(self, layers: int = 12, growth: int = 12, num_classes: int = 10, stem: int = 16,
                 drop: float = 0.2, blocks: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(3, stem, 3, 1, 1, bias=False)
        channels, stages = stem, []
        for b in range(blocks):
            seq = []
            for _ in range(layers):
                seq.append(KerasDenseLayer(channels, growth, drop))
                channels += growth
            if b < blocks - 1:
                seq.append(KerasTransition(channels, drop))
            stages.append(nn.Sequential(*seq))
        self.blocks = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(channels, **KERAS_BN)
        self.fc = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")  # Keras he_uniform: U(±√(6/fan_in))
        nn.init.xavier_uniform_(self.fc.weight)  # Keras glorot_uniform
        nn.init.zeros_(self.fc.bias)

    def forward(self, x):
        x = F.relu(self.bn(self.blocks(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))

    def keras_regularized(self) -> list[str]:
        """Every parameter carries `l2(λ)` in the reference (kernels, BN γ/β, Dense bias)."""
        return [name for name, _ in self.named_parameters()]


@register_model(
    "densenet40_keras",
    family="keras_densenet",
    description="Keras DenseNet-40 of Li et al. 2023 (k=12, 3×12 layers, dropout 0.2, Keras BN/initialisers)",
)
def densenet40_keras(num_classes: int = 10):
    return KerasDenseNet(12, 12, num_classes)


@register_model(
    "densenet_keras_tiny",
    family="keras_densenet",
    description="tiny Keras DenseNet-10 (k=4, 3×2 layers, dropout 0.2) for tests",
    tiny=True,
)
def densenet_keras_tiny(num_classes: int = 10):
    return KerasDenseNet(2, 4, num_classes, stem=8)
