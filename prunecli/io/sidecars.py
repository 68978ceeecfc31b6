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


def write_result(path: str | Path, obj: object) -> None:
    """A command's JSON result as a file (`evaluate -o`, `profile -o`): byte for byte what
    `--json` prints (prunecli.console.emit_json), written atomically."""
    import json

    atomic.write_bytes(path, (json.dumps(obj, indent=2, default=str) + "\n").encode())


def check_result_path(output: str | None, checkpoint: str, kind: str) -> None:
    """`-o FILE` of evaluate/profile, refused before any work: stdout is --json's, a checkpoint
    name is surely a slip, an unwritable folder or the input itself is atomic.check_output's."""
    if output is None:
        return
    from prunecli.errors import UserError

    if output == "-" or output.endswith(".safetensors"):
        raise UserError(f"-o {output}: give a JSON file such as <stem>.{kind}.json (--json prints the result on stdout)")
    atomic.check_output(output, checkpoint)
