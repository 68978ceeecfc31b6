"""Zero-group removal: turn a group-sparse model (after a ProxSGD search) into a smaller dense one.

Chatzimichailidis, Zela, Keuper, Yang, "GSparsity", AutoML-Conf 2022; our spec
`shared/research/seeds-mbdl-gsparsity.md` §2.4 and gotcha 6. A channel goes when every
Conv/Linear filter that produces it (all members of its Torch-Pruning group, e.g. every conv
feeding one residual channel) has ‖W_f‖₂ < `--threshold` (1e-6 as the paper); Torch-Pruning
removes the coupled BN entries and the consumers' input columns.

A zero filter does not output zero after BatchNorm: it outputs the constant β − γμ/σ, and
ReLU of it still reaches the next layer. `--fold` chooses what happens to that constant:

* `reference` (the default; the paper's `models_with_reduce_conv12.py` + `transfer_model_parameters`):
  the constant is dropped — kept filters, their BN entries and the consumers' kept input columns
  are copied, nothing else. A bottleneck whose conv1 or conv2 lost every filter loses its whole
  residual branch: the block computes ReLU(shortcut(x)). Here that branch's BatchNorms are set to
  output exactly 0; a block that then computes its input unchanged (no downsample; its input is
  a ReLU output) is replaced by an identity, otherwise one zero channel per conv remains as a
  stub (the checkpoint can only remove channels or replace modules), computing 0.
* `exact-1x1` (ours): before removal we measure, on a probe batch, each consumer's input on the
  removed channels (a constant) and fold `const · ΣW[:, c]` into the consumer's bias, or into the
  running mean of the BatchNorm right after it. Exact for 1×1 consumers and Linear layers and for
  the interior pixels of padded k×k convolutions; at image borders the zero padding meets the
  constant only partly, so a difference remains there. A layer whose filters are all zero keeps
  one (zero) channel, its constant folded.

Either way `prune` reports the largest output difference it measured on a probe batch
(`max_output_diff`, beside `output_scale`), so the cost of the choice is visible.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prunecli.methods import Method, register_method
from prunecli.methods.params import SIMILARITY, THRESHOLD, TIMEOUT, Param

if TYPE_CHECKING:  # torch is imported where it runs: `prune --help` reads this file
    import torch
    import torch.nn as nn

def _filters(module: nn.Module, idxs: list[int]) -> torch.Tensor:
    """‖W_f‖₂ of the given output filters (bias excluded: the paper groups weights only)."""
    return module.weight.detach()[idxs].flatten(1).norm(dim=1)


def zero_channels(model: nn.Module, input_shape, protected: tuple[str, ...], threshold: float):
    """{root conv name: removable channels}, and per root the (consumer, input indices) to fold."""
    import torch.nn as nn
    import torch_pruning as tp

    from prunecli.pruning.structured import _graph, protected_modules

    graph = _graph(model, input_shape)
    names = {m: n for n, m in model.named_modules()}
    ignored = protected_modules(model, protected, [])
    removed, consumers = {}, {}
    for group in graph.get_all_groups(ignored_layers=ignored, root_module_types=[nn.Conv2d]):
        root = group[0].dep.target.module
        candidates = (_filters(root, list(range(root.out_channels))) < threshold).nonzero().flatten().tolist()
        keep = _all_producers_zero(graph, root, candidates, threshold) if candidates else []
        if len(keep) == root.out_channels:  # a layer needs one channel; a zero one computes the same
            keep = keep[:-1]
        if not keep:
            continue
        cut = graph.get_pruning_group(root, tp.prune_conv_out_channels, keep)
        removed[names[root]] = keep
        consumers[names[root]] = [(d.target.module, [int(i) for i in idxs]) for d, idxs in cut
                                  if graph.is_in_channel_pruning_fn(d.handler)
                                  and isinstance(d.target.module, nn.Conv2d | nn.Linear)]
    return removed, consumers, graph


def _all_producers_zero(graph, root: nn.Module, candidates: list[int], threshold: float) -> list[int]:
    """The candidates for which every filter coupled to them (e.g. all convs adding into one
    residual channel) is below the threshold too."""
    import torch
    import torch.nn as nn
    import torch_pruning as tp

    mask = torch.ones(len(candidates), dtype=torch.bool)
    for dep, idxs in graph.get_pruning_group(root, tp.prune_conv_out_channels, candidates):
        module = dep.target.module
        if not (graph.is_out_channel_pruning_fn(dep.handler) and isinstance(module, nn.Conv2d | nn.Linear)):
            continue
        below = _filters(module, [int(i) for i in idxs]) < threshold
        mask &= below if len(below) == len(candidates) else torch.full_like(mask, bool(below.all()))
    return [c for c, ok in zip(candidates, mask.tolist()) if ok]


def fold_constants(model: nn.Module, input_shape, consumers: dict, graph) -> list[str]:
    """Fold each removed channel's constant input into its consumers (see the module docstring).

    Returns the names of consumers it could not fold into (no bias and no BatchNorm after them).
    """
    import torch

    wanted = {}
    for pairs in consumers.values():
        for module, idxs in pairs:
            wanted.setdefault(module, set()).update(idxs)
    seen: dict[nn.Module, torch.Tensor] = {}

    def hook(module, inputs):
        x = inputs[0].detach()
        seen[module] = x.mean(dim=[d for d in range(x.dim()) if d != 1]) if x.dim() > 2 else x.mean(0)

    _probe(model, input_shape, [m.register_forward_pre_hook(hook) for m in wanted])
    names = {m: n for n, m in model.named_modules()}
    unfolded = []
    with torch.no_grad():
        for module, idxs in wanted.items():
            idxs = sorted(idxs)
            const = seen[module][idxs]
            w = module.weight[:, idxs]
            delta = (w.flatten(2).sum(2) if w.dim() > 2 else w) @ const
            if not bool(delta.abs().max() > 0):
                continue
            if module.bias is not None:
                module.bias += delta
            elif (bn := _batchnorm_after(module, graph)) is not None:
                bn.running_mean -= delta
            else:
                unfolded.append(names[module])
    return unfolded


def _batchnorm_after(module: nn.Module, graph):
    import torch.nn as nn

    node = graph.module2node.get(module)
    for out in node.outputs if node is not None else []:
        if isinstance(out.module, nn.modules.batchnorm._BatchNorm):
            return out.module
    return None


FOLDS = ("reference", "exact-1x1")


def decide(loaded, options: dict) -> tuple[dict, dict]:
    """Channels whose producing filters are all below `options['threshold']`; constants dropped
    with the reference's all-zero branches removed (`fold=reference`), or folded (`exact-1x1`)."""
    from prunecli.console import err, warn
    from prunecli.errors import UserError

    fold = options.get("fold") or "reference"
    if fold not in FOLDS:
        raise UserError(f"--fold {fold!r}: use reference or exact-1x1")
    model, shape = loaded.model, loaded.header.input_shape
    removed, consumers, graph = zero_channels(model, shape, loaded.entry.protected, options["threshold"])
    branches: list[str] = []
    if fold == "exact-1x1":
        unfolded = fold_constants(model, shape, consumers, graph)
        if unfolded:
            warn(f"cannot fold the removed channels' constant output into {', '.join(unfolded[:3])} "
                 "(no bias, no BatchNorm after it): the compact model's output differs")
    else:
        branches, gone = drop_zero_branches(model, shape, loaded.entry.protected, options["threshold"], removed)
        if branches:
            err.print(f"residual branches removed (a conv lost every filter): {len(branches)}, "
                      f"{len(gone)} of them whole blocks now identities")
    details = {root: {"threshold": options["threshold"], "zero_channels": len(idxs), "fold": fold,
                      **({"branch_removed": True} if root.rpartition(".")[0] in branches else {})}
               for root, idxs in removed.items()}
    return removed, details


def drop_zero_branches(model: nn.Module, input_shape, protected: tuple[str, ...], threshold: float,
                       removed: dict) -> tuple[list[str], list[str]]:
    """The reference's treatment of a bottleneck whose conv1 or conv2 has no filter left: the branch
    goes. Updates `removed` in place; returns (blocks whose branch went, blocks now identities)."""
    import torch
    import torch.nn as nn

    from prunecli.pruning.blocks import replace_with_identity

    named = dict(model.named_modules())
    blocks = [b for b in _conv12_blocks(model, protected)
              if any(bool((_filters(c, list(range(c.out_channels))) < threshold).all())
                     for c in (named[f"{b}.conv1"], named[f"{b}.conv2"]))]
    if not blocks:
        return [], []
    with torch.no_grad():
        for block in blocks:
            for child in named[block].children():
                if isinstance(child, nn.modules.batchnorm._BatchNorm | nn.Conv2d):
                    child.weight.zero_()  # the branch ends in a BN (checked): γ = β = 0 → it outputs 0
                    if child.bias is not None:
                        child.bias.zero_()
    unchanged = _computes_its_input(model, input_shape, blocks)
    for block in blocks:
        for conv in ("conv1", "conv2"):
            name = f"{block}.{conv}"
            removed.pop(name, None)
            if block not in unchanged:
                removed[name] = list(range(1, named[name].out_channels))  # a zero stub channel remains
    replace_with_identity(model, unchanged)
    return blocks, unchanged


def _conv12_blocks(model: nn.Module, protected: tuple[str, ...]) -> list[str]:
    """Bottlenecks, as the reference's code knows them: modules with conv1, conv2, conv3 and BatchNorm
    children. (In a basic block conv2 writes into the residual stream itself: its channels are
    coupled to every block of the stage, so its branch cannot go by removing conv2's filters.)"""
    import torch.nn as nn

    from prunecli.errors import UserError

    try:
        from prunecli.engine.proxsgd import regularized_filters

        names = regularized_filters(model, "conv12", protected)
    except UserError:
        return []
    named = dict(model.named_modules())
    parents = sorted({n.rpartition(".")[0] for n in names})
    return [p for p in parents if f"{p}.conv1" in names and f"{p}.conv2" in names
            and isinstance(getattr(named[p], "conv3", None), nn.Conv2d)
            and any(isinstance(c, nn.modules.batchnorm._BatchNorm) for c in named[p].children())]


def _computes_its_input(model: nn.Module, input_shape, blocks: list[str]) -> list[str]:
    """The blocks whose output equals their input on a probe batch (safe to replace by identities)."""
    import torch

    named, same = dict(model.named_modules()), {}

    def hook(name):
        def check(module, inputs, output) -> None:
            same[name] = isinstance(output, torch.Tensor) and torch.equal(inputs[0], output)
        return check

    _probe(model, input_shape, [named[b].register_forward_hook(hook(b)) for b in blocks])
    return [b for b in blocks if same.get(b)]


def _probe(model: nn.Module, input_shape, handles: list) -> None:
    """One eval-mode forward pass of a probe batch for the hooks in `handles`, which are removed
    afterwards; the model's train/eval mode is restored."""
    from prunecli.profiling.counts import example_input, hooked_forward

    hooked_forward(model, example_input(input_shape, batch=4), handles)


FOLD = Param("fold", str | None, None, "what happens to the constant a zero filter still outputs after "
             "BatchNorm: reference (default; the paper's compression: dropped, and a bottleneck whose conv1 or conv2 "
             "lost every filter loses its residual branch) or exact-1x1 (ours: folded into the consumer's bias / "
             "next BN, exact for 1×1 and Linear consumers, approximate at the borders of padded k×k convs)",
             SIMILARITY, choices=FOLDS, show_default=False)
PARAMS = (THRESHOLD, FOLD, TIMEOUT)

register_method(Method(
    "zero-groups", "structured", "Chatzimichailidis et al. AutoML-Conf 2022 (GSparsity)",
    "remove channels whose filters a group-sparse search zeroed (--threshold 1e-6); --fold reference "
    "(constants dropped, all-zero branches removed) or exact-1x1 (constants folded)",
    decide=decide, decide_needs_data=False, check_output=True, params=PARAMS,
))
