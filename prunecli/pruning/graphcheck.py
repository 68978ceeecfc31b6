"""Refuse, in seconds, an architecture Torch-Pruning's dependency graph would mis-read.

Channel slices that feed a concatenation: ReXNet's block ends with
`torch.cat([x[:, :c] + shortcut, x[:, c:]], dim=1)`. Torch-Pruning 1.6's shape inference
(`infer_out_channels_recursively`) has no case for a slice: it takes the sliced tensor's
width for the slice's, and an add's width from its last input. The concat offsets come out
wrong and compound block after block (rexnet_100's `features.15` concat gets offsets
[0, 453, 627] where the tensors are [0, 174, 185]), or unknown. The wrong index maps then
spread one group's channels over thousands of partial index sets, and `Group.has_pruning_op`
scans the whole group for each: building the groups of rexnet_100 ran for over ten minutes,
and would describe the wrong channels if it finished. We find the pattern on the graph (one
build, seconds) and refuse with the layers to `--ignore`; once those convs are ignored no
group is rooted at them, the concat is never reached, and the rest of the model prunes.
ReXNet and DPN need no `--ignore`: `timm_concat.py` leaves exactly those convs whole, and the
layers extensions keep whole count as ignored here; this check refuses what is left.
"""

from __future__ import annotations

import fnmatch
import re

import torch.nn as nn
import torch_pruning as tp

from prunecli.errors import UserError


def _channel_slice(node) -> bool:
    """A slice along the feature dimension (dim 1 of NCHW/NC, dim 2 of token tensors)."""
    if node.type != tp.ops.OPTYPE.SLICE:
        return False
    sizes = getattr(node.grad_fn, "_saved_self_sym_sizes", None)
    channel_dim = 2 if sizes is not None and len(sizes) == 3 else 1
    return node.module.dim == channel_dim


def _is_layer(node) -> bool:
    return isinstance(node.module, (nn.modules.conv._ConvNd, nn.Linear))


def _upstream(node, stop_at_layers: bool = True):
    """Nodes reached walking back from `node`'s inputs, not crossing Conv/Linear layers."""
    seen, stack = set(), list(node.inputs)
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        yield n
        if not (stop_at_layers and _is_layer(n)):
            stack.extend(n.inputs)


def sliced_concats(graph) -> list[tuple[object, list[nn.Module]]]:
    """(concat node, the Conv/Linear layers feeding it) for each concat fed by a channel slice."""
    out = []
    for node in graph.module2node.values():
        if node.type != tp.ops.OPTYPE.CONCAT:
            continue
        reached = list(_upstream(node))
        if any(_channel_slice(n) for n in reached):
            out.append((node, [n.module for n in reached if _is_layer(n)]))
    return out


def _candidates(name: str) -> list[tuple[str, bool]]:
    """(glob, over a Sequential index?) generalising `name` over its block: one component that
    holds a digit, or every purely numeric one, becomes `*`."""
    parts = name.split(".")
    out = [(".".join(parts[:i] + ["*"] + parts[i + 1:]), parts[i].isdigit()) for i in range(len(parts) - 1)
           if any(ch.isdigit() for ch in parts[i])]
    out.append((re.sub(r"(?<=\.)\d+(?=\.|$)|^\d+(?=\.)", "*", name), True))
    return out


def _globs(model: nn.Module, offending: list[str]) -> list[str]:
    """Few `--ignore` globs covering `offending`: `features.conv2_1.c1x1_c1` … → `features.*.c1x1_c1`.

    A glob over a Sequential index (`features.*.conv_pwl.conv`) may also match the same layer of
    a block that needs no help: leaving it unpruned is safe, it only prunes less. A glob over a
    named component must match nothing else: `features.conv2_1.*.conv` would also catch DPN's
    reduction convs.
    """
    names = [n for n, _ in model.named_modules() if n]
    wanted, out = set(offending), []
    todo = list(offending)
    while todo:
        best, best_hits, best_extra = todo[0], {todo[0]}, 0
        for glob, numeric in _candidates(todo[0]):
            hits = {n for n in names if fnmatch.fnmatchcase(n, glob)}
            covered, extra = len(hits & wanted), len(hits - wanted)
            allowed = extra == 0 or (numeric and extra < covered)
            if allowed and (covered, -extra) > (len(best_hits & wanted), -best_extra):
                best, best_hits, best_extra = glob, hits, extra
        out.append(best)
        todo = [n for n in todo if n not in best_hits]
    return sorted(out)


def refuse_sliced_concats(model: nn.Module, graph, ignored: list[nn.Module]) -> None:
    """UserError naming the layers to ignore, unless every layer feeding such a concat is ignored."""
    names = {m: n for n, m in model.named_modules()}
    skip = {id(m) for m in ignored}
    offending = list(dict.fromkeys(m for _, layers in sliced_concats(graph) for m in layers
                                   if id(m) not in skip and m in names))
    if not offending:
        return
    globs = _globs(model, [names[m] for m in offending])
    kind = type(offending[0]).__name__
    raise UserError(
        f"Torch-Pruning cannot follow channel slices that feed a concatenation "
        f"(e.g. `torch.cat([x[:, :c] + shortcut, x[:, c:]])`) at {kind} {names[offending[0]]} "
        f"and {len(offending) - 1} more: its concat offsets come out wrong and its group search takes minutes; "
        f"try {' '.join(f'--ignore {g!r}' for g in globs)}"
    )
