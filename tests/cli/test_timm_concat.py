"""Channel slices feeding a concatenation (`pruning/timm_concat.py`, `pruning/graphcheck.py`).

ReXNet and DPN were refused before (issue 12: rexnet_100 ran over ten minutes, then a refusal
naming 15 convs to `--ignore`; dpn48b a refusal with 36 single-layer globs). Now the default
prune keeps only their sliced trunk convs whole, prunes the rest, and the file reloads
bit-identically; an unknown model with the pattern is still refused, with few globs that work.
"""

from __future__ import annotations

import json
import re

import pytest
import torch
import torch.nn as nn

from prunecli.errors import UserError
from tests.conftest import pruned_json, reload_in_fresh_process, untrained

DATA = "synthetic:n=8,val=4,classes=4"
PRUNED = {"rexnet_tiny_test": ("conv_exp", "conv_dw"), "dpn_tiny_test": ("c1x1_a", "c3x3_b")}


def _l1(seed=0):
    import torch_pruning as tp

    return tp.importance.GroupMagnitudeImportance(p=1)


@pytest.mark.parametrize("model", ["rexnet_tiny_test", "dpn_tiny_test"])
def test_default_prune_keeps_the_trunk_and_reloads(model, tmp_path):
    base, out = untrained(model, tmp_path / "base.safetensors", DATA), tmp_path / "p.safetensors"
    result = pruned_json(base, out, "--method", "l1", "--ratio", "0.3")
    assert result["macs_after"] < 0.8 * result["macs_before"]
    cut = [layer["name"] for layer in json.loads(out.with_suffix(".masks.json").read_text())["layers"]]
    assert not set(cut) & _trunk(model)
    assert all(any(part in name for name in cut) for part in PRUNED[model])
    here, fresh = reload_in_fresh_process(out, tmp_path)
    assert torch.equal(here, fresh) and here.shape == (2, 4)


def _trunk(name: str) -> set[str]:
    from prunecli.pruning.timm_concat import sliced_concat_trunks

    model = _tiny(name)
    names = {m: n for n, m in model.named_modules()}
    return {names[m] for m in sliced_concat_trunks(model)[2]}


def _tiny(name: str, **kwargs) -> nn.Module:
    from prunecli.models import build_model

    torch.manual_seed(0)
    return build_model(name, **kwargs)[0].eval()


@pytest.mark.parametrize(("name", "kwargs"), [("rexnet_tiny_test", {}), ("dpn_tiny_test", {"b": True}),
                                              ("dpn_tiny_test", {"b": False})])
def test_kept_convs_are_exactly_those_feeding_sliced_concats(name, kwargs):
    """The extension's list equals what the graph check finds: nothing missed (Torch-Pruning would
    walk a wrong concat offset), nothing more (it would prune less than it can)."""
    from prunecli.pruning.graphcheck import sliced_concats
    from prunecli.pruning.structured import _graph
    from prunecli.pruning.timm_concat import sliced_concat_trunks

    model = _tiny(name, **kwargs)
    found = {m for _, layers in sliced_concats(_graph(model, (3, 32, 32))) for m in layers}
    kept = set(sliced_concat_trunks(model)[2])
    assert found and kept == found


def test_pruned_rexnet_equals_the_original_with_those_channels_silenced():
    """Index check: silence (BN weight and bias 0) every channel the prune removes in the original;
    its output must equal the pruned model's. A mis-mapped input column anywhere would differ."""
    import copy

    from prunecli.pruning.structured import PrunePlan, prune

    model = _tiny("rexnet_tiny_test")
    reference = copy.deepcopy(model)
    pruned, outcome = prune(model, (3, 32, 32), _l1, PrunePlan(ratio=0.3), ("head.fc",))
    named = dict(reference.named_modules())
    for layer in outcome.layers:
        if layer["name"].endswith(".conv"):  # ConvNormAct: conv → bn(+act); act(0) = 0 for ReXNet's acts
            bn = named[layer["name"][: -len("conv")] + "bn"]
        elif layer["name"].endswith("se.fc1"):
            bn = named[layer["name"][: -len("fc1")] + "bn"]
        else:  # se.fc2: its gate multiplies channels that are already silenced
            continue
        with torch.no_grad():
            bn.weight[layer["removed"]] = 0
            bn.bias[layer["removed"]] = 0
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(pruned(x), reference(x), atol=1e-5)
    assert outcome.after.macs < 0.8 * outcome.before.macs


class _Sliced(nn.Module):
    """ReXNet's pattern in a model no extension knows: `cat([y[:, :c] + x, y[:, c:]])`."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.blocks = nn.ModuleList([nn.Conv2d(8, 12, 1), nn.Conv2d(12, 16, 1)])
        self.mid = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.stem(x)
        for conv in self.blocks:
            y = conv(x)
            x = torch.cat([y[:, : x.shape[1]] + x, y[:, x.shape[1]:]], dim=1)
        return self.fc(self.mid(x).mean((2, 3)))


def test_unknown_sliced_concat_is_refused_with_globs_that_work():
    from prunecli.pruning.structured import PrunePlan, prune

    torch.manual_seed(0)
    model = _Sliced().eval()
    with pytest.raises(UserError) as refused:
        prune(model, (3, 32, 32), _l1, PrunePlan(ratio=0.3), ("fc",))
    message = str(refused.value)
    globs = re.findall(r"--ignore '([^']+)'", message)
    assert "\n" not in message and globs == ["blocks.*", "stem"]
    pruned, outcome = prune(model, (3, 32, 32), _l1, PrunePlan(ratio=0.3, ignore=globs), ("fc",))
    assert [layer["name"] for layer in outcome.layers] == ["mid"]
    assert pruned(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_dpn_refusal_globs_are_few_and_sufficient():
    """Were DPN unknown, the refusal would name 4 globs (it named 36 single layers) that cover it."""
    from prunecli.pruning.graphcheck import refuse_sliced_concats
    from prunecli.pruning.structured import _graph, protected_modules

    model = _tiny("dpn_tiny_test")
    graph = _graph(model, (3, 32, 32))
    with pytest.raises(UserError) as refused:
        refuse_sliced_concats(model, graph, [])
    globs = re.findall(r"--ignore '([^']+)'", str(refused.value))
    assert globs == ["features.*.c1x1_c1", "features.*.c1x1_c2", "features.*.c1x1_w_s2.conv",
                     "features.conv2_1.c1x1_w_s1.conv"]
    refuse_sliced_concats(model, graph, protected_modules(model, (), globs))  # no refusal left
