"""Attentions whose inner width is tied to the embedding width (`pruning/timm_attention_width.py`).

PVT-v2, CAFormer (MetaFormer) and CoaT were refused before (issue 12): their forward reshapes
q/k/v with the input width, so Torch-Pruning's separate inner-width group broke them. Now
they prune with the residual stream (MACs drop, every head keeps the same width, the file
reloads bit-identically in a fresh process); the module tests zero the channels a cut
removes and check the pruned attention computes exactly what the original did.
"""

from __future__ import annotations

import json

import pytest
import torch

from prunecli.io import checkpoint as ckpt
from prunecli.pruning.timm_attention_width import FusedQKVPruner, PvtAttentionPruner, SeparateQKVPruner
from tests.conftest import pruned_json, reload_in_fresh_process, untrained

DATA = "synthetic:n=8,val=4,classes=4"


def _tied(model):
    from timm.models import cait, coat, metaformer, pvt_v2, xcit

    kinds = (pvt_v2.Attention, metaformer.Attention, coat.FactorAttnConvRelPosEnc, xcit.XCA, cait.ClassAttn)
    return [m for m in model.modules() if isinstance(m, kinds)]


@pytest.mark.parametrize("model", ["pvt_v2_tiny_test", "caformer_tiny_test", "coat_lite_tiny_test", "xcit_tiny_test"])
def test_tied_attention_prunes_with_the_residual_and_reloads(model, tmp_path):
    base, out = untrained(model, tmp_path / "b.safetensors", DATA), tmp_path / "p.safetensors"
    result = pruned_json(base, out, "--method", "l1", "--ratio", "0.3")
    assert result["macs_after"] < 0.9 * result["macs_before"]
    pruned, original = _tied(ckpt.load(out).model), _tied(ckpt.load(base).model)
    assert any(a.proj.in_features < b.proj.in_features for a, b in zip(pruned, original))
    for a in pruned:  # inner width = input width = output width, split evenly into the same heads
        width = a.proj.out_features
        inner = a.q.out_features if hasattr(a, "q") else a.qkv.out_features // 3
        assert a.proj.in_features == inner == width and width % a.num_heads == 0
        if hasattr(a, "head_dim"):
            assert a.head_dim * a.num_heads == width and a.scale == a.head_dim**-0.5
    layers = {r["name"]: r for r in json.loads(out.with_name("p.masks.json").read_text())["layers"]}
    unpruned = ckpt.load(base).model
    names = {m: n for n, m in unpruned.named_modules()}
    cut = [(m, layers[names[m] + ".proj"]) for m in _tied(unpruned) if names[m] + ".proj" in layers]
    assert cut  # the sidecar lists the leaves' inner layers too, each head cut alike
    for m, proj in cut:
        assert len(proj["kept"]) % m.num_heads == 0 and proj["channels_before"] == m.proj.out_features
    here, fresh = reload_in_fresh_process(out, tmp_path)
    assert torch.equal(here, fresh)


def _zero_rows(linear, idxs):
    linear.weight.data[idxs] = 0
    if linear.bias is not None:
        linear.bias.data[idxs] = 0


def _check_zeroed_cut(module, pruner, idxs, width, run, zero):
    """Zero what channels `idxs` feed and read, prune exactly them: the kept outputs are unchanged."""
    torch.manual_seed(0)
    zero(module)
    for layer in module.modules():  # the input channels `idxs` are read by no one
        if isinstance(layer, torch.nn.Linear):
            layer.weight.data[:, idxs] = 0
    scale = getattr(module, "scale", None)
    x = torch.randn(2, 17, width)
    with torch.no_grad():
        want = run(module, x)[..., [i for i in range(width) if i not in idxs]]
        pruner.prune_out_channels(module, idxs)
        if scale is not None:
            module.scale = scale  # only to compare: the pruned model uses the new head_dim ** -0.5
        keep = [i for i in range(width) if i not in idxs]
        got = run(module, x[..., keep])
    assert got.shape == want.shape and torch.allclose(got, want, atol=1e-5)


IDXS = [1, 3, 9, 11]  # in-head positions 1 and 3 of both 8-wide heads (width 16, 2 heads)


def test_pvt_attention_cut_matches_zeroed_channels():
    from timm.models.pvt_v2 import Attention

    m = Attention(16, num_heads=2, sr_ratio=1).eval()
    m.fused_attn = False
    rep = IDXS + [i + 16 for i in IDXS]

    def zero(a):
        _zero_rows(a.q, IDXS)
        _zero_rows(a.kv, rep)

    _check_zeroed_cut(m, PvtAttentionPruner(), IDXS, 16, lambda a, x: a(x[:, :16], (4, 4)), zero)
    assert (m.dim, m.head_dim, m.kv.out_features) == (12, 6, 24)


def test_pvt_attention_with_spatial_reduction_equals_a_smaller_attention_with_the_kept_weights():
    """The reduction conv and its LayerNorm are cut at the same channels (a hand-built reference)."""
    from timm.models.pvt_v2 import Attention

    torch.manual_seed(0)
    m = Attention(16, num_heads=2, sr_ratio=2).eval()
    keep = [i for i in range(16) if i not in IDXS]
    ref = Attention(12, num_heads=2, sr_ratio=2).eval()
    sd = m.state_dict()
    ref.load_state_dict({
        "q.weight": sd["q.weight"][keep][:, keep], "q.bias": sd["q.bias"][keep],
        "kv.weight": sd["kv.weight"][keep + [i + 16 for i in keep]][:, keep],
        "kv.bias": sd["kv.bias"][keep + [i + 16 for i in keep]],
        "sr.weight": sd["sr.weight"][keep][:, keep], "sr.bias": sd["sr.bias"][keep],
        "norm.weight": sd["norm.weight"][keep], "norm.bias": sd["norm.bias"][keep],
        "proj.weight": sd["proj.weight"][keep][:, keep], "proj.bias": sd["proj.bias"][keep]})
    PvtAttentionPruner().prune_out_channels(m, IDXS)
    x = torch.randn(2, 16, 12)
    with torch.no_grad():
        assert torch.allclose(m(x, (4, 4)), ref(x, (4, 4)), atol=1e-6)


def test_metaformer_attention_cut_matches_zeroed_channels():
    from timm.models.metaformer import Attention

    m = Attention(16, head_dim=8).eval()
    m.fused_attn = False
    _check_zeroed_cut(m, FusedQKVPruner(), IDXS, 16, lambda a, x: a(x),
                      lambda a: _zero_rows(a.qkv, [i + k * 16 for k in range(3) for i in IDXS]))
    assert (m.num_heads, m.head_dim, m.attention_dim) == (2, 6, 12)


def test_coat_attention_and_position_encoding_cut_matches_zeroed_channels():
    """CoaT's depthwise position-encoding convs (two head groups, 3×3 and 5×5) lose the same channels."""
    from timm.models.coat import ConvRelPosEnc, FactorAttnConvRelPosEnc

    crpe = ConvRelPosEnc(head_chs=8, num_heads=2, window={3: 1, 5: 1})
    m = FactorAttnConvRelPosEnc(16, num_heads=2, qkv_bias=True, shared_crpe=crpe).eval()

    def zero(a):
        _zero_rows(a.qkv, [i + k * 16 for k in range(3) for i in IDXS])
        for conv, offset in zip(a.crpe.conv_list, (0, 8)):
            conv.bias.data[[i - offset for i in IDXS if offset <= i < offset + 8]] = 0

    _check_zeroed_cut(m, FusedQKVPruner(), IDXS, 16, lambda a, x: a(x, (4, 4)), zero)
    assert crpe.channel_splits == [6, 6] and [c.out_channels for c in crpe.conv_list] == [6, 6]


def test_class_attention_cut_matches_zeroed_channels():
    """CaiT's / XCiT's class attention: separate q, k, v projections, heads of `C // num_heads`."""
    from timm.models.cait import ClassAttn

    m = ClassAttn(16, num_heads=2, qkv_bias=True).eval()
    m.fused_attn = False
    _check_zeroed_cut(m, SeparateQKVPruner(), IDXS, 16, lambda a, x: a(x),
                      lambda a: [_zero_rows(lin, IDXS) for lin in (a.q, a.k, a.v)])


def test_xca_cut_equals_a_smaller_xca_with_the_kept_weights():
    """XCiT's transposed attention mixes the channels of a head (a softmax over them), so a removed
    channel is not a zeroed one: the reference is an XCA of the kept width with the kept weights."""
    from timm.models.xcit import XCA

    torch.manual_seed(0)
    m, ref = XCA(16, num_heads=2, qkv_bias=True).eval(), XCA(12, num_heads=2, qkv_bias=True).eval()
    m.temperature.data = torch.tensor([0.5, 2.0]).view(2, 1, 1)
    keep = [i for i in range(16) if i not in IDXS]
    rows = [i + k * 16 for k in range(3) for i in keep]
    sd = m.state_dict()
    ref.load_state_dict({"temperature": sd["temperature"], "qkv.weight": sd["qkv.weight"][rows][:, keep],
                         "qkv.bias": sd["qkv.bias"][rows], "proj.weight": sd["proj.weight"][keep][:, keep],
                         "proj.bias": sd["proj.bias"][keep]})
    FusedQKVPruner().prune_out_channels(m, IDXS)
    x = torch.randn(2, 9, 12)
    with torch.no_grad():
        assert torch.allclose(m(x), ref(x), atol=1e-6)


def test_a_cut_that_leaves_heads_unequal_is_refused():
    from timm.models.metaformer import Attention

    with pytest.raises(RuntimeError, match="same number from every head"):
        FusedQKVPruner().prune_out_channels(Attention(16, head_dim=8), [0, 1])


def test_ignoring_a_layer_inside_a_tied_attention_protects_its_width():
    """Torch-Pruning never looks inside the leaf, so `--ignore ...attn.q` must keep the whole width."""
    import torch_pruning as tp

    from prunecli.models.timm_zoo import pvt_v2_tiny_test
    from prunecli.pruning.structured import PrunePlan, prune_at

    torch.manual_seed(0)
    model = pvt_v2_tiny_test(4).eval()
    prune_at(model, (3, 32, 32), tp.importance.GroupMagnitudeImportance(p=1), 0.3,
             PrunePlan(ignore=["stages.1.blocks.0.attn.q"]), ("head",))
    assert model.stages[1].blocks[0].attn.q.weight.shape == (16, 16)
    assert model.stages[3].blocks[0].attn.q.weight.shape == (20, 20)  # 4 heads of 8 → 4 of 5
