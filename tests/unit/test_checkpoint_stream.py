"""Loading a checkpoint file streams it (issue 14 item 7): same model as reading it whole, never all at once."""

from __future__ import annotations

import hashlib

import pytest
import torch

from prunecli.errors import CheckpointError
from prunecli.io import checkpoint as ckpt


@pytest.fixture()
def saved(tmp_path, tiny_ckpt):
    return tiny_ckpt


def _same(a, b) -> None:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.sha256 == b.sha256 and a.header == b.header


def test_streamed_equals_whole_and_hashes_the_file(saved, monkeypatch):
    whole = ckpt.load_bytes(saved.read_bytes())
    opened = []
    real = ckpt.__dict__.get("_chunks")
    monkeypatch.setattr(ckpt, "_CHUNK", 4096)  # many small chunks: the file is reopened between them

    def chunks(keys, table):
        for run in real(keys, table):
            opened.append(sum(table[k]["data_offsets"][1] - table[k]["data_offsets"][0] for k in run))
            yield run

    monkeypatch.setattr(ckpt, "_chunks", chunks)
    streamed = ckpt.load(saved)
    _same(streamed, whole)
    assert streamed.sha256 == hashlib.sha256(saved.read_bytes()).hexdigest()
    sizes = [t.numel() * t.element_size() for t in whole.model.state_dict().values()]
    assert len(opened) > 1 and max(opened) <= max(4096, max(sizes))


def test_pruned_checkpoint_streams_into_its_pruned_shapes(tmp_path, tiny_ckpt):
    from tests.conftest import run_cli

    out = tmp_path / "p.safetensors"
    assert run_cli("prune", tiny_ckpt, "--method", "l1", "--ratio", "0.5", "-o", out).exit_code == 0
    _same(ckpt.load(out), ckpt.load_bytes(out.read_bytes()))


def test_a_module_with_its_own_loading_gets_load_state_dict(saved, monkeypatch):
    """A `_load_from_state_dict` override outside torch (e.g. a version-upgrade hook) must run."""
    calls = []
    monkeypatch.setattr(ckpt, "_custom_loading", lambda model: calls.append(1) or True)
    _same(ckpt.load(saved), ckpt.load_bytes(saved.read_bytes()))
    assert calls


def test_truncated_tensor_data_is_one_error(tmp_path, saved):
    data = saved.read_bytes()
    bad = tmp_path / "t.safetensors"
    bad.write_bytes(data[:-10])
    with pytest.raises(CheckpointError, match="truncated"):
        ckpt.load(bad)
