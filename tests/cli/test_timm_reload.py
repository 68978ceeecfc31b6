"""Issue 12 item 1: every checkpoint `prune` writes reloads, or nothing is written.

timm's `ConvNormAct` / `BatchNormAct2d` wrappers expose `out_channels`, `num_features`, ... as
read-only properties of the inner conv/bn. `prune` used to record them in the header and every
later command failed with `AttributeError: property ... has no setter` (resnext26ts,
regnety_002, repvgg_a0, mobilevit_xxs, inception_v3). Here: small configurations of those
families (timm's own constructors, width/depth kwargs carried in the header) are pruned with
the CLI and reloaded by ONE fresh process (nothing leaks from this session), a header asking to
set a property is refused with exit 2, and a pruned model whose forward fails or whose bytes do
not reload leaves no file and one `error:` line naming the layer type.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from prunecli.io import checkpoint as ckpt
from prunecli.io.schema import ModelRef
from prunecli.models import MODELS, ModelEntry, build_model
from tests.conftest import run_cli, run_main

# case → (registry name, constructor kwargs, input side). Small members of the families that
# wrote unloadable files; timm overlays the kwargs onto the architecture's config.
CASES = {
    "resnext": ("timm:resnext26ts", {"width_factor": 0.5}, 32),  # ByobNet, ConvNormAct, grouped convs
    "regnet": ("timm:regnety_002", {"depth": 6, "w0": 8, "wa": 8.0, "wm": 2.0, "group_size": 8, "stem_width": 8},
               32),  # RegNet-Y: SE, ConvNormAct, BatchNormAct2d
    "repvgg": ("timm:repvgg_a0", {"width_factor": 0.25}, 32),  # RepVGG: parallel kxk/1x1/identity branches
    "mobilevit": ("timm:mobilevit_xxs", {}, 64),  # MobileViT: conv + transformer blocks
}

RELOAD = """
import sys, torch
from safetensors.torch import load_file, save_file
from prunecli.io.checkpoint import load
folder, cases = sys.argv[1], sys.argv[2:]
inputs = load_file(f"{folder}/inputs.safetensors")
with torch.no_grad():
    save_file({c: load(f"{folder}/{c}.p.safetensors").model(inputs[c]).contiguous() for c in cases},
              f"{folder}/outputs.safetensors")
"""


def base_checkpoint(folder, case: str, spec: tuple | None = None):
    """An unpruned checkpoint of `case` (random init, BN statistics moved off their init)."""
    name, kwargs, side = spec or CASES[case]
    torch.manual_seed(0)
    model, entry, args = build_model(name, num_classes=4, **kwargs)
    with torch.no_grad():
        for key, t in model.state_dict().items():
            if key.endswith("running_var"):
                t.uniform_(0.5, 1.5)
            elif key.endswith(("running_mean", "bias")):
                t.add_(0.1 * torch.randn_like(t))
    header = ckpt.new_header(None, model=ModelRef(name=name, kwargs=args), task=entry.task,
                             input_shape=[3, side, side], num_classes=4)
    path = folder / f"{case}.safetensors"
    ckpt.save(model.eval(), path, header)
    return path


def test_pruned_timm_families_reload_identically(tmp_path):
    inputs, expected = {}, {}
    for case in CASES:
        base = base_checkpoint(tmp_path, case)
        out = tmp_path / f"{case}.p.safetensors"
        result = run_cli("prune", base, "--method", "l1", "--ratio", "0.3", "-o", out)
        assert result.exit_code == 0, f"{case}: {result.output}{result.exception!r}"
        header = ckpt.read_header(out.read_bytes())
        assert header.structure, case
        # wrappers' size properties are not recorded: their inner conv/bn carry the sizes
        model = build_model(header.model.name, **header.model.kwargs)[0]
        for path, attrs in header.structure.items():
            module = model.get_submodule(path) if path else model
            for attr in attrs:
                assert attr in vars(module), f"{case}: {path}.{attr} is not an instance attribute"
        loaded = ckpt.load(out).model
        assert sum(p.numel() for p in loaded.parameters()) < sum(p.numel() for p in model.parameters())
        side = CASES[case][2]
        inputs[case] = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            expected[case] = loaded(inputs[case])
    save_file(inputs, tmp_path / "inputs.safetensors")
    res = subprocess.run([sys.executable, "-c", RELOAD, str(tmp_path), *CASES], capture_output=True, timeout=300)
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    fresh = load_file(tmp_path / "outputs.safetensors")
    for case in CASES:
        assert torch.equal(fresh[case], expected[case]), case


@pytest.mark.slow
def test_pruned_inception_v3_reloads(tmp_path):
    """inception_v3 has no size kwargs: the real architecture at its smallest input (75×75)."""
    base = base_checkpoint(tmp_path, "inception", ("timm:inception_v3", {}, 75))
    out = tmp_path / "inception.p.safetensors"
    result = run_cli("prune", base, "--method", "l1", "--ratio", "0.3", "-o", out)
    assert result.exit_code == 0, f"{result.output}{result.exception!r}"
    x = torch.randn(2, 3, 75, 75)
    with torch.no_grad():
        assert torch.equal(ckpt.load(out).model(x), ckpt.load_bytes(out.read_bytes()).model(x))


def test_header_setting_a_property_is_refused(tmp_path, capsys):
    """`stem.conv1` is a ConvNormAct: its out_channels is a property of the inner conv."""
    base = base_checkpoint(tmp_path, "resnext")
    loaded = ckpt.load(base)
    header = loaded.header.model_copy(update={"structure": {"stem.conv1": {"out_channels": 16}}})
    bad = tmp_path / "bad.safetensors"
    ckpt.save(loaded.model, bad, header)
    capsys.readouterr()
    assert run_main("profile", bad) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "stem.conv1.out_channels" in err and "property of ConvNormAct" in err
    assert "Traceback" not in err
    # the same attribute of the real conv is allowed (a no-op at its unpruned size)
    inner = loaded.model.stem.conv1.conv.out_channels
    header = loaded.header.model_copy(update={"structure": {"stem.conv1.conv": {"out_channels": inner}}})
    ckpt.save(loaded.model, bad, header)
    assert ckpt.load(bad).model.stem.conv1.conv.out_channels == inner


class HardShuffle(nn.Module):
    """A channel shuffle with its channel count fixed at construction: Torch-Pruning prunes
    the conv before it and the view fails (as timm layers that reshape by stored sizes)."""

    def __init__(self, channels: int, groups: int = 2):
        super().__init__()
        self.channels, self.groups = channels, groups

    def forward(self, x):
        n, _, h, w = x.shape
        return x.view(n, self.groups, self.channels // self.groups, h, w).transpose(1, 2).reshape(n, -1, h, w)


class ShuffleNetTest(nn.Module):
    def __init__(self, num_classes: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.shuffle = HardShuffle(16)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.fc(self.conv2(self.shuffle(self.conv(x))).mean((2, 3)))


@pytest.fixture
def shuffle_ckpt(tmp_path, monkeypatch):
    MODELS._load()
    entry = ModelEntry(name="shuffle_test", builder=ShuffleNetTest, family="test", num_classes=4)
    monkeypatch.setitem(MODELS._entries, "shuffle_test", entry)
    model, entry, args = build_model("shuffle_test")
    header = ckpt.new_header(None, model=ModelRef(name="shuffle_test", kwargs=args), task=entry.task,
                             input_shape=[3, 8, 8], num_classes=4)
    path = tmp_path / "shuffle.safetensors"
    ckpt.save(model, path, header)
    return path


def _no_outputs(folder) -> None:
    assert sorted(p.name for p in folder.iterdir()) == ["shuffle.safetensors"]


def test_failing_pruned_forward_writes_nothing(shuffle_ckpt, capsys):
    capsys.readouterr()
    code = run_main("prune", shuffle_ckpt, "--method", "l1", "--ratio", "0.5", "-o", shuffle_ckpt.parent / "p.safetensors")
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in err
    assert "HardShuffle 'shuffle'" in lines[0] and "--ignore 'shuffle'" in lines[0]
    _no_outputs(shuffle_ckpt.parent)
    # the suggested --ignore works: the conv feeding the shuffle keeps its channels
    code = run_main("prune", shuffle_ckpt, "--method", "l1", "--ratio", "0.5", "--ignore", "conv",
                    "-o", shuffle_ckpt.parent / "p.safetensors")
    assert code == 0, capsys.readouterr().err
    assert ckpt.load(shuffle_ckpt.parent / "p.safetensors").model.conv2.out_channels == 8


def test_probe_forward_failure_after_pruning_writes_nothing(tmp_path, monkeypatch, capsys):
    """Pruning itself succeeds, the probe forward of the pruned model fails: refused, no files."""
    import prunecli.pruning.run as run

    base = base_checkpoint(tmp_path, "regnet")
    real = run.checked_bytes

    def broken(model, header, shape, **kwargs):
        def boom(module, args):
            raise RuntimeError("shape '[2, 24, 1, 1]' is invalid for input of size 40")

        model.get_submodule("s1.b1.se").fc1.register_forward_pre_hook(boom)
        return real(model, header, shape, **kwargs)

    monkeypatch.setattr(run, "checked_bytes", broken)
    capsys.readouterr()
    code = run_main("prune", base, "--method", "l1", "--ratio", "0.3", "-o", tmp_path / "p.safetensors")
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and "probe input" in lines[0] and "Conv2d 's1.b1.se.fc1'" in lines[0]
    assert "--ignore 's1.b1.se.fc1'" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["regnet.safetensors"]


def test_checkpoint_that_would_not_reload_is_never_written(tmp_path, monkeypatch, capsys):
    """The old bug, reintroduced: a header naming a wrapper's property. Nothing is written."""
    base = base_checkpoint(tmp_path, "resnext")
    real = ckpt.structure_diff

    def old_diff(model, reference):
        diff = real(model, reference)
        diff.setdefault("stem.conv1", {})["out_channels"] = model.stem.conv1.out_channels
        return diff

    monkeypatch.setattr(ckpt, "structure_diff", old_diff)
    capsys.readouterr()
    out = tmp_path / "p.safetensors"
    code = run_main("prune", base, "--method", "l1", "--ratio", "0.3", "-o", out)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and "would not reload" in lines[0] and "property of ConvNormAct" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resnext.safetensors"]
