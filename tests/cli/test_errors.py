"""Bad input gives one clear line and exit code 2, never a traceback, and writes nothing."""

from __future__ import annotations

import struct

import pytest

from tests.conftest import SYNTH, run_main, run_proc


def _bad_files(tmp_path, ckpt_bytes):
    (tmp_path / "truncated.safetensors").write_bytes(ckpt_bytes[: len(ckpt_bytes) // 2])
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00\x01not a checkpoint at all" * 10)
    meta = b'{"__metadata__":{}}'
    (tmp_path / "plain.safetensors").write_bytes(struct.pack("<Q", len(meta)) + meta)


CASES = {
    "missing file": (["evaluate", "{tmp}/nope.safetensors", "--data", SYNTH], "checkpoint not found"),
    "truncated": (["evaluate", "{tmp}/truncated.safetensors", "--data", SYNTH], "truncated"),
    "corrupt": (["info", "{tmp}/garbage.safetensors"], "not a safetensors file"),
    "no header": (["info", "{tmp}/plain.safetensors"], "no prunecli header"),
    "unknown model": (["train", "--model", "resnet21", "--data", SYNTH, "-o", "{tmp}/o.safetensors"], "unknown model"),
    "unknown method": (["prune", "{ckpt}", "--method", "l3", "--ratio", "0.5", "-o", "{tmp}/o.safetensors"],
                       "unknown method"),
    "analysis method in prune": (["prune", "{ckpt}", "--method", "sensitivity", "--ratio", "0.5",
                                  "-o", "{tmp}/o.safetensors"], "analysis method"),
    "unknown data": (["evaluate", "{ckpt}", "--data", "mnist"], "unknown data"),
    "ratio out of range": (["prune", "{ckpt}", "--ratio", "1.5", "-o", "{tmp}/o.safetensors"], "--ratio"),
    "macs above model": (["prune", "{ckpt}", "--target-macs", "5G", "-o", "{tmp}/o.safetensors"],
                         "not below the model"),
    "bad macs syntax": (["prune", "{ckpt}", "--target-macs", "lots", "-o", "{tmp}/o.safetensors"], "--target-macs"),
    "class mismatch": (["evaluate", "{ckpt}", "--data", "synthetic:classes=7"], "7 classes"),
    "resume without state": (["train", "--model", "resnet_tiny", "--data", SYNTH, "--resume",
                              "-o", "{tmp}/o.safetensors"], "nothing to resume"),
    "bad optimizer": (["train", "--model", "resnet_tiny", "--data", SYNTH, "--optimizer", "lion",
                       "-o", "{tmp}/o.safetensors"], "--optimizer"),
    "missing output folder": (["prune", "{ckpt}", "--ratio", "0.5", "-o", "{tmp}/no/such/dir/o.safetensors"],
                              "output folder does not exist"),
    "bad ignore": (["prune", "{ckpt}", "--ratio", "0.5", "--ignore", "nothing.here", "-o", "{tmp}/o.safetensors"],
                   "matches no layer"),
}


def _check(code: int, out: str, err: str, needle: str, tmp_path) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0], err
    assert not (tmp_path / "o.safetensors").exists()
    assert out == ""


@pytest.mark.parametrize("case", list(CASES))
def test_user_error_is_one_line_exit_2(case, tmp_path, tiny_ckpt, capsys):
    """In-process through `main()` (the same code path as the console script, but fast)."""
    _bad_files(tmp_path, tiny_ckpt.read_bytes())
    args, needle = CASES[case]
    code = run_main(*[a.format(tmp=tmp_path, ckpt=tiny_ckpt) for a in args])
    captured = capsys.readouterr()
    _check(code, captured.out, captured.err, needle, tmp_path)


@pytest.mark.parametrize("case", ["truncated", "unknown model", "class mismatch"])
def test_user_error_in_real_process(case, tmp_path, tiny_ckpt):
    _bad_files(tmp_path, tiny_ckpt.read_bytes())
    args, needle = CASES[case]
    res = run_proc(*[a.format(tmp=tmp_path, ckpt=tiny_ckpt) for a in args])
    _check(res.returncode, res.stdout.decode(), res.stderr.decode(), needle, tmp_path)


def test_debug_shows_traceback(tmp_path):
    res = run_proc("--debug", "evaluate", tmp_path / "nope.safetensors")
    assert res.returncode != 0 and b"Traceback" in res.stderr


def test_failed_prune_leaves_existing_output_intact(tmp_path, tiny_ckpt):
    out = tmp_path / "o.safetensors"
    out.write_bytes(b"previous result")
    res = run_proc("prune", tiny_ckpt, "--target-macs", "5G", "-o", out)
    assert res.returncode == 2
    assert out.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.safetensors"]  # no temp files left behind


def test_pretrained_without_hub_fails_fast(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")
    code = run_main("import", "--model", "timm:resnet18", "--pretrained", "-o", tmp_path / "o.safetensors")
    captured = capsys.readouterr()
    _check(code, captured.out, captured.err, "unreachable", tmp_path)


def test_torch_pruning_failure_is_one_line_naming_the_group(tiny_ckpt, tmp_path, monkeypatch, capsys):
    """An exception inside Torch-Pruning (timm FastViT raised IndexError in its importance) is one
    `error:` line naming the group's root layer and the --ignore that leaves it, exit 2, no files."""
    import torch_pruning as tp

    original = tp.importance.GroupMagnitudeImportance.__call__

    def failing(self, group, **kwargs):
        if group[0].dep.target.module is self._victim:
            raise IndexError("index 7 is out of bounds for dimension 0 with size 4")
        return original(self, group, **kwargs)

    from prunecli.io.checkpoint import load

    victim_name = "layer1.0.conv1"
    monkeypatch.setattr(tp.importance.GroupMagnitudeImportance, "__call__", failing)
    monkeypatch.setattr(tp.importance.GroupMagnitudeImportance, "_victim", None, raising=False)
    import prunecli.pruning.structured as structured

    real_prune_at = structured.prune_at

    def prune_at(model, *args, **kwargs):  # point the failure at one conv of the model being pruned
        tp.importance.GroupMagnitudeImportance._victim = model.get_submodule(victim_name)
        return real_prune_at(model, *args, **kwargs)

    monkeypatch.setattr(structured, "prune_at", prune_at)
    assert load(tiny_ckpt).model.get_submodule(victim_name) is not None
    code = run_main("prune", tiny_ckpt, "--method", "l1", "--ratio", "0.3", "-o", tmp_path / "p.safetensors")
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    assert "IndexError" in lines[0] and f"'{victim_name}'" in lines[0]
    assert "--ignore 'layer1.*.conv1'" in lines[0]
    assert list(tmp_path.iterdir()) == []
