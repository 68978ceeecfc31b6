"""`prune --method isomorphic` (Fang et al., ECCV 2024) on tiny timm models."""

from __future__ import annotations

import json

import pytest
import torch

from prunecli.io import checkpoint as ckpt
from prunecli.models import build_model
from prunecli.pruning.structured import PrunePlan, prune_at
from tests.conftest import reload_in_fresh_process, run_cli, run_main

DATA = "synthetic:n=32,val=16,classes=4"


def _vit_with_uniform_mlps():
    """A ViT whose MLP hidden channels all score within ±1% of each other (after TP's per-group
    mean normalisation), while the other groups' channels spread widely."""
    torch.manual_seed(0)
    model, _, _ = build_model("vit_tiny_test", num_classes=4)
    with torch.no_grad():
        for block in model.blocks:
            scale = 1 + 0.01 * torch.rand(block.mlp.fc1.out_features, generator=torch.Generator().manual_seed(1))
            block.mlp.fc1.weight.copy_(0.05 * scale.unsqueeze(1).expand_as(block.mlp.fc1.weight))
            block.mlp.fc2.weight.copy_(0.05 * scale.unsqueeze(0).expand_as(block.mlp.fc2.weight))
    return model


def _l1():
    import torch_pruning as tp

    return tp.importance.GroupMagnitudeImportance(p=1)


def test_isomorphic_scopes_only_compete_with_their_own_kind():
    hidden = _vit_with_uniform_mlps().blocks[0].mlp.fc1.out_features
    plain = _vit_with_uniform_mlps()
    prune_at(plain, (3, 32, 32), _l1(), 0.15, PrunePlan(global_pruning=True), ("head",))
    iso = _vit_with_uniform_mlps()
    prune_at(iso, (3, 32, 32), _l1(), 0.15, PrunePlan(isomorphic=True), ("head",))
    # Plain global ranking mostly spares the near-uniform MLP channels (the spread-out groups hold
    # the lowest normalised scores); isomorphic ranking takes exactly 15% from the MLP scope, as
    # from every other scope.
    plain_mlp = sum(b.mlp.fc1.out_features for b in plain.blocks)
    assert plain_mlp > int(2 * hidden * 0.85) + 10
    iso_mlp = sum(b.mlp.fc1.out_features for b in iso.blocks)
    assert abs(iso_mlp - int(2 * hidden * 0.85)) <= 2  # ties at the threshold may take one more per layer
    assert iso.patch_embed.proj.out_channels == int(64 * 0.85)  # the embedding scope alone: exactly p
    assert plain.patch_embed.proj.out_channels < int(64 * 0.85)


class _Bases(dict):
    """Model name → a checkpoint trained 1 epoch on DATA, trained on first use (the slow-marked
    MobileNetV3 case costs nothing in the default suite)."""

    def __init__(self, folder):
        super().__init__()
        self.folder = folder

    def __missing__(self, model: str):
        path = self.folder / f"{model}.safetensors"
        r = run_cli("train", "--model", model, "--data", DATA, "--epochs", "1", "--device", "cpu", "-o", path)
        assert r.exit_code == 0, r.output + repr(r.exception)
        self[model] = path
        return path


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    return _Bases(tmp_path_factory.mktemp("iso"))


@pytest.mark.parametrize("model", ["vit_tiny_test", "convnext_tiny_test",
                                   pytest.param("timm:mobilenetv3_small_050", marks=pytest.mark.slow)])
def test_target_macs_within_two_percent_with_taylor(model, bases, tmp_path):
    out = tmp_path / "p.safetensors"
    r = run_cli("prune", bases[model], "--method", "isomorphic", "--importance", "taylor", "--target-macs", "0.5x",
                "--calib-data", DATA, "--calib-batches", "2", "-o", out, "--json")
    assert r.exit_code == 0, r.output + repr(r.exception)
    res = json.loads(r.stdout)
    target = 0.5 * res["macs_before"]
    assert abs(res["macs_after"] - target) / target <= 0.02
    header = ckpt.read_header(out.read_bytes())
    assert header.lineage[-1].options["importance"] == "taylor"


# Per-head scale of the attention weights in block 0 and block 1. After Torch-Pruning's per-group
# mean normalisation both layers' head scores average 1, but block 0 holds three weak heads and
# one strong one while block 1's four are nearly equal: the 4 lowest of all 8 are block 0's heads
# 0, 1, 2 and block 1's head 0 (3 + 1), where ranking within each layer takes 2 + 2.
HEAD_SCALES = ((0.1, 0.2, 0.3, 3.4), (0.9, 0.95, 1.05, 1.1))


def _vit_with_crafted_heads(path, tmp_path):
    """The trained vit_tiny_test with its qkv/proj weights set to HEAD_SCALES[layer][head] · b[dim]
    (b rising with the in-head dim, so head dims have distinct scores too), saved as a checkpoint."""
    loaded = ckpt.load(path)
    model = loaded.model
    with torch.no_grad():
        for block, scales in zip(model.blocks, HEAD_SCALES, strict=True):
            attn = block.attn
            head_dim = attn.head_dim
            per_dim = 1 + 0.1 * torch.arange(head_dim)
            channel = (torch.tensor(scales).unsqueeze(1) * per_dim).flatten()  # (heads · head_dim,)
            rows = channel.repeat(3)  # q, k and v rows of the same head and dim
            attn.qkv.weight.copy_(0.05 * rows.unsqueeze(1).expand_as(attn.qkv.weight))
            attn.qkv.bias.zero_()
            attn.proj.weight.copy_(0.05 * channel.unsqueeze(0).expand_as(attn.proj.weight))
    out = tmp_path / "crafted.safetensors"
    ckpt.save(model, out, loaded.header)
    return out


def test_heads_ranked_across_layers_and_reload(bases, tmp_path):
    """--head-ratio 0.5 removes the 4 globally weakest of 2×4 heads: 3 from block 0, 1 from block 1.

    Ranking within each layer (TP's local pruning, or global_pruning=False) removes 2 + 2 here.
    """
    src = _vit_with_crafted_heads(bases["vit_tiny_test"], tmp_path)
    out = tmp_path / "h.safetensors"
    r = run_cli("prune", src, "--method", "isomorphic", "--importance", "l1", "--ratio", "0.25",
                "--head-ratio", "0.5", "--head-dim-ratio", "0.25", "-o", out, "--json")
    assert r.exit_code == 0, r.output + repr(r.exception)
    model = ckpt.load(out).model
    assert [b.attn.num_heads for b in model.blocks] == [1, 3]
    assert [b.attn.head_dim for b in model.blocks] == [12, 12]  # the 4 weakest of 16 dims (own scope, p_d=0.25)
    for b in model.blocks:
        assert b.attn.qkv.out_features == 3 * b.attn.num_heads * b.attn.head_dim
        assert b.attn.proj.in_features == b.attn.num_heads * b.attn.head_dim
    masks = {layer["name"]: layer for layer in json.loads((tmp_path / "h.masks.json").read_text())["layers"]}
    # block 0 keeps its strong head 3, block 1 drops its weakest head 0; both keep in-head dims 4..15
    assert masks["blocks.0.attn.qkv"]["kept"] == [q * 64 + 3 * 16 + d for q in range(3) for d in range(4, 16)]
    assert masks["blocks.1.attn.qkv"]["kept"] == [q * 64 + h * 16 + d for q in range(3) for h in (1, 2, 3)
                                                  for d in range(4, 16)]
    here, fresh = reload_in_fresh_process(out, tmp_path)
    assert torch.equal(here, fresh)


def test_importance_must_be_a_criterion(bases, tmp_path, capsys):
    code = run_main("prune", bases["vit_tiny_test"], "--method", "isomorphic", "--importance", "similarity",
                    "--ratio", "0.3", "-o", tmp_path / "o.safetensors")
    assert code == 2 and "--importance" in capsys.readouterr().err


def test_hard_distillation_of_a_pruned_deit_with_distillation_token(tmp_path):
    """Prune a DeiT with a dist token, fine-tune its dist head on the teacher (hard), reload."""
    base, pruned, ft = (tmp_path / f"{n}.safetensors" for n in ("base", "pruned", "ft"))
    assert run_cli("train", "--model", "deit_distilled_tiny_test", "--data", DATA, "--epochs", "1", "--device", "cpu",
                   "-o", base).exit_code == 0
    r = run_cli("prune", base, "--method", "isomorphic", "--importance", "l1", "--ratio", "0.3", "-o", pruned)
    assert r.exit_code == 0, r.output + repr(r.exception)
    assert ckpt.load(pruned).model.head_dist.out_features == 4  # both heads protected
    r = run_cli("finetune", pruned, "--data", DATA, "--epochs", "1", "--teacher", base, "--distill", "hard",
                "--optimizer", "adamw", "--lr", "5e-4", "--label-smoothing", "0.1", "--warmup-epochs", "1",
                "--device", "cpu", "-o", ft, "--json")
    assert r.exit_code == 0, r.output + repr(r.exception)
    header = ckpt.read_header(ft.read_bytes())
    assert header.lineage[-1].options["distill"] == "hard" and header.structure
    model = ckpt.load(ft).model
    assert not model.distilled_training  # saved and reloaded for inference: heads averaged
    here, fresh = reload_in_fresh_process(ft, tmp_path)
    assert torch.equal(here, fresh)


def test_hard_distillation_loss():
    from prunecli.engine.loop import hard_distill_loss

    teacher = torch.tensor([[0.0, 5.0], [3.0, 0.0]])
    y = torch.tensor([0, 0])
    cls = torch.tensor([[9.0, -9.0], [9.0, -9.0]])
    dist = torch.tensor([[-9.0, 9.0], [9.0, -9.0]])
    assert hard_distill_loss((cls, dist), teacher, y, 0.5).item() < 1e-6  # each head matches its target
    assert hard_distill_loss(cls, teacher, y, 1.0).item() > 5  # plain student: dist term on the same logits


def test_evaluate_uses_the_timm_models_own_preprocessing(bases, tmp_path):
    """On an image folder a timm model is evaluated with its data config (bicubic, crop_pct,
    mean/std) at the checkpoint's input size; flags override it."""
    from PIL import Image

    rng = torch.Generator().manual_seed(0)
    for split in ("train", "val"):
        for c in range(4):
            folder = tmp_path / "imgs" / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(2):
                pixels = torch.randint(0, 256, (41, 47, 3), generator=rng, dtype=torch.uint8).numpy()
                Image.fromarray(pixels).save(folder / f"{i}.png")
    spec = f"imagefolder:{tmp_path / 'imgs'}?size=32"
    r = run_cli("evaluate", bases["vit_tiny_test"], "--data", spec, "--device", "cpu", "--json")
    assert r.exit_code == 0, r.output + repr(r.exception)
    result = json.loads(r.stdout)
    assert result["samples"] == 8
    assert result["preprocess"]["interpolation"] == "bicubic" and result["preprocess"]["input_size"] == [3, 32, 32]
    r = run_cli("evaluate", bases["vit_tiny_test"], "--data", spec, "--device", "cpu", "--json",
                "--interpolation", "bilinear", "--crop-pct", "1.0")
    assert json.loads(r.stdout)["preprocess"]["interpolation"] == "bilinear"
    r = run_cli("evaluate", bases["vit_tiny_test"], "--data", DATA, "--device", "cpu", "--json")
    assert json.loads(r.stdout)["preprocess"] is None  # in-memory tensors are already at the model's size


def test_batchnorm_resnet_scopes_with_taylor_on_digits(tmp_path):
    """CIFAR ResNet-20 (BatchNorm, 1×1 projection shortcuts), Taylor scores from digits batches.

    Torch-Pruning's dependency tags give four scopes: each stage's residual channels alone (the
    stem/shortcut + every conv2 of the stage), and one scope holding all nine conv1→BN→conv2
    groups although they are 16, 32 and 64 wide. A singleton scope loses exactly p; the shared
    scope loses p of its 336 channels in total, spread unevenly over its layers by one global
    ranking. Half the channels of layer3.2.conv1 are switched off (BN γ = β = 0: zero output and
    zero gradient, so a Taylor score of 0 in BN's train or eval mode); ranked across the scope they
    all go, where per-layer pruning would take 16 of 64 from that layer. Plain global ranking
    would let the residual groups compete with the conv1 groups.
    """
    base, out = tmp_path / "r20.safetensors", tmp_path / "p.safetensors"
    assert run_cli("train", "--model", "resnet20", "--data", "digits", "--epochs", "0", "-o", base).exit_code == 0
    loaded = ckpt.load(base)
    dead = list(range(0, 64, 2))
    with torch.no_grad():
        loaded.model.layer3[2].bn1.weight[dead] = 0
        loaded.model.layer3[2].bn1.bias[dead] = 0
    ckpt.save(loaded.model, base, loaded.header)
    r = run_cli("prune", base, "--method", "isomorphic", "--importance", "taylor", "--ratio", "0.25",
                "--round-to", "2", "--calib-data", "digits", "--calib-batches", "2", "--batch-size", "32",
                "-o", out, "--json")
    assert r.exit_code == 0, r.output + repr(r.exception)
    res = json.loads(r.stdout)
    layers = {layer["name"]: layer for layer in json.loads((tmp_path / "p.masks.json").read_text())["layers"]}
    residual = {"conv1": 16, "layer2.0.shortcut.0": 32, "layer3.0.shortcut.0": 64}
    residual.update({f"layer{s}.{b}.conv2": w for s, w in ((1, 16), (2, 32), (3, 64)) for b in range(3)})
    for name, width in residual.items():
        assert layers[name]["channels_after"] == width * 3 // 4, name  # alone in its scope: exactly p
    inner = [layers[f"layer{s}.{b}.conv1"] for s in (1, 2, 3) for b in range(3)]
    total = sum(layer["channels_before"] for layer in inner)
    assert total == 336
    removed = sum(layer["channels_before"] - layer["channels_after"] for layer in inner)
    # ⌊336·(1−p)⌋ kept; round_to 2 then rounds each layer's remainder down to even (≤ 1 more each)
    assert total - int(total * 0.75) <= removed <= total - int(total * 0.75) + len(inner)
    assert all(layer["channels_after"] % 2 == 0 for layer in inner)
    assert set(dead) <= set(layers["layer3.2.conv1"]["removed"])  # all 32, not 16: ranked across the scope
    assert len({layer["channels_after"] / layer["channels_before"] for layer in inner}) > 1
    assert res["macs_after"] < 0.75 * res["macs_before"] and res["params_after"] < res["params_before"]
    model = ckpt.load(out).model
    assert model.layer3[2].conv1.out_channels == layers["layer3.2.conv1"]["channels_after"]
    here, fresh = reload_in_fresh_process(out, tmp_path)
    assert torch.equal(here, fresh)


@pytest.mark.slow
def test_timm_resnet50_to_half_macs(tmp_path):
    base, out = tmp_path / "r50.safetensors", tmp_path / "p.safetensors"
    data = "synthetic:size=64,classes=10,n=16,val=8"
    assert run_cli("train", "--model", "timm:resnet50", "--data", data, "--epochs", "0", "-o", base).exit_code == 0
    r = run_cli("prune", base, "--method", "isomorphic", "--importance", "taylor", "--calib-data", data,
                "--calib-batches", "1", "--batch-size", "8", "--target-macs", "0.5x", "-o", out, "--json")
    assert r.exit_code == 0, r.output + repr(r.exception)
    res = json.loads(r.stdout)
    assert abs(res["macs_after"] - 0.5 * res["macs_before"]) <= 0.02 * 0.5 * res["macs_before"]
    here, fresh = reload_in_fresh_process(out, tmp_path)
    assert torch.equal(here, fresh)


def _convnext_with_grads(depths=(1, 1, 4, 1)):
    from timm.models.convnext import ConvNeXt

    torch.manual_seed(0)
    model = ConvNeXt(depths=depths, dims=(8, 16, 32, 64), num_classes=4).eval()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    with torch.no_grad():  # block 2 of stage 2 gets the smallest |p·grad|, block 0 the next smallest
        for i, scale in ((2, 1e-3), (0, 1e-2)):
            for p in model.stages[2].blocks[i].parameters():
                p.mul_(scale)
    return model


def test_remove_blocks_takes_the_lowest_taylor_scores_and_bypasses_them():
    from prunecli.pruning.blocks import block_score, remove_blocks

    model = _convnext_with_grads()
    scores = [block_score(b) for b in model.stages[2].blocks]
    gone = remove_blocks(model, "stages.2.blocks.*", 2, (3, 32, 32))
    assert [g["name"] for g in gone] == ["stages.2.blocks.2", "stages.2.blocks.0"]
    assert gone[0]["score"] == pytest.approx(min(scores))
    assert isinstance(model.stages[2].blocks[2], torch.nn.Identity)
    assert not isinstance(model.stages[2].blocks[1], torch.nn.Identity)
    reference = _convnext_with_grads()  # the same model run with the two blocks skipped by hand
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        h = reference.stages[1](reference.stages[0](reference.stem(x)))
        h = reference.stages[2].downsample(h)
        for i in (1, 3):
            h = reference.stages[2].blocks[i](h)
        expected = reference.forward_head(reference.norm_pre(reference.stages[3](h)))
        assert torch.allclose(model(x), expected, atol=1e-6)


def test_only_shape_preserving_blocks_can_be_removed():
    from prunecli.errors import UserError
    from prunecli.pruning.blocks import candidates, remove_blocks, shape_preserving

    model = _convnext_with_grads()
    names = candidates(model, "stages.*")
    assert names == ["stages.0", "stages.1", "stages.2", "stages.3"]
    assert shape_preserving(model, names, (3, 32, 32)) == ["stages.0"]  # the others downsample
    with pytest.raises(UserError, match="only 1 blocks"):
        remove_blocks(model, "stages.*", 2, (3, 32, 32))
    with pytest.raises(UserError, match="matches no module"):
        remove_blocks(model, "blocks.*", 1, (3, 32, 32))


def test_prune_with_block_removal_through_the_cli_reloads(bases, tmp_path):
    """Width search plus depth pruning (ConvNeXt-T-4.2G style) meets the MAC target; the removed
    block is recorded in the header and sidecar and stays removed in a fresh process."""
    out = tmp_path / "d.safetensors"
    r = run_cli("prune", bases["convnext_tiny_test"], "--method", "isomorphic", "--importance", "l1",
                "--target-macs", "0.5x", "--remove-blocks", "1", "--blocks", "stages.2.blocks.*",
                "--calib-data", DATA, "--calib-batches", "1", "-o", out, "--json")
    assert r.exit_code == 0, r.output + repr(r.exception)
    res = json.loads(r.stdout)
    assert res["removed_blocks"] == 1
    assert abs(res["macs_after"] - 0.5 * res["macs_before"]) <= 0.02 * 0.5 * res["macs_before"]
    assert ckpt.read_header(out.read_bytes()).removed_modules == ["stages.2.blocks.0"]
    masks = json.loads((tmp_path / "d.masks.json").read_text())
    assert masks["removed_blocks"][0]["name"] == "stages.2.blocks.0"
    here, fresh = reload_in_fresh_process(out, tmp_path)
    assert torch.equal(here, fresh)
    assert run_main("prune", bases["convnext_tiny_test"], "--method", "isomorphic", "--ratio", "0.2",
                    "--remove-blocks", "1", "-o", tmp_path / "x.safetensors") == 2  # --blocks missing
