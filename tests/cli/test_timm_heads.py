"""EfficientFormerV2, Visformer, EfficientViT-MIT and EfficientViT-MSRA attentions (issue 12, topic `heads`).

On the real models the pruner's group build ended in a traceback after 376 s
(EfficientFormerV2) or ran past 380 s (Visformer, EfficientViT-MSRA); EfficientViT-MIT was
refused. Now EfficientFormerV2, Visformer and EfficientViT-MIT prune in seconds (embedding width, MLPs and convs; the attention's heads whole)
and reload bit-identically; EfficientViT-MSRA is refused in seconds with one line, and the
`--ignore` it suggests prunes and reloads."""

from __future__ import annotations

import time

import pytest
import torch

from prunecli.io import checkpoint as ckpt
from tests.conftest import pruned_json, reload_in_fresh_process, run_main, untrained

DATA = "synthetic:n=8,val=4,classes=4,size={}"


def _train(model: str, size: int, tmp_path):
    return untrained(model, tmp_path / "base.safetensors", DATA.format(size))


def _prune_and_reload(base, tmp_path, *extra) -> tuple[torch.nn.Module, torch.nn.Module]:
    out = tmp_path / "p.safetensors"
    res = pruned_json(base, out, "--method", "l1", "--ratio", "0.3", *extra)
    assert res["macs_after"] < 0.9 * res["macs_before"]
    here, fresh = reload_in_fresh_process(out, tmp_path)
    assert torch.equal(here, fresh) and here.shape == (2, 4)
    return ckpt.load(out).model, ckpt.load(base).model


def _outputs(model, cls_name: str) -> list[tuple]:
    """Output widths of the convs (LeViT: Linears) inside each `cls_name` attention that make its heads (not `proj`, which
    writes the residual stream, nor the depth-wise convs over its input, which follow it)."""
    return [(n, c.weight.shape[0]) for n, m in model.named_modules() if type(m).__name__ == cls_name
            for n, c in m.named_modules() if isinstance(c, (torch.nn.Conv2d, torch.nn.Linear))
            and not n.startswith(("proj", "stride_conv", "q.local"))]


@pytest.mark.parametrize("model,cls_name,size", [("efficientformerv2_tiny_test", "Attention2d", 64),
                                                 ("visformer_tiny_test", "Attention", 64),
                                                 ("efficientvit_mit_tiny_test", "LiteMLA", 32),
                                                 ("levit_tiny_test", "Attention", 64)])
def test_prunes_around_the_attention_heads_whole_and_reloads(model, cls_name, size, tmp_path):
    """Used to run for minutes and end in a traceback or a timeout (EfficientFormerV2, Visformer),
    or be refused (EfficientViT-MIT's LiteMLA, LeViT); now seconds."""
    start = time.monotonic()
    pruned, base = _prune_and_reload(_train(model, size, tmp_path), tmp_path)
    assert time.monotonic() - start < 150  # generous: 2 shared cores; unhelped it ran for minutes
    assert _outputs(pruned, cls_name) == _outputs(base, cls_name) != []  # heads and in-head widths kept

    def widths(m):  # what the attention's first layer reads: the embedding width
        return [getattr(c, "in_channels", None) or c.in_features for a in m.modules() if type(a).__name__ == cls_name
                for c in a.modules() if isinstance(c, (torch.nn.Conv2d, torch.nn.Linear))][:1]

    assert widths(pruned) < widths(base)  # the embedding width the attention reads was cut
    for a, b in zip(pruned.modules(), base.modules()):
        if type(a).__name__ == cls_name and hasattr(a, "attention_biases"):
            assert a.attention_biases.shape == b.attention_biases.shape
    if model == "visformer_tiny_test":  # (1, C, H, W) position embeddings: cut along C, never W
        assert all(getattr(pruned, f"pos_embed{i}").shape[2:] == getattr(base, f"pos_embed{i}").shape[2:]
                   for i in (1, 2, 3))
        assert pruned.pos_embed1.shape[1] < base.pos_embed1.shape[1]


def test_efficientvit_msra_refused_fast_then_the_suggested_ignore_prunes(tmp_path, capsys):
    base = _train("efficientvit_msra_tiny_test", 96, tmp_path)
    out = tmp_path / "p.safetensors"
    start = time.monotonic()
    code = run_main("prune", base, "--method", "l1", "--ratio", "0.3", "-o", out)
    err = capsys.readouterr().err
    assert code == 2 and not out.exists() and time.monotonic() - start < 90
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "CascadedGroupAttention" in errors[0] and "Traceback" not in err
    globs = [g.split("'")[0] for g in err.split("--ignore '")[1:]]
    args = [a for g in globs for a in ("--ignore", g)]
    res = pruned_json(base, out, "--method", "l1", "--ratio", "0.3", *args)
    assert res["macs_after"] < res["macs_before"]
    here, fresh = reload_in_fresh_process(out, tmp_path)
    assert torch.equal(here, fresh)


def test_levit_traceable_downsample_is_bit_identical():
    """The index_select forward given to LeViT's query subsampling while pruning changes no value."""
    from timm.models.levit import Downsample

    from prunecli.pruning.timm_heads import _traceable_downsample

    layer = Downsample(2, 7)
    x = torch.randn(2, 49, 5)
    expected = layer(x)
    layer.__class__ = _traceable_downsample()
    assert torch.equal(layer(x), expected) and expected.shape == (2, 16, 5)
