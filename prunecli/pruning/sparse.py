"""Unstructured sparsity: which weights are prunable, masks as real zeros, and keeping them zero.

An unstructured-pruned checkpoint stores plain weights with exact zeros, and its header lists
the masked parameters (`sparse_params`). The mask is therefore recoverable from the weights
(`w != 0`) and needs no extra tensor or pickled pruning re-parametrisation. Training keeps it
by zeroing the masked entries after every optimizer step (an optimizer post-step hook), which
gives the surviving weights the same updates as `torch.nn.utils.prune`'s `weight_orig * mask`.
"""

from __future__ import annotations

import fnmatch

import torch
import torch.nn as nn

from prunecli.errors import UserError

PRUNABLE = (nn.modules.conv._ConvNd, nn.Linear)


def prunable_modules(model: nn.Module, include_bn: bool = False, ignore: list[str] | tuple = ()) -> list[tuple[str, nn.Module]]:
    """Conv/Linear modules (and BatchNorm when `include_bn`, as the MTP report's DenseNet) whose
    `weight` unstructured pruning may zero, in `named_modules` order; `ignore` globs excluded."""
    kinds = PRUNABLE + ((nn.modules.batchnorm._BatchNorm,) if include_bn else ())
    found = [(n, m) for n, m in model.named_modules()
             if isinstance(m, kinds) and getattr(m, "weight", None) is not None]
    for pattern in ignore:
        if not any(fnmatch.fnmatchcase(n, pattern) for n, _ in found):
            raise UserError(f"--ignore {pattern!r} matches no prunable layer")
    found = [(n, m) for n, m in found if not any(fnmatch.fnmatchcase(n, p) for p in ignore)]
    if not found:
        raise UserError("no prunable Conv/Linear weights left")
    return found


def masks_from_zeros(model: nn.Module, param_names: list[str]) -> dict[str, torch.Tensor]:
    """{parameter name: bool mask of its nonzero entries} — the masks a checkpoint's zeros encode."""
    params = dict(model.named_parameters())
    missing = [n for n in param_names if n not in params]
    if missing:
        raise UserError(f"checkpoint lists sparse parameter {missing[0]!r}, which the model does not have")
    return {n: params[n].detach() != 0 for n in param_names}


class MaskKeeper:
    """Zeroes the masked entries of each parameter; hooked after every optimizer step."""

    def __init__(self, model: nn.Module, masks: dict[str, torch.Tensor]):
        params = dict(model.named_parameters())
        self.pairs = [(params[n], m.to(params[n].device)) for n, m in masks.items()]

    @torch.no_grad()
    def apply(self) -> None:
        for param, mask in self.pairs:
            param.mul_(mask)

    def attach(self, optimizer) -> None:
        """Apply now and after every step; replaces the hook an earlier keeper left on a shared optimizer."""
        self.apply()
        old = getattr(optimizer, "_prunecli_mask_hook", None)
        if old is not None:
            old.remove()
        optimizer._prunecli_mask_hook = optimizer.register_step_post_hook(lambda opt, args, kwargs: self.apply())


def sparsity_rows(model: nn.Module, param_names: list[str]) -> tuple[list[dict], float]:
    """Per-parameter zeros and sparsity, and the sparsity over all of them together."""
    params = dict(model.named_parameters())
    modules = dict(model.named_modules())
    rows, zeros, total = [], 0, 0
    for name in param_names:
        p = params[name]
        z, n = int((p == 0).sum()), p.numel()
        owner = modules.get(name.rpartition(".")[0])
        rows.append({"name": name, "kind": type(owner).__name__, "numel": n, "zeros": z, "sparsity": z / n})
        zeros, total = zeros + z, total + n
    return rows, zeros / max(1, total)


def sparse_counts(model: nn.Module, counted) -> tuple[int, int]:
    """(nonzero params, MACs counting only nonzero weights) from a dense `profiling.counts` count.

    A layer's MACs scale with its weight's density: each nonzero weight does the same number of
    multiply-accumulates in a conv or linear layer. Other layers are counted dense.
    """
    nonzero = sum(int((p != 0).sum()) for p in model.parameters())
    modules = dict(model.named_modules())
    macs = 0.0
    for name, layer in counted.layers.items():
        weight = getattr(modules.get(name), "weight", None)
        if isinstance(modules.get(name), PRUNABLE) and weight is not None and weight.numel():
            macs += layer.macs * float((weight != 0).sum()) / weight.numel()
        else:
            macs += layer.macs
    unlisted = counted.macs - sum(layer.macs for layer in counted.layers.values())  # functional ops
    return nonzero, int(round(macs + unlisted))
