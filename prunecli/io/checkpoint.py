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
from pathlib import Path
from typing import Any

from prunecli.errors import CheckpointError, UserError
from prunecli.io import atomic
from prunecli.io.schema import FORMAT, FORMAT_VERSION, Header, LineageEntry

HEADER_KEY = "prunecli"
MAX_HEADER_BYTES = 100 * 1024 * 1024

# Attributes a checkpoint may change on a module, with their allowed value types. These are
# the sizes pruning changes (channels, features, heads); nothing else can be set from a file.
WHITELIST: dict[str, type] = {
    "in_channels": int,
    "out_channels": int,
    "groups": int,
    "in_features": int,
    "out_features": int,
    "num_features": int,
    "num_channels": int,
    "num_groups": int,
    "normalized_shape": tuple,
    "num_heads": int,
    "head_dim": int,
    "attn_dim": int,
    "scale": float,
    "embed_dim": int,
    "head_hidden_size": int,
    "shape": tuple,  # timm metaformer.Scale's view shape (channels, 1, 1)
    "splits": tuple,  # timm MixedConv2d's input split sizes (one per kernel size)
    "width": int,  # timm Res2Net Bottle2neck's chunk width
    "dim": int,  # timm pvt_v2.Attention's width (tied to its input; pruning/timm_attention_width.py)
    "attention_dim": int,  # timm metaformer.Attention's heads × head_dim
    "channel_splits": tuple,  # timm coat.ConvRelPosEnc: channels of each depthwise-conv head group
    # EfficientFormer / TinyViT attention: per-head value dims and the widths derived from them
    "val_dim": int,
    "val_attn_dim": int,
    "out_dim": int,
    "key_attn_dim": int,
    "hidden_dim": int,  # torchvision VisionTransformer's embedding width (pruning/tv_blocks.py)
    "kdim": int,  # nn.MultiheadAttention's key/value widths (= embed_dim; set by Torch-Pruning)
    "vdim": int,
}


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
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
        head += fh.read(min(n, MAX_HEADER_BYTES + 1))
    return _header_of(_split(head, size)[0])


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
    computed in 1 MiB chunks, and the tensors come a few at a time through safetensors'
    memory-mapped reader (reopened every 64 MiB), each copied into the freshly built model.
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
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
        head += fh.read(min(n, MAX_HEADER_BYTES + 1))
    table, _ = _split(head, size)
    header = _header_of(table)
    model, entry = _rebuild(header, {k: _Shape(v) for k, v in table.items() if k != "__metadata__"})
    _copy_tensors(model, path, header, table)
    return Loaded(model.to(device).eval(), header, _file_sha256(path), entry)


def load_bytes(data: bytes, device: str = "cpu") -> Loaded:
    """Load checkpoint bytes (read from a file, or about to be written: `prune` verifies them)."""
    from safetensors.torch import load as st_load

    header = read_header(data)
    try:
        tensors = st_load(data)
    except Exception as err:  # safetensors raises its own error types
        raise CheckpointError(f"corrupt tensor data: {err}") from None
    model, entry = _rebuild(header, tensors)
    _load_strict(model, tensors, header)
    return Loaded(model.to(device).eval(), header, sha256(data), entry)


def _load_strict(model, tensors: dict, header: Header) -> None:
    """`load_state_dict(strict=True)` with the model's module versions; a mismatch is one line."""
    try:
        model.load_state_dict(versioned(model, tensors), strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"weights do not match model {header.model.name!r}: {str(err)[:300]}") from None


class _Shape:
    """A tensor's shape from the file's table: all `apply_structure` needs before the data."""

    def __init__(self, info: dict):
        try:
            self.shape = tuple(int(d) for d in info["shape"])
        except (KeyError, TypeError, ValueError):
            raise CheckpointError("corrupt safetensors header: a tensor without a valid shape") from None


def _rebuild(header: Header, tensors: dict):
    """The registry model re-shaped as the header says (removed blocks, pruned sizes, tensor shapes)."""
    from prunecli.models import build_model

    model, entry, _ = build_model(header.model.name, **header.model.kwargs)
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


def apply_structure(model, structure: dict[str, dict[str, Any]], tensors: dict) -> None:
    """Set whitelisted attributes, then re-shape parameters and buffers to the stored shapes."""
    import torch

    for path, attrs in structure.items():
        module = _submodule(model, path)
        for attr, value in attrs.items():
            where = f"{path}.{attr}" if path else f"the model's {attr}"
            kind = WHITELIST.get(attr)
            if kind is None or not _settable(module, attr):
                why = " (a property of " + type(module).__name__ + ")" if _is_property(module, attr) else ""
                raise CheckpointError(f"checkpoint asks to set {where}{why}, which is not allowed")
            if kind is tuple:
                if not (isinstance(value, list) and all(type(v) is int for v in value)):
                    raise CheckpointError(f"{where} must be a list of integers")
                value = tuple(value)
            elif kind is float and type(value) in (int, float):
                value = float(value)
            elif type(value) is not kind:
                raise CheckpointError(f"{where} must be {kind.__name__}, got {type(value).__name__}")
            setattr(module, attr, value)
    for key, tensor in tensors.items():
        owner_path, _, name = key.rpartition(".")
        try:
            owner = model.get_submodule(owner_path) if owner_path else model
        except AttributeError:
            continue  # strict loading reports unexpected keys
        if name in owner._parameters and owner._parameters[name] is not None:
            param = owner._parameters[name]
            if param.shape != tensor.shape:
                param.data = torch.empty(tensor.shape, dtype=param.dtype)
        elif name in owner._buffers and owner._buffers[name] is not None:
            buf = owner._buffers[name]
            if buf.shape != tensor.shape:
                owner._buffers[name] = torch.empty(tensor.shape, dtype=buf.dtype)


def _settable(module, attr: str) -> bool:
    """A size a checkpoint may set: a plain attribute of this module instance.

    Wrappers such as timm's `ConvNormAct` or `BatchNormAct2d` expose `out_channels`,
    `num_features`, ... as properties that read the inner conv/bn (or a class default); the
    inner module carries the real attribute and its own entry, so a property is never set.
    """
    return attr in vars(module) and not _is_property(module, attr)


def _is_property(module, attr: str) -> bool:
    import inspect

    return isinstance(inspect.getattr_static(type(module), attr, None), property)


def _submodule(model, path: str):
    try:
        return model.get_submodule(path) if path else model
    except AttributeError:
        raise CheckpointError(f"checkpoint names module {path!r}, which the model does not have") from None


def structure_diff(model, reference) -> dict[str, dict[str, Any]]:
    """Whitelisted attributes of `model` that differ from an unpruned `reference` build."""
    ref = dict(reference.named_modules())
    diff: dict[str, dict[str, Any]] = {}
    for path, module in model.named_modules():
        base = ref.get(path)
        if base is None:
            continue
        for attr, kind in WHITELIST.items():
            if not _settable(module, attr):
                continue
            value = getattr(module, attr)
            if not isinstance(value, {float: (int, float), tuple: (tuple, list)}.get(kind, kind)):
                continue  # e.g. timm metaformer.Scale's `scale` is a Parameter, not the attention float
            if value != getattr(base, attr, None):
                diff.setdefault(path, {})[attr] = list(value) if isinstance(value, tuple) else value
    return diff


def removed_modules(model, reference) -> list[str]:
    """Paths where `model` has an identity in place of a module of the unpruned `reference`."""
    import torch.nn as nn

    ref = dict(reference.named_modules())
    return [path for path, module in model.named_modules()
            if isinstance(module, nn.Identity) and path in ref and not isinstance(ref[path], nn.Identity)]


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
