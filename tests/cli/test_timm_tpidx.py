"""timm models Torch-Pruning failed on with an IndexError inside a group (`pruning/timm_tpidx.py`).

Before: FastViT and PiT (`index 1 is out of bounds for dimension 0 with size 1`: a depthwise
conv with channel multiplier), TinyViT and EfficientFormer (`index 320/1024 is out of bounds`:
a fused qkv split per head into key/key/value dims) were refused with that error. Now they
prune (MACs drop, the file reloads bit-identically in a fresh process), keeping what cannot be
cut consistently: the multiplier convs and the widths they join, and those attentions' inner widths.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from tests.conftest import TINY_DATA, pruned_json, reload_in_fresh_process, untrained


def _prune_tiny(model: str, tmp_path, size: int = 32):
    base = untrained(model, tmp_path / "base.safetensors", f"{TINY_DATA},size={size}")
    out = tmp_path / "p.safetensors"
    return out, pruned_json(base, out, "--method", "l1", "--ratio", "0.3")


@pytest.mark.parametrize(("model", "size", "most"), [
    ("fastvit_tiny_test", 32, 0.95), ("pit_tiny_test", 32, 0.9), ("tiny_vit_tiny_test", 32, 0.9),
    ("efficientformer_tiny_test", 224, 0.9),
])
def test_family_prunes_and_reloads(model, size, most, tmp_path):
    """MACs drop (as counted on the reloaded file too: no marker class left to hide a layer from the
    counter); the file reloads bit-identically in a fresh process. FastViT keeps its stage widths
    (each feeds a channel-multiplier conv), so only its MLP hidden widths shrink."""
    from prunecli.io import checkpoint as ckpt
    from prunecli.profiling.counts import count

    out, result = _prune_tiny(model, tmp_path, size)
    assert result["macs_after"] < most * result["macs_before"]
    assert count(ckpt.load(out).model, (3, size, size)).macs == result["macs_after"]
    here, fresh = reload_in_fresh_process(out, tmp_path)
    assert torch.equal(here, fresh) and here.shape == (2, 4)


def _pruned(model: str):
    from prunecli.methods import get_method
    from prunecli.models import build_model
    from prunecli.pruning.structured import PrunePlan, prune

    net, entry, _ = build_model(model, num_classes=4)
    before = {n: (m.in_channels, m.out_channels, m.groups) for n, m in net.named_modules() if isinstance(m, nn.Conv2d)}
    pruned, outcome = prune(net.eval(), entry.input_shape, get_method("l1", kind="structured").importance,
                            PrunePlan(ratio=0.3), entry.protected)
    with torch.no_grad():
        assert pruned(torch.randn(2, *entry.input_shape)).shape == (2, 4)
    return before, pruned, outcome


def test_pit_keeps_multiplier_conv_and_stage_widths_prunes_inside_blocks():
    """PiT's pooling conv (8 → 16 channels, groups 8) and both stage widths stay; heads and MLPs shrink."""
    before, model, outcome = _pruned("pit_tiny_test")
    conv = model.transformers[1].pool.conv
    assert (conv.in_channels, conv.out_channels, conv.groups) == before["transformers.1.pool.conv"] == (8, 16, 8)
    assert model.patch_embed.conv.out_channels == 8 and model.head.in_features == 16
    blocks = [b for t in model.transformers for b in t.blocks]
    assert all(b.norm1.normalized_shape in ((8,), (16,)) for b in blocks)
    assert any(b.mlp.fc1.out_features < 2 * b.mlp.fc1.in_features for b in blocks)
    assert any(b.attn.qkv.out_features < 3 * b.attn.qkv.in_features for b in blocks)
    assert outcome.after.macs < outcome.before.macs


def test_fastvit_keeps_multiplier_convs_and_attention_width():
    """Patch-embedding and final convs (channel multiplier 2) keep their shapes; MLP hidden widths shrink."""
    from prunecli.pruning.timm_tpidx import is_multiplier_conv

    before, model, _ = _pruned("fastvit_tiny_test")
    multipliers = {n: (m.in_channels, m.out_channels, m.groups) for n, m in model.named_modules()
                   if is_multiplier_conv(m)}
    assert multipliers and all(before[n] == shape for n, shape in multipliers.items())
    attn = model.stages[1].blocks[0].token_mixer
    assert attn.qkv.out_features == 3 * attn.qkv.in_features == 96 and attn.proj.out_features == 32
    assert model.stages[0].blocks[0].mlp.fc1.out_channels < 32


def test_tiny_vit_attention_prunes_value_dims_and_embedding():
    """Heads and key dims stay; every head loses the same value dims; the bias tables keep their heads."""
    _, model, outcome = _pruned("tiny_vit_tiny_test")
    for stage, dim, heads in zip(model.stages[1:], (16, 24, 32), (2, 3, 4)):
        attn = stage.blocks[0].attn  # head dim dim // heads: as many key as value dims (attn_ratio 1)
        assert attn.num_heads == heads and attn.key_dim == dim // heads and attn.val_dim < attn.key_dim
        assert attn.qkv.out_features == heads * (attn.val_dim + 2 * attn.key_dim)
        assert attn.proj.in_features == attn.out_dim == heads * attn.val_dim
        assert attn.attention_biases.shape[0] == heads
        assert attn.qkv.in_features == attn.proj.out_features == attn.norm.normalized_shape[0] < dim
    val_dim = model.stages[1].blocks[0].attn.val_dim
    rows = {r["name"]: r for r in outcome.layers}["stages.1.blocks.0.attn.qkv"]
    assert rows["channels_before"] == 2 * 24 and len(rows["removed"]) == 2 * (8 - val_dim)
    assert all(r % 24 >= 16 for r in rows["removed"])  # value rows only (each head: 8 q, 8 k, 8 v)


class _AttnNet(nn.Module):
    """Embedding → residual EfficientFormer attention → classifier, over 4 tokens of 6 features."""

    def __init__(self):
        super().__init__()
        from timm.models.efficientformer import Attention

        self.inp = nn.Linear(6, 16)
        self.attn = Attention(dim=16, key_dim=4, num_heads=2, attn_ratio=2, resolution=2)
        self.out = nn.Linear(16, 5)

    def forward(self, x):
        x = self.inp(x)
        return self.out(x + self.attn(x)).mean(1)


def _attn_net():
    torch.manual_seed(0)
    net = _AttnNet().eval()
    with torch.no_grad():
        net.attn.attention_biases.normal_()
    return net


def test_efficientformer_attention_cut_is_exact():
    """Zero 4 embedding channels and value dims 2, 5 of both heads; prune 25 %: exactly those go.

    A mis-mapping (qkv rows tied 1:1 to proj inputs, or the bias table pulled into the group,
    as Torch-Pruning did before) cuts other rows or fails; the output must not change.
    """
    from prunecli.methods import get_method
    from prunecli.pruning.structured import PrunePlan, prune

    net, gone, dims = _attn_net(), [1, 6, 9, 14], [2, 5]
    with torch.no_grad():
        for m in (net.inp, net.attn.proj):
            m.weight[gone] = 0
            m.bias[gone] = 0
        net.attn.qkv.weight[:, gone] = 0
        net.out.weight[:, gone] = 0
        values = [h * 8 + j for h in range(2) for j in dims]
        rows = [h * 16 + 8 + j for h in range(2) for j in dims]  # per head: 4 q, 4 k, 8 v rows
        net.attn.qkv.weight[rows] = 0
        net.attn.qkv.bias[rows] = 0
        net.attn.proj.weight[:, values] = 0
    x = torch.randn(3, 4, 6)
    with torch.no_grad():
        expected = net(x)
    pruned, outcome = prune(net, (4, 6), get_method("l1", kind="structured").importance, PrunePlan(ratio=0.25), ("out",))
    removed = {r["name"]: r["removed"] for r in outcome.layers}
    assert removed["inp"] == gone and removed["attn.proj"] == gone and removed["attn.qkv"] == rows
    attn = pruned.attn
    assert (attn.num_heads, attn.key_dim, attn.val_dim, attn.val_attn_dim) == (2, 4, 6, 12)
    assert attn.qkv.out_features == 2 * (4 + 4 + 6) and attn.proj.in_features == 12
    with torch.no_grad():
        assert torch.allclose(pruned(x), expected, atol=1e-6)


def test_split_head_pruner_removes_a_whole_head_with_its_bias_row():
    """All value dims of head 1 cut: its q, k, v rows and bias row go, num_heads drops (exact when
    the head's proj columns were zero)."""
    import torch_pruning as tp

    from prunecli.pruning.extensions import collect

    net = _attn_net()
    with torch.no_grad():
        net.attn.proj.weight[:, 8:] = 0
    x = torch.randn(3, 4, 6)
    with torch.no_grad():
        expected = net(x)
    custom, unwrapped, ignored, heads, *_ = collect(net, [])
    graph = tp.DependencyGraph().build_dependency(net, example_inputs=torch.randn(1, 4, 6), customized_pruners=custom,
                                                  unwrapped_parameters=unwrapped, ignored_params=ignored)
    bias_head0 = net.attn.attention_biases[0].clone()
    graph.get_pruning_group(net.attn.proj, tp.prune_linear_in_channels, list(range(8, 16))).prune()
    attn = net.attn
    assert (attn.num_heads, attn.val_dim, attn.val_attn_dim, attn.key_attn_dim) == (1, 8, 8, 4)
    assert attn.qkv.out_features == 16 and torch.equal(attn.attention_biases[0], bias_head0)
    with torch.no_grad():
        assert torch.allclose(net(x), expected, atol=1e-6)
