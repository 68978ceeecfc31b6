"""Checkpoints reload bit-identically in a fresh process, pruned or not, for every family.

A fresh process proves nothing leaks through the Python session (a monkeypatched module, a
cached model): the file alone, a registry build and the header's whitelisted structure diff
must reproduce the model. All checkpoints are loaded by ONE subprocess to keep the suite fast.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch_pruning as tp
from safetensors.torch import load_file, save_file
from safetensors.torch import save as st_save

from prunecli.errors import CheckpointError
from prunecli.io.checkpoint import load, new_header, save, structure_diff, tensors_of
from prunecli.io.schema import ModelRef
from prunecli.models import build_model
from prunecli.pruning.attention import attention_modules, sync_attention

# case id → (registry name, pruning: None, "channels" or "heads")
CASES: dict[str, tuple[str, str | None]] = {
    "resnet_tiny": ("resnet_tiny", None),
    "vgg_tiny": ("vgg_tiny", None),
    "densenet_tiny": ("densenet_tiny", None),
    "tv_resnet_tiny": ("tv_resnet_tiny", None),
    "tv_vgg_tiny": ("tv_vgg_tiny", None),
    "tv_densenet_tiny": ("tv_densenet_tiny", None),
    "vit_tiny_test": ("vit_tiny_test", None),
    "convnext_tiny_test": ("convnext_tiny_test", None),
    "timm_prefix": ("timm:test_vit", None),  # built with BUILD_KWARGS, which the header must carry
    "pruned_resnet_tiny": ("resnet_tiny", "channels"),
    "pruned_densenet_tiny": ("densenet_tiny", "channels"),
    "pruned_vgg_tiny": ("vgg_tiny", "channels"),
    "pruned_tv_resnet_tiny": ("tv_resnet_tiny", "channels"),
    "pruned_tv_densenet_tiny": ("tv_densenet_tiny", "channels"),
    "pruned_convnext_tiny_test": ("convnext_tiny_test", "channels"),
    "pruned_vit_head_dims": ("vit_tiny_test", "channels"),
    "pruned_vit_heads": ("vit_tiny_test", "heads"),
    "vgg_keras_tiny": ("vgg_keras_tiny", None),
    "pruned_vgg_keras_tiny": ("vgg_keras_tiny", "channels"),
}

BUILD_KWARGS = {"timm_prefix": {"num_classes": 5, "img_size": 64}}

RELOAD = """
import sys, torch
from safetensors.torch import load_file, save_file
from prunecli.io.checkpoint import load
folder = sys.argv[1]
torch.set_num_threads(int(sys.argv[2]))
out = {}
for case, x in load_file(f"{folder}/inputs.safetensors").items():
    with torch.no_grad():
        out[case] = load(f"{folder}/{case}.safetensors").model(x).contiguous()
save_file(out, f"{folder}/outputs.safetensors")
"""


def perturb(model: torch.nn.Module) -> None:
    """Move BN statistics, LayerScale gammas etc. off their init values so the test sees them."""
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                if name.endswith("running_var"):
                    t.uniform_(0.5, 1.5)
                else:
                    t.add_(0.1 * torch.randn_like(t))


def prune(model, entry, mode: str) -> dict:
    """Torch-Pruning at ratio 0.5, head protected, attention set up as in TP's timm ViT example."""
    heads = mode == "heads"
    num_heads = {m.qkv: m.num_heads for _, m in attention_modules(model)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TP warns about the ViT's unwrapped pos_embed/cls_token
        pruner = tp.pruner.BasePruner(
            model,
            torch.randn(1, *entry.input_shape),
            importance=tp.importance.GroupMagnitudeImportance(p=1),
            pruning_ratio=0.5,
            ignored_layers=[model.get_submodule(p) for p in entry.protected],
            num_heads=num_heads,
            prune_num_heads=heads,
            prune_head_dims=not heads,
            head_pruning_ratio=0.5 if heads else 0.0,
        )
        pruner.step()
    return sync_attention(model, pruner.num_heads)


def make_checkpoint(folder: Path, case: str) -> dict:
    name, mode = CASES[case]
    torch.manual_seed(0)
    kwargs = BUILD_KWARGS.get(case, {})
    model, entry, args = build_model(name, **kwargs)
    size = kwargs.get("img_size")
    shape = entry.input_shape if size is None else (3, size, size)
    perturb(model)
    synced = prune(model, entry, mode) if mode else {}
    model.eval()
    header = new_header(
        None,
        model=ModelRef(name=name, kwargs=args),
        task=entry.task,
        input_shape=list(shape),
        num_classes=args["num_classes"],
        structure=structure_diff(model, build_model(name, **kwargs)[0]),
    )
    save(model, folder / f"{case}.safetensors", header)
    x = torch.randn(2, *shape)
    with torch.no_grad():
        y = model(x)
    return {"x": x, "y": y, "header": header, "synced": synced, "model": model}


@pytest.fixture(scope="module")
def roundtrip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("roundtrip")
    made = {case: make_checkpoint(folder, case) for case in CASES}
    save_file({case: m["x"] for case, m in made.items()}, folder / "inputs.safetensors")
    cmd = [sys.executable, "-c", RELOAD, str(folder), str(torch.get_num_threads())]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    outputs = load_file(folder / "outputs.safetensors")
    return {case: {**m, "reloaded": outputs[case]} for case, m in made.items()}


@pytest.mark.parametrize("case", CASES)
def test_fresh_process_reload_is_bit_identical(roundtrip, case):
    r = roundtrip[case]
    assert r["reloaded"].shape == r["y"].shape
    assert torch.equal(r["reloaded"], r["y"])


def test_timm_prefix_kwargs_travel_in_the_header(roundtrip):
    r = roundtrip["timm_prefix"]
    assert r["header"].model.name == "timm:test_vit"
    assert r["header"].model.kwargs == {"num_classes": 5, "img_size": 64}
    assert r["reloaded"].shape == (2, 5)


@pytest.mark.parametrize("case", [c for c, (_, mode) in CASES.items() if mode])
def test_pruned_models_carry_a_structure_diff(roundtrip, case):
    name, _ = CASES[case]
    r = roundtrip[case]
    assert r["header"].structure
    fresh = sum(p.numel() for p in build_model(name)[0].parameters())
    assert sum(p.numel() for p in r["model"].parameters()) < 0.6 * fresh


def test_vit_head_dim_pruning_keeps_heads(roundtrip):
    attn = roundtrip["pruned_vit_head_dims"]["model"].blocks[0].attn
    assert (attn.num_heads, attn.head_dim, attn.attn_dim) == (4, 8, 32)
    assert attn.scale == 8**-0.5
    assert roundtrip["pruned_vit_head_dims"]["header"].structure["blocks.0.attn"]["head_dim"] == 8


def test_vit_head_pruning_keeps_head_dim(roundtrip):
    r = roundtrip["pruned_vit_heads"]
    attn = r["model"].blocks[0].attn
    assert (attn.num_heads, attn.head_dim, attn.attn_dim, attn.scale) == (2, 16, 32, 16**-0.5)
    assert r["synced"]["blocks.1.attn"] == {"num_heads": 2, "attn_dim": 32}


@pytest.mark.parametrize("case", ["pruned_vit_head_dims", "pruned_vit_heads"])
def test_synced_scale_matches_fused_attention(roundtrip, case):
    """The explicit path (q * scale) must agree with SDPA's implicit 1/sqrt(head_dim)."""
    r = roundtrip[case]
    model = r["model"]
    for _, m in attention_modules(model):
        m.fused_attn = False
    try:
        with torch.no_grad():
            torch.testing.assert_close(model(r["x"]), r["y"], rtol=1e-5, atol=1e-5)
    finally:
        for _, m in attention_modules(model):
            m.fused_attn = True


def test_sync_attention_is_a_no_op_on_unpruned_models():
    assert sync_attention(build_model("vit_tiny_test")[0]) == {}
    assert sync_attention(build_model("resnet_tiny")[0]) == {}


def test_sync_attention_infers_head_dims_without_the_pruner_dict():
    """Torch-Pruning's default (prune_head_dims) keeps the head count; that is the fallback."""
    torch.manual_seed(0)
    model, entry, _ = build_model("vit_tiny_test")
    prune(model, entry, "channels")
    for _, m in attention_modules(model):  # undo the sync, then redo it without the dict
        m.num_heads, m.head_dim, m.attn_dim = 4, 16, 64
    assert sync_attention(model)["blocks.0.attn"]["head_dim"] == 8


# --- hostile headers ----------------------------------------------------------------------

BAD_STRUCTURES = [
    {"": {"forward": 1}},
    {"fc": {"__class__": 1}},
    {"fc": {"__dict__": 1}},
    {"fc": {"weight": 1}},
    {"conv1": {"stride": [2, 2]}},
    {"fc": {"num_heads": 2}},  # whitelisted, but a Linear has no such attribute
    {"fc": {"out_features": 2.5}},
    {"fc": {"out_features": [1, 2]}},
    {"fc": {"out_features": "10"}},
    {"bn1": {"num_features": {"a": 1}}},
    {"fc": {"out_features": "__import__('os').system('true')"}},
    {"no.such.module": {"out_features": 3}},
    {"fc.__class__": {"out_features": 3}},
]


def write_raw(path: Path, structure: dict) -> None:
    """A checkpoint with a hand-written header: the attacker does not go through our schema."""
    model = build_model("resnet_tiny")[0]
    header = new_header(None, model=ModelRef(name="resnet_tiny", kwargs={}), input_shape=[3, 32, 32])
    meta = json.loads(header.model_dump_json())
    meta["structure"] = structure
    path.write_bytes(st_save(tensors_of(model), metadata={"prunecli": json.dumps(meta)}))


@pytest.mark.parametrize("structure", BAD_STRUCTURES, ids=lambda s: json.dumps(s)[:40])
def test_hostile_structure_is_rejected(tmp_path, structure):
    path = tmp_path / "bad.safetensors"
    write_raw(path, structure)
    with pytest.raises(CheckpointError):
        load(path)


def test_hostile_model_kwargs_are_rejected(tmp_path):
    model = build_model("resnet_tiny")[0]
    meta = {
        "format": "prunecli-checkpoint",
        "version": 1,
        "input_shape": [3, 32, 32],
        "model": {"name": "resnet_tiny", "kwargs": {"num_classes": {"__class__": "x"}}},
    }
    path = tmp_path / "bad.safetensors"
    path.write_bytes(st_save(tensors_of(model), metadata={"prunecli": json.dumps(meta)}))
    with pytest.raises(CheckpointError):
        load(path)


def test_clean_raw_header_loads(tmp_path):
    """Control for the hostile cases: the same hand-written path with an empty diff loads."""
    path = tmp_path / "ok.safetensors"
    write_raw(path, {})
    assert load(path).header.model.name == "resnet_tiny"
