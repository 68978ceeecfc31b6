"""The Keras CIFAR ResNet v1 of Li et al.'s reference code (PRL 2023), layer for layer.

Li et al., "A graphical approach for filter pruning by exploring the similarity relation between
feature maps", Pattern Recognition Letters 166 (2023); reference `utils/model.py::resnet` of
github.com/lijiang99/graphical-approach-for-filter-pruning (the Keras "ResNet v1" example).
It differs from our `resnet{20..110}` (`cifar_resnet.py`), so the paper's numbers compare only
with these:

- every conv has a bias (Keras' default `use_bias=True`), he_normal kernels (Keras: a normal
  truncated at ±2σ, σ = √(2/fan_in)/0.8796), zero biases;
- BatchNorm with Keras' defaults: momentum 0.99 (PyTorch `momentum=0.01`) and ε = 1e-3;
- the shortcut that changes shape is a 1×1 stride-2 conv **without** BN or activation;
- a stride-2 3×3 conv pads like TensorFlow's "same": nothing above/left, one row/column
  below/right, so its taps are centred on odd pixels (PyTorch's padding=1 centres them on even);
- AveragePooling2D(8) + Dense (he_normal); equal to global average pooling at 32×32 inputs,
  which is what we use so that other input sizes still work.

Keras `l2(1e-4)` regularises the conv kernels only (not biases, BN or the Dense layer):
`keras_regularized()` names them for `--weight-decay-mode keras`.
"""

from __future__ import annotations

import math

import torch.nn as nn
import torch.nn.functional as F

from prunecli.models import register_model

KERAS_BN = {"eps": 1e-3, "momentum": 0.01}  # Keras BatchNormalization(momentum=0.99, epsilon=1e-3)
TRUNC_STD = 0.87962566103423978  # std of a unit normal truncated at ±2: Keras divides by it


def he_normal_(weight) -> None:
    """Keras `he_normal`: truncated normal (±2σ), σ = √(2/fan_in) / 0.8796."""
    fan_in = weight[0].numel()
    std = math.sqrt(2.0 / fan_in) / TRUNC_STD
    nn.init.trunc_normal_(weight, 0.0, std, -2 * std, 2 * std)


def tf_same_pad(x, kernel: int, stride: int):
    """TensorFlow's "same" padding for a square kernel: the odd pixel goes below/right."""
    h, w = x.shape[-2:]
    pads = []
    for size in (w, h):
        total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class KerasBlock(nn.Module):
    """conv-BN-ReLU, conv-BN, + shortcut (identity, or a bare 1×1 conv), ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1 if stride == 1 else 0)
        self.bn1 = nn.BatchNorm2d(planes, **KERAS_BN)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(planes, **KERAS_BN)
        self.shortcut = nn.Conv2d(in_planes, planes, 1, stride) if stride != 1 or in_planes != planes else None

    def forward(self, x):
        y = tf_same_pad(x, 3, self.stride) if self.stride != 1 else x
        y = F.relu(self.bn1(self.conv1(y)))
        y = self.bn2(self.conv2(y))
        return F.relu((self.shortcut(x) if self.shortcut is not None else x) + y)


class KerasResNet(nn.Module):
    def __init__(self, depth: int = 20, num_classes: int = 10, widths: tuple[int, ...] = (16, 32, 64)):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1)
        self.bn1 = nn.BatchNorm2d(widths[0], **KERAS_BN)
        stages, in_planes = [], widths[0]
        for i, w in enumerate(widths):
            blocks = []
            for j in range(n):
                blocks.append(KerasBlock(in_planes, w, stride=2 if (i > 0 and j == 0) else 1))
                in_planes = w
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(widths[-1], num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                he_normal_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))

    def keras_regularized(self) -> list[str]:
        """Parameters the reference gives `kernel_regularizer=l2(λ)`: every conv kernel."""
        return [f"{name}.weight" for name, m in self.named_modules() if isinstance(m, nn.Conv2d)]


def _register(depth: int) -> None:
    @register_model(
        f"resnet{depth}_keras",
        family="keras_resnet",
        description=f"Keras ResNet-{depth} v1 of Li et al. 2023 (conv biases, BN-less 1×1 projections, Keras BN)",
    )
    def build(num_classes: int = 10):
        return KerasResNet(depth, num_classes)


for _depth in (20, 32, 44, 56, 110):
    _register(_depth)


@register_model(
    "resnet_keras_tiny", family="keras_resnet", description="tiny Keras ResNet-8 v1 (8/16/32) for tests", tiny=True
)
def resnet_keras_tiny(num_classes: int = 10):
    return KerasResNet(8, num_classes, widths=(8, 16, 32))
