"""timm convolutions Torch-Pruning needs help with (`pruning/timm_cnn.py`), on tiny configurations.

Before (issue 12): NF-RegNet's pruned forward failed (`ScaledStdConv2d`'s `gain` not cut), and
MixNet's `MixedConv2d` got channels cut from the wrong piece of its split, then a stale
`splits`. Now both prune (MACs drop) and reload bit-identically in a fresh process, and the
index checks below show each cut lands on the channels it names.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch_pruning as tp

from prunecli.io import checkpoint as ckpt
from prunecli.pruning.extensions import after_prune, collect, fix_graph
from tests.conftest import pruned_json, reload_in_fresh_process, untrained

DATA = "synthetic:n=8,val=4,classes=4"


@pytest.mark.parametrize("model", ["nf_regnet_tiny_test", "mixnet_tiny_test", "res2net_tiny_test", "sknet_tiny_test"])
def test_family_prunes_and_reloads(model, tmp_path):
    base, out = untrained(model, tmp_path / "base.safetensors", DATA), tmp_path / "p.safetensors"
    result = pruned_json(base, out, "--method", "l1", "--ratio", "0.3")
    assert result["macs_after"] < 0.8 * result["macs_before"]
    here, fresh = reload_in_fresh_process(out, tmp_path)
    assert torch.equal(here, fresh) and here.shape == (2, 4)
    if model == "mixnet_tiny_test":  # the pruned split sizes are what a reload rebuilds
        from timm.layers.mixed_conv2d import MixedConv2d

        structure = ckpt.read_header(out.read_bytes()).structure
        mixed = [(n, m) for n, m in ckpt.load(out).model.named_modules() if isinstance(m, MixedConv2d)]
        assert any("splits" in structure.get(n, {}) for n, _ in mixed)
        for _, m in mixed:
            assert list(m.splits) == [c.in_channels for c in m.values()] and m.in_channels == sum(m.splits)
    if model == "res2net_tiny_test":  # equal chunks, and the width a reload rebuilds
        from timm.models.res2net import Bottle2neck

        blocks = [b for b in ckpt.load(out).model.modules() if isinstance(b, Bottle2neck)]
        assert sum(b.width for b in blocks) < 8 * 2 + 16 * 4  # unpruned: 8 in layer1's 2 blocks, 16 after
        for b in blocks:
            assert b.conv1.out_channels == 4 * b.width and all(c.in_channels == b.width for c in b.convs)


def _cut(model: nn.Module, cuts: list[tuple[nn.Module, list[int]]], example) -> None:
    """Cut output channels `idxs` of each root, one group after the other, as `prune_at` does."""
    custom = collect(model, [])[0]
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example, customized_pruners=custom)
    fix_graph(model, graph)
    for root, idxs in cuts:
        group = graph.get_pruning_group(root, graph.get_pruner_of_module(root).prune_out_channels, idxs)
        group.prune()
        fix_graph(model, graph, group)
    after_prune(model, {}, {})


def test_mixed_conv_cuts_land_on_the_channels_named():
    """Zeroed channels, uneven across split pieces, pruned one group after another: output unchanged.

    The stem's channels 0 and 5 sit in pieces 0 and 1 of the first MixedConv2d's split (4, 2, 2);
    then mixA's piece-0 filters 0-2 and its piece-1 filter 1 are cut in two groups, so the
    second is mapped through a split whose first piece has already shrunk.
    """
    from timm.layers.mixed_conv2d import MixedConv2d

    torch.manual_seed(0)
    stem = nn.Conv2d(3, 8, 3, padding=1)
    mix_a = MixedConv2d(8, 16, [1, 1, 1])  # in splits (4, 2, 2), out (6, 5, 5)
    mix_dw = MixedConv2d(16, 16, [3, 5, 7], depthwise=True)
    mix_b = MixedConv2d(16, 8, [1, 1, 1])
    # A norm between the blocks as in MixNet (fresh BatchNorm: zero in, zero out).
    model = nn.Sequential(stem, nn.ReLU(), mix_a, nn.BatchNorm2d(16), mix_dw, nn.BatchNorm2d(16), mix_b).eval()
    with torch.no_grad():
        stem.weight[[0, 5]] = 0
        stem.bias[[0, 5]] = 0
        mix_a["0"].weight[[0, 1, 2]] = 0
        mix_a["1"].weight[[1]] = 0
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        before = model(x)
    _cut(model, [(stem, [0, 5]), (mix_a["0"], [0, 1, 2]), (mix_a["1"], [1])], x)
    assert list(mix_a.splits) == [3, 1, 2] and list(mix_dw.splits) == [3, 4, 5] and list(mix_b.splits) == [3, 4, 5]
    with torch.no_grad():
        assert torch.allclose(model(x), before, atol=1e-6)


def test_scaled_std_conv_gain_follows_its_filters_and_scale_keeps_the_original_fan_in():
    """Output cut: exact (distinct gains, so a mis-mapped gain shows). Input cut: the kept filters
    are standardised over the kept fan-in and multiplied by the original-fan-in scale."""
    from timm.layers import ScaledStdConv2d

    torch.manual_seed(0)
    first, second = ScaledStdConv2d(3, 6, 3), ScaledStdConv2d(6, 4, 1)
    with torch.no_grad():
        first.gain.copy_(torch.arange(1.0, 7.0).view(6, 1, 1, 1))
        second.gain.copy_(torch.arange(1.0, 5.0).view(4, 1, 1, 1))
    model = nn.Sequential(first, nn.ReLU(), second).eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        first_before = first(x)
    weight2, scale2 = second.weight.detach().clone(), second.scale
    _cut(model, [(first, [1, 4])], x)
    kept = [0, 2, 3, 5]
    assert first.gain.flatten().tolist() == [1.0, 3.0, 4.0, 6.0]
    with torch.no_grad():
        assert torch.allclose(first(x), first_before[:, kept], atol=1e-6)
        assert second.scale == scale2 == 6**-0.5  # gamma / sqrt(original fan-in 6 × 1 × 1)
        w = weight2[:, kept]
        standardised = (w - w.mean((1, 2, 3), keepdim=True)) / torch.sqrt(w.var((1, 2, 3), unbiased=False, keepdim=True)
                                                                           + second.eps)
        expected = F.conv2d(F.relu(first(x)), standardised * second.gain * scale2, second.bias)
        assert torch.allclose(model(x), expected, atol=1e-5)


def test_res2net_chunks_lose_the_same_positions_and_the_output_is_unchanged():
    """Position 2 of every chunk zeroed (and the chunk convs added into the next chunk): cut, exact."""
    from timm.models.res2net import Bottle2neck

    torch.manual_seed(0)
    block = Bottle2neck(32, 8, base_width=64, scale=4, norm_layer=nn.BatchNorm2d).eval()  # chunks of 8
    gone = [2, 10, 18, 26]
    with torch.no_grad():
        block.conv1.weight[gone] = 0
        for conv in block.convs[:2]:  # their outputs are added to chunks 1 and 2
            conv.weight[2] = 0
    x = torch.randn(2, 32, 8, 8)
    with torch.no_grad():
        before = block(x)
    _cut(block, [(block.conv1, gone)], x)
    assert block.width == 7 and block.conv1.out_channels == 28 and block.conv3.in_channels == 29
    with torch.no_grad():
        assert torch.allclose(block(x), before, atol=1e-5)


def test_selective_kernel_cuts_split_halves_and_per_path_selections_together():
    """Input channels 1 and 9 (one per half) and output channel 3 (both paths) zeroed, cut: exact.

    The attention's `fc_select` must lose rows 3 and 8 + 3 (channel 3's weight for each path).
    """
    from timm.layers.selective_kernel import SelectiveKernel

    torch.manual_seed(0)
    stem, head = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(8, 4, 1)
    sk = SelectiveKernel(16, 8, rd_channels=4, split_input=True)
    model = nn.Sequential(stem, nn.ReLU(), sk, head).eval()
    with torch.no_grad():
        stem.weight[[1, 9]] = 0
        stem.bias[[1, 9]] = 0
        for path in sk.paths:
            path.conv.weight[3] = 0
    select = sk.attn.fc_select.weight.detach().clone()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        before = model(x)
    _cut(model, [(stem, [1, 9]), (sk.paths[0].conv, [3])], x)
    assert sk.in_channels == 14 and [p.conv.in_channels for p in sk.paths] == [7, 7] and sk.out_channels == 7
    keep = [i for i in range(16) if i not in (3, 11)]
    assert torch.equal(sk.attn.fc_select.weight, select[keep])
    with torch.no_grad():
        assert torch.allclose(model(x), before, atol=1e-5)
