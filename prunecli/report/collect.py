"""Find every checkpoint under the report's folders and read what was measured about it.

Only the safetensors header is read (`checkpoint.read_file_header`: no tensor, no model, no
unpickling), plus the JSON sidecars beside it: `<stem>.masks.json`, `.flops.json` (prune,
profile), `.eval.json`, `.profile.json` (`evaluate -o`, `profile -o`). Other files
(`.latency.json`, `.state.pt`, logs) are not ours to read and are left alone. A file that is
not a prunecli checkpoint, or a sidecar that is not JSON, costs one warning line, never the report.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prunecli.errors import CheckpointError, UserError
from prunecli.io.schema import Header

SIDECARS = ("eval", "profile", "flops", "masks")
SEED_DIR = re.compile(r"^seed(\d+)$")
TRAINING = ("train", "finetune")
# Options that say where or how fast a run went, not what it computed: runs differing only in
# them (and in `seed`) are seeds of one setting.
INCIDENTAL = {"seed", "workers", "device", "output", "resume", "stop_after", "threads"}


@dataclass
class Run:
    """One checkpoint and what its sidecars say."""

    path: Path
    setting: str
    header: Header
    seed: int | None
    side: dict[str, dict] = field(default_factory=dict)

    @property
    def stem(self) -> str:
        return self.path.name[: -len(".safetensors")]

    @property
    def commands(self) -> list[str]:
        return [e.command for e in self.header.lineage]

    def options(self, command: str) -> dict[str, Any]:
        """The options of the last `command` step in the lineage ({} when there is none)."""
        return next((e.options for e in reversed(self.header.lineage) if e.command == command), {})

    @property
    def method(self) -> str:
        """The pruning method of the last `prune` step; `base` for an unpruned model."""
        return str(self.options("prune").get("method") or "base")

    @property
    def trained(self) -> dict[str, Any]:
        """The options of the last train/finetune step: the run whose epoch the weights are."""
        return next((e.options for e in reversed(self.header.lineage) if e.command in TRAINING), {})

    def signature(self) -> str:
        """The lineage without seeds, paths and incidental options: equal for the seeds of a setting."""
        steps = [[e.command, {k: v for k, v in e.options.items() if k not in INCIDENTAL and not _pathlike(v)}]
                 for e in self.header.lineage]
        return json.dumps([self.header.model.name, self.setting, steps], sort_keys=True, default=str)


def warn(message: str) -> None:
    """One line per bad file, however long its path (no wrapping; brackets in names are not markup)."""
    from rich.markup import escape

    from prunecli.console import err

    err.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True)


def _pathlike(value: Any) -> bool:
    return isinstance(value, str) and ("/" in value or value.endswith(".safetensors") or value == "-")


def find(dirs: list[str]) -> list[Run]:
    """Every readable checkpoint under `dirs` (recursively, sorted); the others are warned about."""
    runs = []
    for d in dirs:
        root = Path(d)
        if not root.exists():
            raise UserError(f"no such folder: {root}")
        files = [root] if root.is_file() else sorted(root.rglob("*.safetensors"))
        if not files:
            warn(f"{root}: no checkpoints (*.safetensors) found")
        for path in files:
            run = read_run(path, root if root.is_dir() else root.parent)
            if run is not None:
                runs.append(run)
    return runs


def read_run(path: Path, root: Path) -> Run | None:
    """The run of one file, or None (with a warning) when it is not a readable prunecli checkpoint."""
    from prunecli.io.checkpoint import read_file_header

    try:
        header = read_file_header(path)
    except (CheckpointError, UserError, OSError) as err:
        warn(f"{path}: skipped, not a readable prunecli checkpoint ({str(err).splitlines()[0]})")
        return None
    setting, seed = _place(path, root)
    run = Run(path=path, setting=setting, header=header, seed=seed)
    if run.seed is None and isinstance(run.trained.get("seed"), int):
        run.seed = run.trained["seed"]
    digest = _Digest(path)
    for kind in SIDECARS:
        doc = _sidecar(path, kind, digest)
        if doc is not None:
            run.side[kind] = doc
    return run


def _place(path: Path, root: Path) -> tuple[str, int | None]:
    """(setting, seed) from the layout `ROOT/<setting>/seed<N>/<stem>.safetensors`."""
    parts = list(path.parent.relative_to(root).parts) if path.parent != root else []
    seeds = [int(m.group(1)) for p in parts if (m := SEED_DIR.match(p))]
    kept = [p for p in parts if not SEED_DIR.match(p)]
    if not kept:
        name = root.resolve().name
        kept = [name] if not SEED_DIR.match(name) else [root.resolve().parent.name]
    return "/".join(kept), (seeds[-1] if seeds else None)


class _Digest:
    """The checkpoint's sha256, computed once and only when a sidecar names one."""

    def __init__(self, path: Path):
        self.path, self.value = path, None

    def __call__(self) -> str:
        if self.value is None:
            h = hashlib.sha256()
            with self.path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            self.value = h.hexdigest()
        return self.value


def _sidecar(path: Path, kind: str, digest: _Digest) -> dict | None:
    """`<stem>.<kind>.json` as a dict; None when absent, unreadable (warned) or stale (warned)."""
    side = path.with_name(f"{path.name[: -len('.safetensors')]}.{kind}.json")
    if not side.is_file():
        return None
    try:
        doc = json.loads(side.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        warn(f"{side}: ignored, not JSON ({str(err).splitlines()[0]})")
        return None
    if not isinstance(doc, dict):
        warn(f"{side}: ignored, not a JSON object")
        return None
    sha = doc.get("sha256")
    if isinstance(sha, str) and sha != digest():
        warn(f"{side}: ignored, measured another file (sha256 {sha[:12]}, the checkpoint's {digest()[:12]}): stale")
        return None
    return doc
