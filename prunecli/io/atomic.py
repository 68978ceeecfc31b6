"""Atomic writes: a crash never leaves a half-written checkpoint or sidecar.

Data goes to a temporary file in the destination folder, is flushed to disk, and is then
renamed over the destination (`os.replace` is atomic on POSIX within one file system).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from prunecli.errors import UserError


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically; `-` writes to stdout."""
    if str(path) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    path = Path(path)
    if not path.parent.exists():
        raise UserError(f"output folder does not exist: {path.parent}")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj: object) -> None:
    write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def _umask() -> int:
    """The process umask (mkstemp creates 0600 files; outputs should look like any other)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
