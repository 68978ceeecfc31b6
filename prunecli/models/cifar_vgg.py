"""CIFAR VGG-16 with BatchNorm, the variant pruning papers benchmark on CIFAR-10.

The 13 conv layers follow Simonyan & Zisserman (ICLR 2015, config "D"), each conv-BN-ReLU
(Ioffe & Szegedy 2015). After five 2×2 max-pools a 32×32 image is 1×1×512, so the 4096-wide
ImageNet classifier is replaced by Linear(512, 512)-BN-ReLU-Linear(512, classes), as in
Li et al., "Pruning Filters for Efficient ConvNets" (ICLR 2017) and HRank (CVPR 2020): that
is the ≈15.0M-parameter VGG-16 their CIFAR tables report.
"""

from __future__ import annotations

from collections import OrderedDict

import torch.nn as nn
import torch.nn.functional as F

from prunecli.models import register_model

VGG16_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)  # fmt: skip
TINY_CFG: tuple[int | str, ...] = (8, "M", 16, "M", 32, 32, "M", 64, "M", 64, "M")


def make_features(cfg: tuple[int | str, ...], in_channels: int = 3) -> nn.Sequential:
    """Conv3×3-BN-ReLU per integer in `cfg`, 2×2 max-pool per "M"; convs have no bias (BN follows)."""
    layers: list[nn.Module] = []
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [
                nn.Conv2d(in_channels, int(v), 3, 1, 1, bias=False),
                nn.BatchNorm2d(int(v)),
                nn.ReLU(True),
            ]
            in_channels = int(v)
    return nn.Sequential(*layers)


class CifarVGG(nn.Module):
    """VGG feature extractor plus a two-layer classifier with named modules.

    The classifier's layers have names (`linear1`, `norm1`, `linear2`) rather than indices so
    the protected head reads `classifier.linear2` in the registry, in masks and in logs.
    """

    def __init__(self, cfg: tuple[int | str, ...] = VGG16_CFG, num_classes: int = 10, hidden: int = 512):
        super().__init__()
        self.features = make_features(cfg)
        width = int([v for v in cfg if v != "M"][-1])
        self.classifier = nn.Sequential(
            OrderedDict(
                linear1=nn.Linear(width, hidden),
                norm1=nn.BatchNorm1d(hidden),
                relu1=nn.ReLU(True),
                linear2=nn.Linear(hidden, num_classes),
            )
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.features(x)
        # A no-op for 32×32 inputs (already 1×1 after five pools); keeps other sizes working.
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.classifier(x)


@register_model(
    "vgg16",
    family="cifar_vgg",
    description="CIFAR VGG-16-BN (13 conv-BN-ReLU, 512-512-classes head; Li et al. 2017)",
    protected=("classifier.linear2",),
)
def vgg16(num_classes: int = 10):
    return CifarVGG(VGG16_CFG, num_classes)


@register_model(
    "vgg_tiny",
    family="cifar_vgg",
    description="tiny CIFAR VGG (5 convs, widths 8-64) for tests",
    protected=("classifier.linear2",),
    tiny=True,
)
def vgg_tiny(num_classes: int = 10):
    return CifarVGG(TINY_CFG, num_classes, hidden=32)
