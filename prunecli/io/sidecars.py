"""Sidecar files beside a checkpoint: `<stem>.masks.json`, `<stem>.flops.json`, `<stem>.state.pt`."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from prunecli.io import atomic


def sidecar_path(checkpoint: str | Path, kind: str) -> Path:
    """`runs/p.safetensors`, "masks.json" → `runs/p.masks.json`."""
    path = Path(checkpoint)
    stem = path.name[: -len(".safetensors")] if path.name.endswith(".safetensors") else path.stem
    return path.with_name(f"{stem}.{kind}")


def write_sidecar(checkpoint: str | Path, kind: str, doc: BaseModel) -> Path | None:
    """Validate and write a sidecar atomically; nothing is written for a checkpoint on stdout."""
    if str(checkpoint) == "-":
        return None
    path = sidecar_path(checkpoint, kind)
    atomic.write_bytes(path, (doc.model_dump_json(indent=2) + "\n").encode())
    return path
