"""recipes/isomorphic/collect.py on hand-written run files of a real target (no GPU run needed).

The smoke run has no paper rows; this checks the ImageNet layout: per target the paper's row,
then ours in each mode that was run, each with its budget and fine-tuning protocol.
"""

from __future__ import annotations

import importlib.util
import json
import struct
from pathlib import Path

from tests.recipes import ROOT, table_rows


def _collect():
    spec = importlib.util.spec_from_file_location("iso_collect", ROOT / "recipes" / "isomorphic" / "collect.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


def _checkpoint(path: Path, epochs: int) -> None:
    """A safetensors file with no tensors whose prunecli header ends in a finetune step."""
    header = {"lineage": [{"command": "prune", "options": {}}, {"command": "finetune", "options": {"epochs": epochs}}]}
    meta = json.dumps({"__metadata__": {"prunecli": json.dumps(header)}}).encode()
    path.write_bytes(struct.pack("<Q", len(meta)) + meta)


def _run(out: Path, mode: str, options: dict, macs: int, params: int, top1: float) -> None:
    d = out / f"{mode}-deit_0.6G-isomorphic" / "seed0"
    _write(d / "prune.json", {"macs_before": 1_266_572_000, "ratio": options["resolved_ratio"]})
    _write(d / "pruned.masks.json", {"options": options})
    _write(d / "pruned.eval.json", {"top1": 0.1})
    _write(d / "ft.eval.json", {"top1": top1})
    _write(d / "ft.profile.json", {"macs": macs, "params": params, "ratios": {"speedup": {"1": 1.5}},
                                "compare": {"macs": 1_266_572_000, "params": 5_910_800}})
    _checkpoint(d / "ft.safetensors", 300)


def test_paper_reference_and_improved_rows(tmp_path):
    _write(tmp_path / "base-deit_tiny_distilled_patch16_224" / "seed0" / "base.eval.json", {"top1": 74.5})
    heads = {"head_ratio": 0.3, "head_dim_ratio": 0.3, "remove_blocks": 0}
    _run(tmp_path, "reference", {"ratio": 0.25, "target_macs": None, "resolved_ratio": 0.25, **heads},
         619_742_710, 3_071_770, 72.0)
    _run(tmp_path, "improved", {"ratio": None, "target_macs": "0.6G", "resolved_ratio": 0.2512, **heads},
         598_000_000, 3_000_000, 71.5)
    collect = _collect()
    rows = table_rows(collect.markdown(collect.table(tmp_path, [("deit_0.6G", "deit_tiny_distilled_patch16_224",
                                                                 "0.6G")])))
    assert [(r["model"], r["run"]) for r in rows] == [
        ("deit_tiny_distilled_patch16_224", "paper"), ("deit_tiny_distilled_patch16_224", "ours"),
        ("deit_0.6G", "paper"), ("deit_0.6G", "ours reference"), ("deit_0.6G", "ours improved")]
    paper, ref, imp = rows[2:]
    assert (paper["MACs"], paper["params"], paper["top-1 %"]) == ("0.62G", "3.08M", "72.60")
    assert paper["budget"] == "p 0.25, p_h 0.3, p_d 0.3" and paper["fine-tuning"].startswith("300 ep, best")
    assert (ref["MACs"], ref["params"], ref["top-1 %"]) == ("0.62G", "3.07M", "72.00")
    assert ref["budget"] == "p 0.25, p_h 0.3, p_d 0.3" and ref["fine-tuning"] == "300 ep, last"
    assert ref["MACs / target"] == f"{619_742_710 / 0.6e9:.3f}"
    assert imp["budget"] == "0.6G → p 0.2512, p_h 0.3, p_d 0.3" and imp["top-1 %"] == "71.50"
    # only one mode run so far: its rows alone, still beside the paper's
    (tmp_path / "improved-deit_0.6G-isomorphic" / "seed0" / "ft.profile.json").unlink()
    rows = table_rows(collect.markdown(collect.table(tmp_path, [("deit_0.6G", "deit_tiny_distilled_patch16_224",
                                                                 "0.6G")])))
    assert [r["run"] for r in rows if r["model"] == "deit_0.6G"] == ["paper", "ours reference"]
