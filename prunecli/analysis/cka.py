"""`analyze --method cka`: linear minibatch CKA between the layers of one model or of two.

Centered Kernel Alignment with a linear kernel (Kornblith et al., "Similarity of Neural
Network Representations Revisited", ICML 2019), estimated over minibatches with the unbiased
HSIC estimator of Nguyen, Raghu & Kornblith, "Do Wide and Deep Networks Learn the Same
Things?", ICLR 2021 (eq. 3), as `torch_cka` computes it for the MTP report (Akhtar &
Bathula 2023; spec: `shared/research/seeds-similarity-mtp-isomorphic.md` §2.3).

For each batch of n ≥ 4 examples, X = flatten(layer output) and K = XXᵀ with its diagonal
zeroed; HSIC₁(K, L) = [tr(KL) + 1ᵀK1·1ᵀL1/((n−1)(n−2)) − 2·1ᵀKL1/(n−2)] / (n(n−3)).
HSIC(K,L), HSIC(K,K) and HSIC(L,L) are averaged over batches, then
CKA = HSIC(K,L) / √(HSIC(K,K)·HSIC(L,L)). The estimate depends (slightly) on the batch size.

Each hook turns its layer's output into a float64 Gram matrix at once (no activation is
kept); a batch's Grams are stacked to [layers, n, n] and every layer pair's HSIC comes from
three einsums, so there is no Python loop over pairs. Self mode runs the model once per
batch and uses one stack for both sides.

Which modules: `layers` (default) = every Conv2d/Linear, or the `--layers` globs. `all` = what
torch_cka hooks when given no layer list, as the MTP report's VGG heatmaps (42×42 for
torchvision VGG-16): every entry of `named_modules()`, the root (whose output is the logits,
named "") and containers included, in the order their forward hooks fire (a container after
its children), and each output read after the forward pass, as torch_cka keeps references:
an output later changed in place (a conv's by `ReLU(inplace=True)`) is seen changed.
"""

from __future__ import annotations

import fnmatch
import io
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
import torch.nn as nn

from prunecli.console import err, progress, table, warn
from prunecli.errors import UserError

MIN_BATCH = 4


def gram(x: torch.Tensor) -> torch.Tensor:
    """K = XXᵀ (float64) of the flattened per-example features, with its diagonal zeroed."""
    flat = x.detach().flatten(1).double()
    k = flat @ flat.T
    return k.fill_diagonal_(0)


def _hsic(tr_kl, sum_k, sum_l, kl_sum, n: int):
    return (tr_kl + sum_k * sum_l / ((n - 1) * (n - 2)) - 2 * kl_sum / (n - 2)) / (n * (n - 3))


def hsic_unbiased(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:  # noqa: E741
    """Unbiased HSIC of every pair: K [a,n,n], L [b,n,n] (symmetric, zero diagonal) → [a,b]."""
    n = k.shape[-1]
    if n < MIN_BATCH:
        raise ValueError(f"the unbiased HSIC needs n >= {MIN_BATCH} examples, got {n}")
    tr_kl = torch.einsum("aij,bij->ab", k, l)
    kl_sum = torch.einsum("ai,bi->ab", k.sum(1), l.sum(1))
    return _hsic(tr_kl, k.sum((1, 2))[:, None], l.sum((1, 2))[None, :], kl_sum, n)


def hsic_self(k: torch.Tensor) -> torch.Tensor:
    """HSIC(K, K) of each layer of a stack [a,n,n] → [a] (the diagonal of `hsic_unbiased(K, K)`)."""
    n, row = k.shape[-1], k.sum(1)
    return _hsic((k * k).sum((1, 2)), k.sum((1, 2)), k.sum((1, 2)), (row * row).sum(1), n)


class Accumulator:
    """Sums of HSIC(K,L), HSIC(K,K), HSIC(L,L) over batches; batches with n < 4 are dropped."""

    def __init__(self):
        self.kl = self.kk = self.ll = None
        self.batches = self.samples = self.dropped = 0

    def add(self, grams_a: torch.Tensor, grams_b: torch.Tensor | None = None) -> bool:
        """Add one batch's Gram stacks (`grams_b` None: self mode, B = A). False if dropped."""
        n = grams_a.shape[-1]
        if n < MIN_BATCH:
            self.dropped += n
            return False
        kl = hsic_unbiased(grams_a, grams_a if grams_b is None else grams_b)
        kk = kl.diagonal().clone() if grams_b is None else hsic_self(grams_a)
        ll = kk if grams_b is None else hsic_self(grams_b)
        if self.kl is None:
            self.kl, self.kk, self.ll = kl, kk, ll
        else:
            self.kl, self.kk, self.ll = self.kl + kl, self.kk + kk, self.ll + ll
        self.batches += 1
        self.samples += n
        return True

    def matrix(self) -> torch.Tensor:
        """CKA [a,b] from the averaged HSICs (NaN where a layer's HSIC(K,K) is 0, e.g. a dead layer)."""
        if self.kl is None:
            raise UserError(f"CKA needs batches of at least {MIN_BATCH} examples; none was")
        return self.kl / torch.sqrt(self.kk[:, None] * self.ll[None, :])


def cka_matrix(batches: Iterable[tuple[Sequence[torch.Tensor], Sequence[torch.Tensor] | None]]) -> torch.Tensor:
    """CKA [a,b] from (features of A's layers, features of B's layers or None) per batch."""
    acc = Accumulator()
    for feats_a, feats_b in batches:
        stack_b = None if feats_b is None else torch.stack([gram(f) for f in feats_b])
        acc.add(torch.stack([gram(f) for f in feats_a]), stack_b)
    return acc.matrix()


MODULES = ("layers", "all")


def select_layers(model: nn.Module, patterns: Sequence[str], what: str, modules: str = "layers") -> list[str]:
    """Module names matching any glob (named_modules order); default: every Conv2d/Linear;
    `modules="all"`: every entry of `named_modules()`, the root ("") included (torch_cka's default)."""
    if modules == "all":
        return [name for name, _ in model.named_modules()]
    named = [(name, m) for name, m in model.named_modules() if name]
    if not patterns:
        return [name for name, m in named if isinstance(m, nn.Conv2d | nn.Linear)]
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(name, pattern) for name, _ in named):
            raise UserError(f"--layers {pattern!r} matches no module of {what} "
                            f"(e.g. {', '.join(name for name, _ in named[:3])})")
    return [name for name, _ in named if any(fnmatch.fnmatchcase(name, p) for p in patterns)]


class Grams:
    """Forward hooks that turn each chosen layer's output into its Gram matrix (the last call's,
    for a module called twice per forward); `run` returns the batch's stack [layers, n, n].

    `deferred` (torch_cka's way, `--cka-modules all`): keep the outputs themselves and make the
    Grams after the forward, and order the layers by when their hooks first fired."""

    def __init__(self, model: nn.Module, names: list[str], deferred: bool = False):
        self.names, self.store, self.deferred, self.ordered = names, {}, deferred, not deferred
        modules = dict(model.named_modules())
        self.handles = [modules[name].register_forward_hook(self._hook(name)) for name in names]

    def _hook(self, name):
        def fn(module, inputs, output):
            out = output[0] if isinstance(output, tuple | list) else output
            if isinstance(out, torch.Tensor):
                # dict order = first firing; a second call replaces the value, not the position
                self.store[name] = out.detach() if self.deferred else gram(out)
        return fn

    def run(self, model: nn.Module, x: torch.Tensor, what: str) -> torch.Tensor:
        self.store = {}
        model(x)
        if self.deferred:
            self.store = {name: gram(out) for name, out in self.store.items()}
            if not self.ordered:  # rows in firing order, as torch_cka's feature dict
                self.names = [n for n in self.store if n in self.names] + [n for n in self.names if n not in self.store]
                self.ordered = True
        silent = [name for name in self.names if name not in self.store]
        if silent:  # e.g. MultiheadAttention's out_proj, used through F.* and never called
            warn(f"{what}: {len(silent)} layer(s) produced no tensor output, skipped: {', '.join(silent[:5])}")
            self.names = [name for name in self.names if name in self.store]
            if not self.names:
                raise UserError(f"none of the chosen layers of {what} produced an output")
        for name in self.names:
            if self.store[name].shape[0] != len(x):
                raise UserError(f"{what}: layer {name}'s output does not start with the batch "
                                f"dimension ({self.store[name].shape[0]} rows for {len(x)} examples)")
        grams, self.store = torch.stack([self.store[name] for name in self.names]), {}
        return grams

    def remove(self):
        for h in self.handles:
            h.remove()


def accumulate(model_a, model_b, hooks_a, hooks_b, loader, opts, device: str) -> Accumulator:
    acc = Accumulator()
    total = min(len(loader), opts.max_batches or len(loader))
    with torch.inference_mode(), progress() as bar:
        task = bar.add_task("CKA", total=total, status="")
        for i, (x, _) in enumerate(loader):
            if i >= total:
                break
            x = x.to(device)
            grams_a = hooks_a.run(model_a, x, "A")
            grams_b = None if model_b is None else hooks_b.run(model_b, x, "B")
            if not acc.add(grams_a, grams_b):
                warn(f"dropped a final batch of {len(x)} examples (the estimator needs n >= {MIN_BATCH})")
            bar.advance(task)
    return acc


def analyze(loaded, opts) -> dict:
    from prunecli.data.for_model import data_for
    from prunecli.io import checkpoint as ckpt
    from prunecli.utils.runtime import resolve_device

    if opts.batch_size < MIN_BATCH:
        raise UserError(f"--batch-size {opts.batch_size}: CKA needs at least {MIN_BATCH} examples per batch")
    if opts.plot and not Path(opts.plot).parent.is_dir():  # fail before the forward passes, not after
        raise UserError(f"--plot: folder does not exist: {Path(opts.plot).parent}")
    device = resolve_device(opts.device)
    other = ckpt.load(opts.compare) if opts.compare else None
    if other is not None and list(other.header.input_shape) != list(loaded.header.input_shape):
        raise UserError(f"--compare {opts.compare}: input shape {list(other.header.input_shape)} differs "
                        f"from {list(loaded.header.input_shape)}")
    if opts.cka_modules not in MODULES:
        raise UserError(f"--cka-modules {opts.cka_modules!r}: use layers or all")
    if opts.cka_modules == "all" and opts.layers:
        raise UserError("--cka-modules all hooks every module; --layers picks them with --cka-modules layers")
    model_a, model_b = loaded.model.eval().to(device), other and other.model.eval().to(device)
    layers_a = select_layers(model_a, opts.layers, "A", opts.cka_modules)
    layers_b = select_layers(model_b, opts.layers, f"--compare {opts.compare}", opts.cka_modules) if other else layers_a
    dataset = data_for(loaded.header, opts.data)
    err.print(f"CKA over {len(layers_a)} × {len(layers_b)} layers, batches of {opts.batch_size}")
    deferred = opts.cka_modules == "all"
    hooks_a, hooks_b = Grams(model_a, layers_a, deferred), other and Grams(model_b, layers_b, deferred)
    try:
        acc = accumulate(model_a, model_b, hooks_a, hooks_b, dataset.loader("val", opts.batch_size), opts, device)
    finally:
        for hooks in (hooks_a, hooks_b):
            if hooks:
                hooks.remove()
    layers_a = hooks_a.names
    layers_b = hooks_b.names if other else layers_a
    matrix = acc.matrix().cpu()
    report = {
        "layers_a": layers_a, "layers_b": layers_b,
        "matrix": [[round(v, 6) if math.isfinite(v) else None for v in row] for row in matrix.tolist()],
        "batches": acc.batches, "samples": acc.samples, "dropped_samples": acc.dropped,
        "diagonal_mean": float(matrix.diagonal().nanmean()) if layers_a == layers_b else None,
        "compare": {"path": str(opts.compare), "sha256": other.sha256} if other else None,
    }
    if opts.plot:
        names = (_name(loaded), _name(other) if other else "itself")
        plot(matrix, layers_a, layers_b, names, opts.plot)
    return report


def _name(loaded) -> str:
    return f"{loaded.header.model.name}@{loaded.sha256[:8]}"


def plot(matrix: torch.Tensor, layers_a: list[str], layers_b: list[str], names: tuple[str, str], path: str) -> None:
    """Heatmap, rows = A's layers top to bottom, columns = B's, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from prunecli.io import atomic

    a, b = len(layers_a), len(layers_b)
    fig, ax = plt.subplots(figsize=(min(5 + 0.22 * b, 30), min(3.5 + 0.2 * a, 30)))
    image = ax.imshow(matrix.numpy(), vmin=0, vmax=1, cmap="magma", aspect="auto", interpolation="nearest")
    font = max(3, min(8, 400 // max(a, b)))
    ax.set_xticks(range(b), [n or "(model)" for n in layers_b], rotation=90, fontsize=font)
    ax.set_yticks(range(a), [n or "(model)" for n in layers_a], fontsize=font)
    ax.set(xlabel=f"B: {names[1]}", ylabel=f"A: {names[0]}", title=f"linear CKA\n{names[0]} vs {names[1]}")
    fig.colorbar(image, ax=ax, label="CKA")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic.write_bytes(path, buf.getvalue())


def summary(report: dict):
    matrix = torch.tensor([[math.nan if v is None else v for v in row] for row in report["matrix"]],
                          dtype=torch.float64)
    off = matrix[~torch.eye(*matrix.shape, dtype=torch.bool)]
    off = off[~off.isnan()]
    rows = [
        ["layers (A × B)", f"{len(report['layers_a'])} × {len(report['layers_b'])}"],
        ["compared with", report["compare"]["path"] if report["compare"] else "itself"],
        ["batches / samples", f"{report['batches']} / {report['samples']}"],
        ["diagonal mean", report["diagonal_mean"]],
        ["off-diagonal min", float(off.min()) if off.numel() else None],
        ["off-diagonal max", float(off.max()) if off.numel() else None],
    ]
    if report["diagonal_mean"] is not None and report["compare"]:
        diag = matrix.diagonal()
        i = int(torch.nan_to_num(diag, nan=math.inf).argmin())
        rows.append(["least similar layer", f"{report['layers_a'][i]} ({diag[i]:.4g})"])
    return table("linear minibatch CKA", ["", "value"], rows)
