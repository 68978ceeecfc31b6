"""ImageNet architectures from torchvision, built without weights (nothing is downloaded).

ResNet-50 (He et al., CVPR 2016), VGG-16-BN (Simonyan & Zisserman, ICLR 2015) and DenseNet-169
(Huang et al., CVPR 2017) are the ImageNet models of the structured-pruning literature
(e.g. DepGraph, Fang et al., CVPR 2023); plain VGG-16 (no BN) and DenseNet-169 are the models of
the MTP pruning report (Akhtar & Bathula 2023), on 32×32 CIFAR-100 and 224×224 HAM10000 (both
nets end in an adaptive average pool, so any input of 32×32 or more works). Pretrained weights
enter through `prunecli import` (the module names are torchvision's, so its state dicts load as is).

Any other torchvision classification model is reachable as `tv:<name>` (`tv:resnet18`,
`tv:mobilenet_v3_small`, `tv:vit_b_16`, …; `torchvision.models.list_models(torchvision.models)`),
built on demand like `timm:<name>`. Its protected classifier is the last Linear or Conv layer
the model defines (every torchvision classifier ends in one; SqueezeNet's is a 1×1 conv). The
auxiliary heads of GoogLeNet and Inception-v3 are left out (`aux_logits=False`): they only run in
training mode, so pruning, which traces the eval graph, could not keep them consistent.

The tiny variants reuse torchvision's own classes, blocks, forward and module names (so
pruning sees the same graph patterns: Bottleneck `downsample`, the flatten before VGG's
classifier, DenseNet's `torch.cat`) with small widths and 32×32 inputs, for fast tests.
torchvision hard-codes ResNet's and VGG's widths in `__init__`, so those two subclass it.
"""

from __future__ import annotations

import functools

import torch.nn as nn
from torchvision import models as tvm
from torchvision.models.densenet import DenseNet
from torchvision.models.resnet import Bottleneck, ResNet
from torchvision.models.vgg import VGG, make_layers

from prunecli.errors import UserError
from prunecli.models import ModelEntry, register_model

IMAGENET = {"input_shape": (3, 224, 224), "num_classes": 1000}
TINY = {"input_shape": (3, 32, 32), "num_classes": 10, "tiny": True}


@register_model(
    "tv_resnet50", family="torchvision", description="torchvision ResNet-50 (25.6M params)", **IMAGENET
)
def tv_resnet50(num_classes: int = 1000):
    return tvm.resnet50(weights=None, num_classes=num_classes)


@register_model(
    "tv_vgg16",
    family="torchvision",
    description="torchvision VGG-16, no BatchNorm (138.4M params)",
    protected=("classifier.6",),
    **IMAGENET,
)
def tv_vgg16(num_classes: int = 1000):
    return tvm.vgg16(weights=None, num_classes=num_classes)


@register_model(
    "tv_vgg16_bn",
    family="torchvision",
    description="torchvision VGG-16 with BatchNorm (138.4M params)",
    protected=("classifier.6",),
    **IMAGENET,
)
def tv_vgg16_bn(num_classes: int = 1000):
    return tvm.vgg16_bn(weights=None, num_classes=num_classes)


@register_model(
    "tv_densenet169",
    family="torchvision",
    description="torchvision DenseNet-169 (k=32, BC; 14.1M params)",
    protected=("classifier",),
    **IMAGENET,
)
def tv_densenet169(num_classes: int = 1000):
    return tvm.densenet169(weights=None, num_classes=num_classes)


class SlimResNet(ResNet):
    """torchvision `ResNet` whose four stage widths are arguments instead of 64-128-256-512."""

    def __init__(self, block, layers: list[int], widths: tuple[int, ...], num_classes: int = 1000):
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes, self.dilation, self.groups, self.base_width = widths[0], 1, 1, 64
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, widths[0], layers[0])
        self.layer2 = self._make_layer(block, widths[1], layers[1], stride=2)
        self.layer3 = self._make_layer(block, widths[2], layers[2], stride=2)
        self.layer4 = self._make_layer(block, widths[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[3] * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


class SlimVGG(VGG):
    """torchvision `VGG` with a small classifier of the same 7-module layout (Linear at index 6).

    `VGG.__init__` always allocates the 102M-parameter 25088→4096 layer, so this skips it.
    """

    def __init__(self, cfg: list, pool: int, hidden: int, num_classes: int = 1000):
        nn.Module.__init__(self)
        self.features = make_layers(cfg, batch_norm=True)
        self.avgpool = nn.AdaptiveAvgPool2d((pool, pool))
        width = [v for v in cfg if v != "M"][-1]
        self.classifier = nn.Sequential(
            nn.Linear(width * pool * pool, hidden),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(hidden, hidden),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(hidden, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


@register_model(
    "tv_resnet_tiny",
    family="torchvision",
    description="tiny torchvision ResNet (Bottleneck ×[1,1,1,1], widths 8-64) for tests",
    **TINY,
)
def tv_resnet_tiny(num_classes: int = 10, blocks: int = 1):
    """`blocks`: bottlenecks per stage; with 2, each stage also has a block without downsample
    (as ResNet-50 has), which tests of block removal need."""
    return SlimResNet(Bottleneck, [blocks] * 4, (8, 16, 32, 64), num_classes)


@register_model(
    "tv_vgg_tiny",
    family="torchvision",
    description="tiny torchvision VGG-BN (4 convs, 2×2 pool before a 7-layer classifier) for tests",
    protected=("classifier.6",),
    **TINY,
)
def tv_vgg_tiny(num_classes: int = 10):
    return SlimVGG([8, "M", 16, "M", 32, "M", 32, "M"], pool=2, hidden=32, num_classes=num_classes)


@register_model(
    "tv_densenet_tiny",
    family="torchvision",
    description="tiny torchvision DenseNet-BC (k=4, blocks 2-2) for tests",
    protected=("classifier",),
    **TINY,
)
def tv_densenet_tiny(num_classes: int = 10):
    return DenseNet(
        growth_rate=4, block_config=(2, 2), num_init_features=8, bn_size=2, num_classes=num_classes
    )


_TV_INPUT = {"inception_v3": (3, 299, 299)}
_TV_NO_AUX = ("googlenet", "inception_v3")


@functools.cache
def _tv_names() -> list[str]:
    return sorted(tvm.list_models(module=tvm))


def _tv_build(name: str, num_classes: int, **kwargs) -> nn.Module:
    if name in _TV_NO_AUX:
        kwargs.setdefault("aux_logits", False)
        kwargs.setdefault("init_weights", True)
    return tvm.get_model(name, weights=None, num_classes=num_classes, **kwargs)


@functools.cache
def _head(name: str) -> str:
    """The last Linear/Conv the model defines: every torchvision classifier's output layer.

    Found on a build on the meta device (no memory, no initialisation), once per name: entries
    are looked up on every load."""
    import torch

    with torch.device("meta"):
        model = _tv_build(name, num_classes=10)
    return [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))][-1]


def tv_entry(name: str) -> ModelEntry:
    """Registry entry for `tv:<name>`, any torchvision classification model, built without weights.

    Raises:
        UserError: torchvision has no classification model of that name.
    """
    import difflib

    names = _tv_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UserError(f"unknown torchvision model {name!r}{hint}; "
                        "`torchvision.models.list_models(torchvision.models)` lists them")
    head = _head(name)

    def build(num_classes: int = 1000, **kwargs):
        return _tv_build(name, num_classes, **kwargs)

    return ModelEntry(name=f"tv:{name}", builder=build, family="torchvision", description=f"torchvision {name}",
                      input_shape=_TV_INPUT.get(name, (3, 224, 224)), num_classes=1000, protected=(head,))


@register_model(
    "tv_vit_tiny",
    family="torchvision",
    description="tiny torchvision ViT (32×32, patch 8, width 64, 2 layers, 4 heads) for tests",
    protected=("heads.head",),
    **TINY,
)
def tv_vit_tiny(num_classes: int = 10):
    from torchvision.models.vision_transformer import VisionTransformer

    return VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=64, mlp_dim=128,
                             num_classes=num_classes)
