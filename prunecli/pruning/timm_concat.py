"""Channel slices feeding a concatenation (ReXNet, DPN): prune everything but the sliced convs.

* ReXNet (Han et al., "Rethinking Channel Dimensions for Efficient Model Design", CVPR 2021):
  a `LinearBottleneck` with a shortcut ends with
  `torch.cat([x[:, :c] + shortcut, x[:, c:]], dim=1)`, `c = self.in_channels`: the block
  input is added to the first `c` channels of `conv_pwl`'s output and the rest are appended.
* DPN (Chen et al., "Dual Path Networks", NeurIPS 2017): a `DualPathBlock` returns
  `torch.cat([x_s[:, :n] + out1, x_s[:, n:], out2], dim=1)`, `n = self.num_1x1_c`: its input
  (or projection `c1x1_w_s1`/`c1x1_w_s2`) is sliced into a residual part, added to
  `c1x1_c1` (or the first `n` channels of `c1x1_c`), and a dense part, concatenated with
  `c1x1_c2` (or the rest of `c1x1_c`).

Why Torch-Pruning (1.6) alone fails: its shape inference has no case for a slice. It takes a
sliced tensor's width for the slice's, so the concat offsets come out wrong and compound block
after block; the wrong index maps then make its group search run for minutes (rexnet_100: over
ten; see `graphcheck.py`) and would cut the wrong channels. The inference runs inside
`DependencyGraph.build_dependency` and `BasePruner.__init__` searches every group right after
it, so no public hook (customized pruners, unwrapped parameters, ignored layers) can correct
the offsets in time, and a forward-identical rewrite with `torch.split` does not help either:
Torch-Pruning orders a split's outputs by the order its graph walk meets them, which for
`cat([head + shortcut, tail])` is tail first, so the split offsets are swapped.

What we do, a documented partial prune: the convs whose outputs are sliced or concatenated
(the "trunk" that carries the residual and dense channels) stay whole and every other conv is
pruned: ReXNet's expansion, depth-wise and SE convs, the stem and the final 1×1 conv; DPN's
1×1 reduction and grouped 3×3 convs. These ignored layers never root a group, and no other
group reaches a sliced concat (their channels end at the trunk convs' inputs), so Torch-Pruning
never walks through the wrong offsets, the group search takes seconds, and the stored slice
sizes (`in_channels`, `num_1x1_c`) stay right without any update. The trunk's widths are what
would need a custom index-mapping pruner; the expansion and reduction layers hold most of the
MACs: at `--ratio 0.3` (64×64 input) rexnet_100 keeps 0.68× its MACs and 0.64× its parameters,
dpn48b 0.62× and 0.66×, and each prunes in seconds.
"""

from __future__ import annotations

import torch.nn as nn

from prunecli.pruning.extensions import register_extension


def _last_conv(module: nn.Module) -> nn.Module | None:
    """The conv producing `module`'s output (a ReXNet block's `conv_pwl`, a ConvNormAct's conv)."""
    from timm.models.rexnet import LinearBottleneck

    if isinstance(module, LinearBottleneck):
        return module.conv_pwl.conv
    conv = getattr(module, "conv", None)
    return conv if isinstance(conv, nn.Conv2d) else None


def rexnet_trunk(model: nn.Module) -> list[nn.Module]:
    """ReXNet: each shortcut block's `conv_pwl` and the conv producing that block's input."""
    from timm.models.rexnet import LinearBottleneck

    features = getattr(model, "features", None)
    if not isinstance(features, nn.Sequential):
        return []
    keep: list[nn.Module] = []
    before = getattr(model, "stem", None)
    for block in features:
        if isinstance(block, LinearBottleneck) and block.use_shortcut:
            keep.append(block.conv_pwl.conv)  # its output is sliced at `in_channels`
            producer = _last_conv(before) if before is not None else None
            if producer is not None:
                keep.append(producer)  # its output is the shortcut added to that slice
        before = block
    return list(dict.fromkeys(keep))


def dpn_trunk(model: nn.Module) -> list[nn.Module]:
    """DPN: each dual-path block's output convs and projection (their outputs are sliced/concatenated)."""
    from timm.models.dpn import DualPathBlock

    keep: list[nn.Module] = []
    for block in model.modules():
        if not isinstance(block, DualPathBlock):
            continue
        for proj in (block.c1x1_w_s1, block.c1x1_w_s2):
            if proj is not None:
                keep.append(proj.conv)
        if block.c1x1_c1 is not None and block.c1x1_c2 is not None:
            keep += [block.c1x1_c1, block.c1x1_c2]
        else:
            keep.append(block.c1x1_c.conv)  # only the conv: its input BN belongs to `c3x3_b`'s group
    return keep


@register_extension
def sliced_concat_trunks(model: nn.Module):
    """ReXNet and DPN: leave the convs feeding a sliced concatenation unpruned (see the module docstring)."""
    return {}, [], rexnet_trunk(model) + dpn_trunk(model)
