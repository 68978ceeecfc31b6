"""Import plain weights into a prunecli checkpoint.

A `.pth`/`.pt` state dict is read with `torch.load(weights_only=True)` (no arbitrary
unpickling); a `.safetensors` state dict is read as is. `pretrained` asks timm for its
published weights, which needs the hub (not reachable offline: a clear error then).
"""

from __future__ import annotations

from pathlib import Path

from prunecli.errors import UserError
from prunecli.io import checkpoint as ckpt
from prunecli.io.schema import ModelRef


def read_state_dict(path: str) -> dict:
    import torch

    p = Path(path)
    if not p.is_file():
        raise UserError(f"weights file not found: {p}")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(p)
        except Exception as err:
            raise UserError(f"cannot read {p}: {err}") from None
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:
        first = str(err).splitlines()[0].split(". This is an internal")[0]  # torch's zip reader adds advice
        raise UserError(f"cannot read {p} as a weights-only state dict: {first[:200]}") from None
    for key in ("state_dict", "model", "model_state_dict"):  # common training-script wrappers
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{p} does not hold a state dict of tensors")
    from collections import OrderedDict

    state = OrderedDict((k.removeprefix("module."), v) for k, v in obj.items())
    meta = getattr(obj, "_metadata", None)  # per-module versions torch.save keeps (MNASNet reads them)
    if meta is not None:
        state._metadata = OrderedDict((k.removeprefix("module."), v) for k, v in meta.items())  # type: ignore[attr-defined]
    return state


def infer_num_classes(model_name: str, state: dict) -> int | None:
    """The class count the weights were trained for: the output width of the entry's classifier
    (its protected layer, by name), said on stderr; None for other tasks or when absent."""
    from prunecli.console import err
    from prunecli.models import get_entry

    entry = get_entry(model_name)
    if entry.task != "classification":
        return None
    for layer in entry.protected:
        weight = state.get(f"{layer}.weight")
        if weight is not None and weight.dim() >= 2:
            n = int(weight.shape[0])
            if n != entry.num_classes:
                err.print(f"inferred --num-classes {n} from {layer}.weight {tuple(weight.shape)}")
            return n
    return None


def _check_hub_reachable(model_name: str) -> None:
    """Fail in a second, not after a minute of download retries, where the hub is unreachable."""
    import os
    import socket
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError as err:
        raise UserError(f"cannot fetch pretrained weights for {model_name}: the model hub ({host}) is "
                        f"unreachable ({err.strerror or err}); download the weights elsewhere and "
                        "`prunecli import FILE --model ...`") from None


def import_weights(src: str | None, model_name: str, out: str, num_classes: int | None,
                   input_size: int | None, pretrained: bool, new_head: bool = False) -> dict:
    from prunecli.models import build_model

    extra = {"pretrained": True} if pretrained else {}
    if pretrained:
        _check_hub_reachable(model_name)
    state = read_state_dict(src) if src is not None else None
    if num_classes is None and state is not None and not new_head:
        num_classes = infer_num_classes(model_name, state)
    try:
        model, entry, kwargs = build_model(model_name, num_classes=num_classes, **extra)
    except UserError:
        raise
    except Exception as err:  # timm raises network errors from the hub
        raise UserError(f"could not fetch pretrained weights for {model_name}: {str(err)[:200]} "
                        "(the model hub is unreachable offline; import a local .pth instead)") from None
    kwargs.pop("pretrained", None)
    fresh_head: list[str] = []
    if state is not None:
        if new_head:
            state, fresh_head = _drop_head(model, state, entry.protected)
        if getattr(state, "_metadata", None) is None:  # a safetensors file, or a dict rebuilt by a script
            state = ckpt.versioned(model, state)
        try:
            model.load_state_dict(state, strict=not new_head)
        except RuntimeError as err:
            raise UserError(f"weights do not fit {model_name}: {str(err).splitlines()[0][:300]}") from None
    shape = list(entry.input_shape)
    if input_size:
        shape = [shape[0], input_size, input_size]
    header = ckpt.new_header(None, model=ModelRef(name=model_name, kwargs=kwargs), task=entry.task,
                             input_shape=shape, num_classes=kwargs.get("num_classes"),
                             lineage=[ckpt.lineage_entry("import", {"source": src, "pretrained": pretrained,
                                                                   "new_head": fresh_head}, None)])
    ckpt.save(model, out, header)
    return {"output": out, "model": model_name, "tensors": len(model.state_dict()),
            **({"new_head": ", ".join(fresh_head)} if new_head else {})}


def _drop_head(model, state: dict, protected: tuple[str, ...]) -> tuple[dict, list[str]]:
    """Leave the classifier (the entry's protected layers) freshly initialised; everything else
    must still load exactly: only the head's keys may be missing from or differ in `state`."""
    own = model.state_dict()
    head = [k for k in own if any(k == p or k.startswith(p + ".") for p in protected)]
    if not head:
        raise UserError("--new-head: this model declares no classifier layer to re-initialise")
    kept = {k: v for k, v in state.items() if k not in head}
    missing = sorted(set(own) - set(kept) - set(head))
    unexpected = sorted(set(kept) - set(own))
    if missing or unexpected:
        what = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
        raise UserError(f"--new-head: the weights do not fit outside the classifier ({what})")
    return kept, sorted({k.rpartition(".")[0] for k in head})
