"""Atomic writes: a crash never leaves a half-written checkpoint or sidecar.

Data goes to a temporary file in the destination folder, is flushed to disk, and is then
renamed over the destination (`os.replace` is atomic on POSIX within one file system).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

from prunecli.errors import UserError


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically; `-` writes to stdout. Under torchrun only rank 0 writes."""
    from prunecli.engine.dist import is_main

    if not is_main():
        return
    if str(path) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    path = Path(path)
    check_output(path, option="output", probe=False)
    fd, tmp = _temp_in(path, ".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as err:  # disk full, quota, a folder created at `path` meanwhile: the user's to fix
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {err.strerror or err}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def written_by(path: str | Path, suffix: str = ".tmp"):
    """For writers that make the file themselves (an exporter): yields an empty temporary file in
    `path`'s folder; when the block completes it is flushed to disk, given the usual permissions
    and renamed over `path`; when the block raises it is removed and `path` is untouched."""
    path = Path(path)
    fd, name = _temp_in(path, suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _temp_in(path: Path, suffix: str) -> tuple[int, str]:
    """mkstemp beside `path` (same file system: the rename is atomic); an unwritable folder is one line."""
    try:
        return tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as err:
        raise UserError(f"cannot write in folder {path.parent} ({err.strerror or err}), needed for {path}") from None


def check_output(path: str | Path, *inputs: str | Path | None, option: str = "-o", probe: bool = True) -> None:
    """Refuse an output path that cannot be written, before any work is done (a training run
    should not fail at its first save): an existing folder, a missing or non-writable parent
    folder, or one of the command's own inputs. Writing over an input is refused because the
    input's sidecars (`.masks.json`, `.flops.json`, `.state.pt`) would be replaced by the new
    ones while lineage and the sha256 of the parent still name the old file; write a new file
    and rename it. `-` (stdout) is always fine.

    write_bytes calls it again, so sidecars and reports get the same one-line errors."""
    if str(path) == "-":
        return
    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"{option} {path} is a folder; give a file path, e.g. {path / 'out.safetensors'}")
    parent = path.parent
    if not parent.exists():
        raise UserError(f"output folder does not exist: {parent}")
    if not parent.is_dir():
        raise UserError(f"{option} {path}: {parent} is not a folder")
    if probe:
        _probe(parent, f"{option} {path}")
    for src in inputs:
        if src is None or str(src) == "-" or not path.exists():
            continue
        try:
            same = os.path.samefile(path, Path(src).expanduser())
        except OSError:
            continue
        if same:
            raise UserError(f"{option} {path} is the input {src}: it and its sidecars would be overwritten; "
                            "write to a new file")


def _probe(folder: Path, what: str) -> None:
    """Create and remove an empty temporary file: the one reliable test (os.access says yes to
    root in a read-only mount or on an immutable folder)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".prunecli-probe.", suffix=".tmp", dir=folder)
    except OSError as err:
        raise UserError(f"cannot write in folder {folder} ({err.strerror or err}), needed for {what}") from None
    os.close(fd)
    Path(tmp).unlink(missing_ok=True)


def write_json(path: str | Path, obj: object) -> None:
    write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def _umask() -> int:
    """The process umask (mkstemp creates 0600 files; outputs should look like any other)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
