"""The shortcuts that keep `prune` within 1.1× of a hand-written Torch-Pruning script
(bench/prune_speed.py) give exactly what the ordinary paths give, and step aside when they cannot.

- `checkpoint.load_bytes(skip_init=True)`: a meta-device skeleton filled by assignment;
- `verify.checked_bytes`: tries that first, and any failure is decided by the ordinary load.
"""

from __future__ import annotations

import pytest
import torch

from prunecli.errors import UserError
from prunecli.io import checkpoint as ckpt
from prunecli.pruning import verify
from tests.conftest import untrained

MRI = "phantom:n=4,val=2,size=32,coils=4"


@pytest.mark.parametrize("name", ["resnet_tiny", "swin_tiny_test", "deq-edsr-tiny", "varnet-tiny"])
def test_skip_init_load_equals_ordinary_load(tmp_path, name):
    path = tmp_path / "m.safetensors"
    data = (untrained(name, path, MRI) if "-" in name else untrained(name, path)).read_bytes()
    fast = ckpt.load_bytes(data, skip_init=True)
    slow = ckpt.load_bytes(data)
    a, b = fast.model.state_dict(), slow.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not ckpt.any_meta(fast.model)
    x = verify.probe_input(fast.header.input_shape)
    assert all(torch.equal(p, q) for p, q in zip(verify._run(fast.model, x), verify._run(slow.model, x)))
    assert fast.header == slow.header and fast.sha256 == slow.sha256


def test_skip_init_does_not_draw_from_the_global_rng(tmp_path):
    data = untrained("resnet_tiny", tmp_path / "m.safetensors").read_bytes()
    rng = torch.get_rng_state()
    ckpt.load_bytes(data, skip_init=True)
    assert torch.equal(rng, torch.get_rng_state())


def test_skeleton_steps_aside_for_tensors_the_file_does_not_hold(tmp_path):
    """swin keeps its relative-position index as a non-persistent buffer: the skeleton would leave
    it on the meta device, so the ordinary build is used (and the result is a working model)."""
    data = untrained("swin_tiny_test", tmp_path / "m.safetensors").read_bytes()
    header = ckpt.read_header(data)
    from safetensors.torch import load as st_load

    assert ckpt._skeleton_load(header, st_load(data)) is None
    data = untrained("resnet_tiny", tmp_path / "r.safetensors").read_bytes()
    assert ckpt._skeleton_load(ckpt.read_header(data), st_load(data)) is not None


def test_checked_bytes_falls_back_to_the_ordinary_load(tmp_path, monkeypatch):
    loaded = ckpt.load(untrained("resnet_tiny", tmp_path / "m.safetensors"))
    calls = []
    real = verify._reload_mismatch

    def fast_fails(model, data, x, expected, skip_init):
        calls.append(skip_init)
        return "injected" if skip_init else real(model, data, x, expected, skip_init)

    monkeypatch.setattr(verify, "_reload_mismatch", fast_fails)
    data = verify.checked_bytes(loaded.model, loaded.header, loaded.header.input_shape)
    assert calls == [True, False] and ckpt.load_bytes(data).model is not None

    monkeypatch.setattr(verify, "_reload_mismatch", lambda *a, skip_init: "injected")
    with pytest.raises(UserError, match="would not reload into the same model \\(injected\\)"):
        verify.checked_bytes(loaded.model, loaded.header, loaded.header.input_shape)
