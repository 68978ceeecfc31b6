"""Self-describing safetensors checkpoints (format documented in docs/checkpoint-format.md).

A checkpoint is one `.safetensors` file. Its string metadata holds one key, `prunecli`, a
versioned JSON header naming the registry model and its kwargs, and the structural changes
pruning made. Loading rebuilds the registry model, applies only whitelisted attribute
changes, re-shapes parameters to the stored tensor shapes and loads the weights strictly.
Nothing is unpickled and no code or arbitrary attribute comes from the file.
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from prunecli.errors import CheckpointError, UserError
from prunecli.io import atomic
from prunecli.io.schema import FORMAT, FORMAT_VERSION, Header, LineageEntry
from prunecli.io.structure import WHITELIST, apply_structure, removed_modules, structure_diff  # noqa: F401 - API

HEADER_KEY = "prunecli"
MAX_HEADER_BYTES = 100 * 1024 * 1024

def read_bytes(src: str | Path) -> bytes:
    """Read a checkpoint from a path, or from stdin when `src` is `-`."""
    if str(src) == "-":
        if sys.stdin.isatty():
            raise UserError("reading a checkpoint from stdin (`-`), but stdin is a terminal")
        return sys.stdin.buffer.read()
    path = Path(src)
    if path.is_dir():
        raise UserError(f"{path} is a folder, not a checkpoint file")
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    return path.read_bytes()


def _split(data: bytes, size: int | None = None) -> tuple[dict, int]:
    """Parse the safetensors JSON header ourselves to give precise errors on bad files.

    `data` is the whole file, or (with `size`, the file's length) at least its header.
    """
    size = len(data) if size is None else size
    if size < 8 or len(data) < 8:
        raise CheckpointError("not a safetensors file (shorter than its 8-byte header length)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER_BYTES or 8 + n > size or 8 + n > len(data):
        raise CheckpointError("not a safetensors file, or truncated (header length beyond end of file)")
    try:
        table = json.loads(data[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"corrupt safetensors header: {err}") from None
    if not isinstance(table, dict):
        raise CheckpointError("corrupt safetensors header: not a JSON object")
    ends = [v["data_offsets"][1] for k, v in table.items() if k != "__metadata__" and isinstance(v, dict)]
    if 8 + n + max(ends, default=0) > size:
        raise CheckpointError("truncated checkpoint: tensor data ends beyond the end of the file")
    return table, n


def read_header(data: bytes) -> Header:
    return _header_of(_split(data)[0])


def read_file_header(path: str | Path) -> Header:
    """The header of a checkpoint file from its first bytes: no tensor is read, no model built,
    nothing unpickled (`prunecli report` lists hundreds of runs this way)."""
    return _header_of(_file_table(Path(path)))


def _file_table(path: Path) -> dict:
    """The safetensors table (tensor names, shapes, offsets, `__metadata__`) from a file's first bytes."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
        head += fh.read(min(n, MAX_HEADER_BYTES + 1))
    return _split(head, size)[0]


def _header_of(table: dict) -> Header:
    meta = table.get("__metadata__") or {}
    if HEADER_KEY not in meta:
        raise CheckpointError(
            "safetensors file has no prunecli header; use `prunecli import` to convert plain weights"
        )
    try:
        return Header.model_validate_json(meta[HEADER_KEY])
    except ValueError as err:
        first = str(err).splitlines()[:3]
        raise CheckpointError(f"invalid prunecli header: {' '.join(first)}") from None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Loaded:
    """A loaded checkpoint: the model, its header, and the file's sha256 (for lineage)."""

    def __init__(self, model, header: Header, digest: str, entry):
        self.model, self.header, self.sha256, self.entry = model, header, digest, entry


def load(src: str | Path, device: str = "cpu") -> Loaded:
    """Load a checkpoint (path or `-`) into a freshly built registry model; an error names the file
    (a command may read several: --compare, --teacher, --init).

    A file is never read whole: the header is parsed from its first bytes, the sha256 is
    computed in 1 MiB chunks (on a second thread, while the model is built), and the tensors
    come a few at a time through safetensors' memory-mapped reader (reopened every 64 MiB),
    each copied into the freshly built model.
    So the peak is about the model's own weights plus one 64 MiB chunk, not three copies of the file
    (bytes, a tensor dict, the model) as reading it into memory first costs (issue 14 item 7;
    `bench/load_memory.py`). Stdin (`-`) cannot be mapped and is read whole.
    """
    try:
        return _load(src, device)
    except CheckpointError as err:
        raise CheckpointError(f"{'stdin' if str(src) == '-' else src}: {err}", hint=err.hint) from None


def _load(src: str | Path, device: str) -> Loaded:
    if str(src) == "-":
        return load_bytes(read_bytes(src), device)
    path = Path(src)
    if path.is_dir():
        raise UserError(f"{path} is a folder, not a checkpoint file")
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    table = _file_table(path)
    header = _header_of(table)
    # the sha256 on a second thread while the model is built: file reads and hashlib release the
    # GIL, so on a second core it costs no time (0.05 s of a ResNet-50's `prune`)
    with ThreadPoolExecutor(1, thread_name_prefix="prunecli-sha256") as pool:
        digest = pool.submit(_file_sha256, path)
        model, entry = _rebuild(header, {k: _Shape(v) for k, v in table.items() if k != "__metadata__"})
        _copy_tensors(model, path, header, table)
        return Loaded(model.to(device).eval(), header, digest.result(), entry)


def load_bytes(data: bytes, device: str = "cpu", skip_init: bool = False, digest: bool = True,
               skeleton=None) -> Loaded:
    """Load checkpoint bytes (read from a file, or about to be written: `prune` verifies them).

    `digest=False` leaves `Loaded.sha256` None (`prune`'s reload check has no use for the hash of
    bytes it made itself: 0.02 s on a ResNet-50).

    `skip_init`: build the model's skeleton on the meta device and take the file's tensors as its
    parameters (`load_state_dict(assign=True)`), skipping the random initialisation every weight
    would get only to be overwritten (a third of `prune`'s own time on a ResNet-50). It leaves
    the global RNG untouched, so it is only for callers that would not otherwise draw from it
    afterwards (`prune`'s check that its bytes reload). A model that keeps a tensor the file does
    not hold (a non-persistent buffer, a tensor attribute) is rebuilt the ordinary way.
    """
    from safetensors.torch import load as st_load

    header = read_header(data)
    try:
        tensors = st_load(data)
    except Exception as err:  # safetensors raises its own error types
        raise CheckpointError(f"corrupt tensor data: {err}") from None
    model = _skeleton_load(header, tensors, skeleton) if skip_init else None
    if model is None:
        model, entry = _rebuild(header, tensors)
        _load_strict(model, tensors, header)
    else:
        model, entry = model
    return Loaded(model.to(device).eval(), header, sha256(data) if digest else None, entry)


def _skeleton_load(header: Header, tensors: dict, skeleton=None):
    """(model, entry) built on the meta device and filled by assignment, or None when the model
    keeps a tensor that the state dict does not carry (it would stay on the meta device).

    `skeleton`: the registry build of `header.model` on the meta device, already made by the
    caller (`prune` builds one to diff the pruned structure against), used instead of a second
    build; it is re-shaped and filled in place."""
    import torch

    try:
        with torch.device("meta"):
            model, entry = _rebuild(header, tensors, skeleton)
    except Exception:  # noqa: BLE001 - a model that cannot be built on meta takes the ordinary path
        return None
    own = model.state_dict()
    if own.keys() != tensors.keys() or any(own[k].dtype != t.dtype for k, t in tensors.items()):
        return None  # the ordinary path reports the mismatch, or casts as load_state_dict does
    _load_strict(model, tensors, header, assign=True)
    if any_meta(model):
        return None
    return model, entry


def any_meta(model) -> bool:
    """Whether a parameter, buffer or tensor attribute of any module is still on the meta device."""
    import torch

    for module in model.modules():
        tensors = [*module._parameters.values(), *module._buffers.values(),
                   *(v for v in vars(module).values() if isinstance(v, torch.Tensor))]
        if any(t is not None and t.is_meta for t in tensors):
            return True
    return False


def _load_strict(model, tensors: dict, header: Header, assign: bool = False) -> None:
    """`load_state_dict(strict=True)` with the model's module versions; a mismatch is one line."""
    try:
        model.load_state_dict(versioned(model, tensors), strict=True, assign=assign)
    except RuntimeError as err:
        raise CheckpointError(f"weights do not match model {header.model.name!r}: {str(err)[:300]}") from None


class _Shape:
    """A tensor's shape from the file's table: all `apply_structure` needs before the data."""

    def __init__(self, info: dict):
        try:
            self.shape = tuple(int(d) for d in info["shape"])
        except (KeyError, TypeError, ValueError):
            raise CheckpointError("corrupt safetensors header: a tensor without a valid shape") from None


def _rebuild(header: Header, tensors: dict, built=None):
    """The registry model (or `built`, that model as the registry built it) re-shaped as the header
    says (removed blocks, pruned sizes, tensor shapes)."""
    from prunecli.models import build_model, get_entry

    if built is None:
        model, entry, _ = build_model(header.model.name, **header.model.kwargs)
    else:
        model, entry = built, get_entry(header.model.name)
    if header.removed_modules:
        from prunecli.pruning.blocks import replace_with_identity

        replace_with_identity(model, header.removed_modules)
    apply_structure(model, header.structure, tensors)
    return model, entry


def _copy_tensors(model, path: Path, header: Header, table: dict) -> None:
    """Strict `load_state_dict`, a few mapped tensors at a time.

    Same keys, shapes and dtype conversion as `load_state_dict(strict=True)`. safetensors maps
    the whole file and every page read stays resident until the file is closed, so it is
    reopened every `_CHUNK` bytes: the peak is the model plus one chunk, not two models.
    Models whose modules customise loading (`_load_from_state_dict` overrides outside torch,
    load hooks) get the plain call instead, at the memory cost of a full tensor dict.
    """
    from safetensors import safe_open

    own = model.state_dict(keep_vars=True)
    keys = sorted((k for k in table if k != "__metadata__"), key=lambda k: table[k]["data_offsets"][0])
    try:
        if set(keys) != set(own) or _custom_loading(model):
            with safe_open(str(path), framework="pt") as f:
                tensors = {k: f.get_tensor(k) for k in keys}
            _load_strict(model, tensors, header)
            return
        for chunk in _chunks(keys, table):
            with safe_open(str(path), framework="pt") as f:
                for key in chunk:
                    _copy_one(own[key], f.get_tensor(key), key, header)
    except CheckpointError:
        raise
    except Exception as err:  # safetensors raises its own error types
        raise CheckpointError(f"corrupt tensor data: {err}") from None


_CHUNK = 64 << 20


def _chunks(keys: list[str], table: dict):
    """Runs of consecutive tensors of at most `_CHUNK` bytes (a larger tensor alone)."""
    run: list[str] = []
    size = 0
    for key in keys:
        start, end = table[key]["data_offsets"]
        if run and size + (end - start) > _CHUNK:
            yield run
            run, size = [], 0
        run.append(key)
        size += end - start
    if run:
        yield run


def _copy_one(target, tensor, key: str, header: Header) -> None:
    import torch

    if tensor.shape != target.shape:
        raise CheckpointError(f"weights do not match model {header.model.name!r}: {key} has shape "
                              f"{tuple(tensor.shape)}, the model {tuple(target.shape)}")
    with torch.no_grad():
        target.copy_(tensor)


def versioned(model, tensors: dict):
    """`tensors` with the built model's per-module versions (`state_dict()._metadata`).

    torch saves them beside a state dict; safetensors keeps only tensors. A module whose
    `_load_from_state_dict` reads its version (torchvision's MNASNet refuses `None`) gets the
    version of the class that wrote the file, which is the class building it now: prunecli
    writes checkpoints from this model's own `state_dict()`.
    """
    from collections import OrderedDict

    out = OrderedDict(tensors)
    out._metadata = getattr(model.state_dict(), "_metadata", None)  # type: ignore[attr-defined]
    return out


def _custom_loading(model) -> bool:
    """A module that overrides `_load_from_state_dict` outside torch itself (e.g. a version upgrade hook)."""
    import torch.nn as nn

    base = nn.Module._load_from_state_dict
    for m in model.modules():
        fn = type(m)._load_from_state_dict
        if fn is not base and not fn.__module__.startswith("torch.") or m._load_state_dict_pre_hooks:
            return True
    return False


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tensors_of(model) -> dict:
    """The state dict as contiguous CPU tensors; storage shared between keys is copied."""
    seen: set[int] = set()
    out = {}
    for key, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        ptr = t.untyped_storage().data_ptr()
        out[key] = t.clone() if ptr in seen else t
        seen.add(ptr)
    return out


def dump(model, header: Header) -> bytes:
    """The checkpoint bytes of `model` with `header` (what `save` writes)."""
    from safetensors.torch import save as st_save

    return st_save(tensors_of(model), metadata={HEADER_KEY: header.model_dump_json()})


def save(model, dst: str | Path, header: Header) -> bytes:
    """Serialise `model` with `header` and write it atomically (to stdout for `-`)."""
    data = dump(model, header)
    atomic.write_bytes(dst, data)
    return data


def new_header(parent: Header | None, **fields: Any) -> Header:
    """A header derived from `parent` (or built from scratch), with `fields` replaced."""
    base = parent.model_dump() if parent else {"format": FORMAT, "version": FORMAT_VERSION}
    base.update(fields)
    return Header.model_validate(base)


def lineage_entry(command: str, options: dict, parent_sha256: str | None) -> LineageEntry:
    import datetime

    import torch

    import prunecli

    return LineageEntry(
        command=command,
        options=json.loads(json.dumps(options, default=str)),
        parent_sha256=parent_sha256,
        prunecli=prunecli.__version__,
        torch=torch.__version__,
        time=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
