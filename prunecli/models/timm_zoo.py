"""Any timm model as `timm:<name>`, plus two tiny timm-built entries for tests.

`timm:<name>` entries are made on demand (timm has ~1,300 architectures; registering them all
would make `prunecli ls models` useless). Their facts come from the model's `pretrained_cfg`
(input size, class count, classifier module names), never from guessing: a distilled DeiT's
two heads, `('head', 'head_dist')`, are both protected.

The tiny entries use timm's own `VisionTransformer` (Dosovitskiy et al., ICLR 2021) and
`ConvNeXt` (Liu et al., CVPR 2022) classes at 32×32, so tests exercise timm's attention, its
LayerNorm2d and LayerScale parameters without the 160×160 inputs of timm's `test_*` models.
"""

from __future__ import annotations

import difflib
from typing import Any

import timm
import timm.models
from timm.models.convnext import ConvNeXt
from timm.models.deit import VisionTransformerDistilled
from timm.models.vision_transformer import VisionTransformer

from prunecli.errors import UserError
from prunecli.models import ModelEntry, register_model

DEFAULT_INPUT = (3, 224, 224)


def _classifier_names(cfg) -> tuple[str, ...]:
    """pretrained_cfg['classifier'] is a module path or a tuple of them (DeiT distilled)."""
    names = getattr(cfg, "classifier", None) or "head"
    return (names,) if isinstance(names, str) else tuple(names)


def _unknown(name: str) -> UserError:
    close = difflib.get_close_matches(name, timm.list_models(), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return UserError(f"unknown timm model {name!r}{hint}; `timm.list_models()` lists them")


def timm_entry(name: str) -> ModelEntry:
    """Registry entry for `timm:<name>`; `name` may carry a weight tag (`resnet50.a1_in1k`).

    Raises:
        UserError: timm has no model of that name.
    """
    if not name or not timm.is_model(name):
        raise _unknown(name)
    cfg = timm.models.get_pretrained_cfg(name, allow_unregistered=True)
    input_shape = tuple(getattr(cfg, "input_size", None) or DEFAULT_INPUT)
    num_classes = getattr(cfg, "num_classes", None) or 1000

    def build(num_classes: int = num_classes, pretrained: bool = False, **kwargs: Any):
        try:
            return timm.create_model(name, pretrained=pretrained, num_classes=num_classes, **kwargs)
        except (OSError, RuntimeError) as err:
            if not pretrained:
                raise
            raise UserError(
                f"could not fetch pretrained weights for timm:{name} ({type(err).__name__}); "
                "download them elsewhere and use `prunecli import`"
            ) from err

    return ModelEntry(
        name=f"timm:{name}",
        builder=build,
        family="timm",
        description=f"timm {name}",
        input_shape=input_shape,
        num_classes=num_classes,
        protected=_classifier_names(cfg),
    )


@register_model(
    "vit_tiny_test",
    family="timm",
    description="tiny timm ViT (32×32, patch 8, dim 64, depth 2, 4 heads) for tests",
    protected=("head",),
    tiny=True,
)
def vit_tiny_test(num_classes: int = 10, **timm_kwargs: Any):  # timm_kwargs: drop_path_rate, drop_rate
    return VisionTransformer(
        img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, mlp_ratio=2.0, num_classes=num_classes,
        **timm_kwargs,
    )


@register_model(
    "deit_distilled_tiny_test",
    family="timm",
    description="tiny timm DeiT with a distillation token (32×32, patch 8, dim 64, depth 2) for tests",
    protected=("head", "head_dist"),
    tiny=True,
)
def deit_distilled_tiny_test(num_classes: int = 10, **timm_kwargs: Any):
    return VisionTransformerDistilled(
        img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, mlp_ratio=2.0, num_classes=num_classes,
        **timm_kwargs,
    )


@register_model(
    "convnext_tiny_test",
    family="timm",
    description="tiny timm ConvNeXt (32×32, depths 1-1-1-1, dims 16-128) for tests",
    protected=("head.fc",),
    tiny=True,
)
def convnext_tiny_test(num_classes: int = 10, **timm_kwargs: Any):
    return ConvNeXt(depths=(1, 1, 1, 1), dims=(16, 32, 64, 128), num_classes=num_classes, **timm_kwargs)


# Tiny configurations of the families `pruning/timm_blocks.py` extends (tests; 32×32 inputs).


@register_model(
    "poolformer_tiny_test",
    family="timm",
    description="tiny timm PoolFormer (MetaFormer with pooling, LayerScale; depths 1-1-1-1, dims 8-32) for tests",
    protected=("head.fc",),
    tiny=True,
)
def poolformer_tiny_test(num_classes: int = 10):
    from timm.layers import GroupNorm1
    from timm.models.metaformer import MetaFormer
    from torch import nn

    return MetaFormer(depths=(1, 1, 1, 1), dims=(8, 16, 24, 32), downsample_norm=None, mlp_act=nn.GELU,
                      mlp_bias=True, norm_layers=GroupNorm1, layer_scale_init_values=1e-5,
                      res_scale_init_values=None, use_mlp_head=False, num_classes=num_classes)


@register_model(
    "caformer_tiny_test",
    family="timm",
    description="tiny timm CAFormer (SepConv and attention token mixers, ResScale; dims 16-96) for tests",
    protected=("head.fc.fc2",),
    tiny=True,
)
def caformer_tiny_test(num_classes: int = 10):
    from timm.models.metaformer import Attention, LayerNorm2dNoBias, LayerNormNoBias, MetaFormer, SepConv

    return MetaFormer(depths=(1, 1, 1, 1), dims=(16, 16, 96, 96),
                      token_mixers=[SepConv, SepConv, Attention, Attention],
                      norm_layers=[LayerNorm2dNoBias] * 2 + [LayerNormNoBias] * 2, num_classes=num_classes)


@register_model(
    "mixer_tiny_test",
    family="timm",
    description="tiny timm MLP-Mixer (32×32, patch 8, dim 32, 2 blocks) for tests",
    protected=("head",),
    tiny=True,
)
def mixer_tiny_test(num_classes: int = 10):
    from timm.models.mlp_mixer import MlpMixer

    return MlpMixer(img_size=32, patch_size=8, num_blocks=2, embed_dim=32, num_classes=num_classes)


def _tiny_csp(block_type: str, num_classes: int):
    from timm.models.cspnet import CspModelCfg, CspNet, CspStagesCfg, CspStemCfg

    cfg = CspModelCfg(stem=CspStemCfg(out_chs=8, kernel_size=3, stride=2, pool=""),
                      stages=CspStagesCfg(depth=(1, 1, 1), out_chs=(16, 32, 64), stride=2, expand_ratio=2.0,
                                          bottle_ratio=0.5, avg_down=False, block_type=block_type, stage_type="csp"))
    return CspNet(cfg, num_classes=num_classes)


@register_model(
    "cspdarknet_tiny_test",
    family="timm",
    description="tiny timm CSPDarkNet (CrossStage with dark blocks, 3 stages, 8-64 channels) for tests",
    protected=("head.fc",),
    tiny=True,
)
def cspdarknet_tiny_test(num_classes: int = 10):
    return _tiny_csp("dark", num_classes)


@register_model(
    "cspresnet_tiny_test",
    family="timm",
    description="tiny timm CSPResNet (CrossStage with bottlenecks, 3 stages, 8-64 channels) for tests",
    protected=("head.fc",),
    tiny=True,
)
def cspresnet_tiny_test(num_classes: int = 10):
    return _tiny_csp("bottle", num_classes)


@register_model(
    "edgenext_tiny_test",
    family="timm",
    description="tiny timm EdgeNeXt (conv encoders and split transposed-attention blocks, dims 8-32) for tests",
    protected=("head.fc",),
    tiny=True,
)
def edgenext_tiny_test(num_classes: int = 10):
    from timm.models.edgenext import EdgeNeXt

    return EdgeNeXt(depths=(1, 1, 2, 1), dims=(8, 16, 24, 32), heads=(2, 2, 2, 2), d2_scales=(2, 2, 3, 4),
                    num_classes=num_classes)


@register_model(
    "swin_tiny_test",
    family="timm",
    description="tiny timm Swin (32×32, patch 2, window 4, dims 16-32, heads 2-4) for tests",
    protected=("head.fc",),
    tiny=True,
)
def swin_tiny_test(num_classes: int = 10):
    from timm.models.swin_transformer import SwinTransformer

    return SwinTransformer(img_size=32, patch_size=2, window_size=4, embed_dim=16, depths=(1, 1),
                           num_heads=(2, 4), mlp_ratio=2.0, num_classes=num_classes)


@register_model(
    "pvt_v2_tiny_test",
    family="timm",
    description="tiny timm PVT-v2 (32×32, dims 8-32, one block per stage) for tests",
    protected=("head",),
    tiny=True,
)
def pvt_v2_tiny_test(num_classes: int = 10):
    from timm.models.pvt_v2 import PyramidVisionTransformerV2

    return PyramidVisionTransformerV2(depths=(1, 1, 1, 1), embed_dims=(8, 16, 24, 32), num_heads=(1, 2, 3, 4),
                                      mlp_ratios=(2.0, 2.0, 2.0, 2.0), num_classes=num_classes)


# --- concat (issue 12): channel slices feeding a concatenation, pruning/timm_concat.py ---


@register_model(
    "rexnet_tiny_test",
    family="timm",
    description="tiny timm ReXNet (width 0.5, depth 0.5: sliced-shortcut concat blocks) for tests",
    protected=("head.fc",),
    tiny=True,
)
def rexnet_tiny_test(num_classes: int = 10):
    from timm.models.rexnet import RexNet

    return RexNet(width_mult=0.5, depth_mult=0.5, num_classes=num_classes)


@register_model(
    "dpn_tiny_test",
    family="timm",
    description="tiny timm DPN (dpn48b-style dual-path blocks: small, b=True, 1-2 blocks per stage, 4 groups) for tests",
    protected=("classifier",),
    tiny=True,
)
def dpn_tiny_test(num_classes: int = 10, b: bool = True):
    from timm.models.dpn import DPN

    return DPN(small=True, num_init_features=8, k_r=32, groups=4, b=b, k_sec=(1, 2, 2, 1), inc_sec=(4, 8, 8, 8),
               act_layer="silu", num_classes=num_classes)
# Tiny configurations of the families `pruning/timm_cnn.py` extends (topic cnn; tests, 32×32 inputs).


@register_model(
    "nf_regnet_tiny_test",
    family="timm",
    description="tiny timm NF-RegNet (ScaledStdConv2d with gains, grouped convs, SE; 4 stages of 1 block, 16-48) for tests",
    protected=("head.fc",),
    tiny=True,
)
def nf_regnet_tiny_test(num_classes: int = 10):
    from timm.models.nfnet import NormFreeNet, _nfreg_cfg

    return NormFreeNet(_nfreg_cfg(depths=(1, 1, 1, 1), channels=(16, 24, 32, 48)), num_classes=num_classes)


@register_model(
    "mixnet_tiny_test",
    family="timm",
    description="tiny timm MixNet (MixedConv2d: grouped pointwise and mixed-kernel depthwise, residuals; 8-24) for tests",
    protected=("classifier",),
    tiny=True,
)
def mixnet_tiny_test(num_classes: int = 10):
    from timm.models._efficientnet_builder import decode_arch_def
    from timm.models.efficientnet import EfficientNet

    arch = [["ds_r1_k3_s1_e1_c8"], ["ir_r2_k3_a1.1_p1.1_s2_e3_c16"], ["ir_r2_k3.5.7_p1.1_s2_e3_c24_se0.5_nsw"]]
    return EfficientNet(block_args=decode_arch_def(arch), num_features=64, stem_size=8, num_classes=num_classes)


@register_model(
    "res2net_tiny_test",
    family="timm",
    description="tiny timm Res2Net (Bottle2neck, 4 chunks of 8-16 channels; first and repeated blocks) for tests",
    protected=("fc",),
    tiny=True,
)
def res2net_tiny_test(num_classes: int = 10):
    from timm.models.res2net import Bottle2neck
    from timm.models.resnet import ResNet

    return ResNet(block=Bottle2neck, layers=[2, 2, 1, 1], channels=(8, 16, 16, 16), stem_width=8, base_width=64,
                  block_args=dict(scale=4), num_classes=num_classes)


@register_model(
    "sknet_tiny_test",
    family="timm",
    description="tiny timm SKNet (SelectiveKernel with split input, 2 paths; 4 stages of 1 block, 8-16) for tests",
    protected=("fc",),
    tiny=True,
)
def sknet_tiny_test(num_classes: int = 10):
    from timm.models.resnet import ResNet
    from timm.models.sknet import SelectiveKernelBasic

    sk = dict(rd_ratio=1 / 8, rd_divisor=16, split_input=True)
    return ResNet(block=SelectiveKernelBasic, layers=[1, 1, 1, 1], channels=(8, 16, 16, 16), stem_width=8,
                  block_args=dict(sk_kwargs=sk), zero_init_last=False, num_classes=num_classes)


# attention_width (issue 12): attentions whose inner width is tied to the embedding width


@register_model(
    "coat_lite_tiny_test",
    family="timm",
    description="tiny timm CoaT-Lite (32×32, patch 4, dims 16-32, 4 heads, two crpe windows) for tests",
    protected=("head",),
    tiny=True,
)
def coat_lite_tiny_test(num_classes: int = 10):
    from timm.models.coat import CoaT

    return CoaT(img_size=32, patch_size=4, embed_dims=(16, 16, 24, 32), serial_depths=(2, 1, 1, 1),
                num_heads=4, mlp_ratios=(2, 2, 2, 2), crpe_window={3: 2, 5: 2}, num_classes=num_classes)


@register_model(
    "xcit_tiny_test",
    family="timm",
    description="tiny timm XCiT (32×32, patch 8, dim 32, 4 heads, 2 XCA + 1 class-attention blocks) for tests",
    protected=("head",),
    tiny=True,
)
def xcit_tiny_test(num_classes: int = 10):
    from timm.models.xcit import Xcit

    return Xcit(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4, mlp_ratio=2.0, cls_attn_layers=1,
                num_classes=num_classes)
# --- topic tpidx: timm models Torch-Pruning failed on with an IndexError inside a group ---


@register_model(
    "fastvit_tiny_test",
    family="timm",
    description="tiny timm FastViT (32×32, RepMixer + attention stage, dims 16-32, multiplier convs) for tests",
    protected=("head.fc",),
    tiny=True,
)
def fastvit_tiny_test(num_classes: int = 10):
    from timm.models.fastvit import FastVit

    return FastVit(layers=(1, 1), token_mixers=("repmixer", "attention"), embed_dims=(16, 32), mlp_ratios=(2, 2),
                   downsamples=(False, True), num_classes=num_classes)


@register_model(
    "pit_tiny_test",
    family="timm",
    description="tiny timm PiT (32×32, patch 4, dims 8-16, heads 1-2, pooling conv) for tests",
    protected=("head",),
    tiny=True,
)
def pit_tiny_test(num_classes: int = 10):
    from timm.models.pit import PoolingVisionTransformer

    return PoolingVisionTransformer(img_size=32, patch_size=4, stride=2, base_dims=(8, 8), depth=(1, 1),
                                    heads=(1, 2), mlp_ratio=2, num_classes=num_classes)


@register_model(
    "tiny_vit_tiny_test",
    family="timm",
    description="tiny timm TinyViT (32×32, dims 8-32, padded windows, per-head bias tables) for tests",
    protected=("head.fc",),
    tiny=True,
)
def tiny_vit_tiny_test(num_classes: int = 10):
    from timm.models.tiny_vit import TinyVit

    return TinyVit(embed_dims=(8, 16, 24, 32), depths=(1, 1, 1, 1), num_heads=(1, 2, 3, 4), window_sizes=(3, 3, 2, 1),
                   mlp_ratio=2, drop_path_rate=0.0, num_classes=num_classes)


@register_model(
    "efficientformer_tiny_test",
    family="timm",
    description="tiny timm EfficientFormer (224×224 for its fixed 7×7 attention, dims 8-32) for tests",
    protected=("head", "head_dist"),
    input_shape=(3, 224, 224),
    tiny=True,
)
def efficientformer_tiny_test(num_classes: int = 10):
    from timm.models.efficientformer import EfficientFormer

    return EfficientFormer(depths=(1, 1, 1, 2), embed_dims=(8, 16, 24, 32), num_vit=1, mlp_ratios=2,
                           num_classes=num_classes)
# --- topic `heads` (issue 12): attentions refused in seconds with a verified --ignore ---


@register_model(
    "efficientformerv2_tiny_test",
    family="timm",
    description="tiny timm EfficientFormerV2 (64×64, dims 8-32, 2-D attention in the last stage) for tests",
    protected=("head",),
    input_shape=(3, 64, 64),
    tiny=True,
)
def efficientformerv2_tiny_test(num_classes: int = 10):
    from timm.models.efficientformer_v2 import EfficientFormerV2

    return EfficientFormerV2(depths=(1, 1, 2, 2), embed_dims=(8, 16, 24, 32), img_size=64, num_vit=1,
                             mlp_ratios=2, distillation=False, num_classes=num_classes)


@register_model(
    "visformer_tiny_test",
    family="timm",
    description="tiny timm Visformer (64×64, dim 24, 3 heads, one block per stage) for tests",
    protected=("head",),
    input_shape=(3, 64, 64),
    tiny=True,
)
def visformer_tiny_test(num_classes: int = 10):
    import torch.nn as nn
    from timm.models.visformer import Visformer

    return Visformer(img_size=64, patch_size=16, init_channels=8, embed_dim=24, depth=(1, 1, 1), num_heads=3,
                     mlp_ratio=2.0, group=4, attn_stage="011", spatial_conv="100", norm_layer=nn.BatchNorm2d,
                     embed_norm=nn.BatchNorm2d, num_classes=num_classes)


@register_model(
    "efficientvit_msra_tiny_test",
    family="timm",
    description="tiny timm EfficientViT-MSRA (96×96, dims 16-48, 2 cascaded heads per block) for tests",
    protected=("head.linear",),
    input_shape=(3, 96, 96),
    tiny=True,
)
def efficientvit_msra_tiny_test(num_classes: int = 10):
    from timm.models.efficientvit_msra import EfficientVitMsra

    return EfficientVitMsra(img_size=96, embed_dim=(16, 32, 48), key_dim=(4, 4, 4), depth=(1, 1, 1),
                            num_heads=(2, 2, 2), num_classes=num_classes)


@register_model(
    "efficientvit_mit_tiny_test",
    family="timm",
    description="tiny timm EfficientViT-MIT (32×32, widths 8-32, LiteMLA head dim 16) for tests",
    protected=("head.classifier.4",),
    tiny=True,
)
def efficientvit_mit_tiny_test(num_classes: int = 10):
    from timm.models.efficientvit_mit import EfficientVit

    return EfficientVit(widths=(8, 16, 16, 32, 32), depths=(1, 1, 1, 1, 1), head_dim=16, head_widths=(64, 64),
                        num_classes=num_classes)


@register_model(
    "levit_tiny_test",
    family="timm",
    description="tiny timm LeViT (64×64, dims 32-48, key dim 8, heads 2-3, one attention downsampling) for tests",
    protected=("head.linear",),
    input_shape=(3, 64, 64),
    tiny=True,
)
def levit_tiny_test(num_classes: int = 10):
    from timm.models.levit import Levit

    return Levit(img_size=64, embed_dim=(32, 48), key_dim=8, depth=(1, 1), num_heads=(2, 3), num_classes=num_classes)
