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


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    folder = tmp_path_factory.mktemp("iso")
    out = {}
    for model in ("vit_tiny_test", "convnext_tiny_test", "timm:mobilenetv3_small_050"):
        path = folder / f"{model}.safetensors"
        r = run_cli("train", "--model", model, "--data", DATA, "--epochs", "1", "--device", "cpu", "-o", path)
        assert r.exit_code == 0, r.output + repr(r.exception)
        out[model] = path
    return out


@pytest.mark.parametrize("model", ["vit_tiny_test", "convnext_tiny_test", "timm:mobilenetv3_small_050"])
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


def test_heads_ranked_across_layers_and_reload(bases, tmp_path):
    out = tmp_path / "h.safetensors"
    r = run_cli("prune", bases["vit_tiny_test"], "--method", "isomorphic", "--importance", "l1", "--ratio", "0.25",
                "--head-ratio", "0.5", "-o", out, "--json")
    assert r.exit_code == 0, r.output + repr(r.exception)
    model = ckpt.load(out).model
    heads = [b.attn.num_heads for b in model.blocks]
    assert sum(heads) == 4  # half of the 2×4 heads, chosen globally
    for b in model.blocks:
        assert b.attn.qkv.out_features == 3 * b.attn.num_heads * b.attn.head_dim
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
