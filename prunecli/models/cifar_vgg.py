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


def last_conv(cfg: tuple[int | str, ...]) -> str:
    """Module name of the last conv in `make_features(cfg)` (3 modules per conv, 1 per pool)."""
    index = sum(1 if v == "M" else 3 for v in cfg[: max(i for i, v in enumerate(cfg) if v != "M")])
    return f"features.{index}"


@register_model(
    "vgg16",
    family="cifar_vgg",
    description="CIFAR VGG-16-BN (13 conv-BN-ReLU, 512-512-classes head; Li et al. 2017)",
    protected=("classifier.linear2",),
    tied=(("classifier.linear1", last_conv(VGG16_CFG)),),
)
def vgg16(num_classes: int = 10):
    return CifarVGG(VGG16_CFG, num_classes)


@register_model(
    "vgg_tiny",
    family="cifar_vgg",
    description="tiny CIFAR VGG (5 convs, widths 8-64, hidden FC 64) for tests",
    protected=("classifier.linear2",),
    tiny=True,
    tied=(("classifier.linear1", last_conv(TINY_CFG)),),
)
def vgg_tiny(num_classes: int = 10):
    # hidden = the last conv's width, as VGG-16's 512-512, so the FC can follow the conv (`tied`)
    return CifarVGG(TINY_CFG, num_classes, hidden=64)


# The paper's Keras CIFAR VGG-16 (Li et al., PRL 2023; reference `utils/model.py::vgg16`): each
# conv has a bias and is followed by ReLU then BN, then dropout or a 2×2 max-pool. Entries are
# (filters, dropout rate) or (filters, "M").
KERAS_VGG16_CFG: tuple[tuple[int, float | str], ...] = (
    (64, 0.3), (64, "M"), (128, 0.4), (128, "M"), (256, 0.4), (256, 0.4), (256, "M"),
    (512, 0.4), (512, 0.4), (512, "M"), (512, 0.4), (512, 0.4), (512, "M"),
)  # fmt: skip
KERAS_TINY_CFG: tuple[tuple[int, float | str], ...] = (
    (8, 0.3), (8, "M"), (16, "M"), (32, 0.4), (32, "M"), (32, "M"), (32, "M"),
)
KERAS_BN = {"eps": 1e-3, "momentum": 0.01}
"""Keras BatchNormalization defaults: epsilon 1e-3, moving average momentum 0.99, which is
PyTorch's momentum 0.01 (PyTorch weighs the new batch statistic, Keras the running one)."""


class KerasVGG(nn.Module):
    """conv(bias)-ReLU-BN-(dropout | max-pool) blocks, then dropout 0.5, FC-hidden, ReLU, BN,
    dropout 0.5 and the classifier (logits; Keras' softmax lives in the loss here).

    Kernels are Glorot-uniform and biases zero, as Keras initialises Conv2D and Dense. ReLUs are
    not in place: the conv's own output (with bias, before ReLU and BN) is the feature map the
    similarity hash reads, and hooks that keep it must not see it rectified afterwards.
    """

    def __init__(self, cfg=KERAS_VGG16_CFG, num_classes: int = 10, hidden: int = 512):
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for width, after in cfg:
            layers += [nn.Conv2d(in_channels, width, 3, 1, 1), nn.ReLU(), nn.BatchNorm2d(width, **KERAS_BN),
                       nn.MaxPool2d(2, 2) if after == "M" else nn.Dropout(float(after))]
            in_channels = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            OrderedDict(
                drop0=nn.Dropout(0.5),
                linear1=nn.Linear(in_channels, hidden),
                relu1=nn.ReLU(),
                norm1=nn.BatchNorm1d(hidden, **KERAS_BN),
                drop1=nn.Dropout(0.5),
                linear2=nn.Linear(hidden, num_classes),
            )
        )
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)  # Keras glorot_uniform: same fans for conv kernels
                nn.init.zeros_(m.bias)

    def keras_regularized(self) -> list[str]:
        """Parameters the reference gives `kernel_regularizer=l2(λ)`: every conv kernel and the
        hidden FC's kernel; the final Dense, biases and BN are not regularised."""
        convs = [f"features.{i}.weight" for i, m in enumerate(self.features) if isinstance(m, nn.Conv2d)]
        return [*convs, "classifier.linear1.weight"]

    def forward(self, x):
        x = self.features(x)
        # Keras flattens the 1×1×C map; the pool is a no-op at 32×32 and keeps other sizes working.
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.classifier(x)


def keras_last_conv(cfg) -> str:
    """Module name of the last conv in `KerasVGG(cfg)` (4 modules per block)."""
    return f"features.{4 * (len(cfg) - 1)}"


@register_model(
    "vgg16_keras",
    family="cifar_vgg",
    description="the similarity paper's Keras CIFAR VGG-16: conv(bias)-ReLU-BN, dropout 0.3/0.4/0.5, "
                "FC-512-ReLU-BN (Li et al. PRL 2023)",
    protected=("classifier.linear2",),
    tied=(("classifier.linear1", keras_last_conv(KERAS_VGG16_CFG)),),
)
def vgg16_keras(num_classes: int = 10):
    return KerasVGG(KERAS_VGG16_CFG, num_classes)


@register_model(
    "vgg_keras_tiny",
    family="cifar_vgg",
    description="tiny Keras-style VGG (7 convs, widths 8-32) for tests",
    protected=("classifier.linear2",),
    tiny=True,
    tied=(("classifier.linear1", keras_last_conv(KERAS_TINY_CFG)),),
)
def vgg_keras_tiny(num_classes: int = 10):
    return KerasVGG(KERAS_TINY_CFG, num_classes, hidden=32)
