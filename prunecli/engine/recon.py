"""Reconstruction task: losses, fine-tuning strategies and metrics for MRI nets (MBDL, Park et al.).

Spec: `shared/research/seeds-mbdl-gsparsity.md` §1.4–1.6. Batches are (x, target): x the packed
measurements (`prunecli.mri.pack`), target the ground-truth image [B,2,H,W]. The strategies:
- supervised: loss(x̂, x_gt), SmoothL1 for the DEQ or 1−SSIM for the VarNets (`--loss`);
- distill ("school"): the same loss against the frozen unpruned teacher's reconstruction;
- selfsup: measurement consistency ‖A x̂ − y‖₁ plus the rotation-equivariance terms of REI
  (Chen et al. 2022): x₂ = rotate_g(x̂), S₂ = rotate_g(S), x₃ = f(A_{S₂}ᴴ… y₂ = A_{S₂}x₂),
  MSE(crop(x₃), crop(x₂)) + MSE(A_{S₂}x₃, A_{S₂}x₂), crop = the square inscribed in the FOV;
- supervised+distill (the reference's `supervisedPLUSschool`): loss(x̂, x_gt) + MSE(x̂, teacher),
  the distillation term always MSE whatever `--loss` is, as the reference;
- testdc+distill (`testdcPLUSschool`): loss(A x̂, y) + loss(x̂, teacher), one `--loss` for both
  terms as the reference's `recon_loss_fn`; on k-space it compares (real, imag) elementwise, and
  with `--loss ssim` (the VarNets) the measurement term is MSE, as the reference's E2E-VarNet
  branch (SSIM of k-space is not defined).
Every strategy zeroes the background of x̂ (and of the teacher's output) before its loss, as the
reference's `x̂[x_gt == 0] = 0` — the REI loss included, which then rotates and measures the
masked x̂. The background here is the coil-derived support (Σ|S_c|² > 0), not x_gt == 0, so the
GT-free strategies (distill, selfsup, testdc+distill) never read the target; their per-epoch
selection criterion is the measurement-domain error on the validation split (`val_dc`), not PSNR
against ground truth.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from prunecli.mri.pack import to_complex, unpack

STRATEGIES = ("supervised", "distill", "selfsup", "supervised+distill", "testdc+distill")
GROUND_TRUTH_FREE = ("distill", "selfsup", "testdc+distill")
"""Strategies whose loss never reads the target: they may adapt on test measurements (--adapt-on test)."""
WITH_TEACHER = ("distill", "supervised+distill", "testdc+distill")
"""Strategies that need the frozen unpruned model (--teacher)."""


def support(x: torch.Tensor) -> torch.Tensor:
    """Coil-derived support [B,1,H,W] from the packed maps: where any coil sees the object."""
    _, _, smaps = unpack(x)
    return ((smaps.abs() ** 2).sum(1, keepdim=True) > 1e-8).to(x.dtype)


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 7, gaussian: bool = False, data_range: float = 1.0,
         reduce: bool = True) -> torch.Tensor:
    """SSIM of [B,1,H,W] images: uniform 7×7 window (the training loss of §1.4) or Gaussian 11, σ 1.5
    (the evaluation of §1.6); k1 = 0.01, k2 = 0.03."""
    if gaussian:
        g = torch.exp(-((torch.arange(window, dtype=a.dtype, device=a.device) - window // 2) ** 2) / (2 * 1.5**2))
        kernel = (g[:, None] * g[None, :]) / g.sum() ** 2
    else:
        kernel = torch.full((window, window), 1.0 / window**2, dtype=a.dtype, device=a.device)
    kernel = kernel[None, None]
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_a, mu_b = F.conv2d(a, kernel), F.conv2d(b, kernel)
    var_a = F.conv2d(a * a, kernel) - mu_a**2
    var_b = F.conv2d(b * b, kernel) - mu_b**2
    cov = F.conv2d(a * b, kernel) - mu_a * mu_b
    value = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return value.mean() if reduce else value.flatten(1).mean(1)


def magnitude(image: torch.Tensor) -> torch.Tensor:
    """[B,2,H,W] → |x| as [B,1,H,W]."""
    return image.pow(2).sum(1, keepdim=True).clamp_min(1e-24).sqrt()


def image_loss(kind: str):
    """loss(x̂, reference) on [B,2,H,W] images."""
    if kind == "smoothl1":
        return F.smooth_l1_loss
    if kind == "l1":
        return F.l1_loss
    if kind == "mse":
        return F.mse_loss
    if kind == "ssim":
        return lambda out, ref: 1 - ssim(magnitude(out), magnitude(ref))
    raise ValueError(kind)


def measure(image: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A x̂ = P·F·S·x̂ for an image [B,2,H,W] and the packed input's S and P."""
    from prunecli.mri.ops import forward

    _, mask, smaps = unpack(x)
    return forward(to_complex(image), smaps, mask)


def dc_error(image: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """‖A x̂ − y‖₁ / ‖y‖₁ per batch: the measurement-domain criterion (no ground truth)."""
    y, _, _ = unpack(x)
    return (measure(image, x) - y).abs().sum() / y.abs().sum().clamp_min(1e-12)


def rei_loss(model, out: torch.Tensor, x: torch.Tensor, angles: int = 5) -> torch.Tensor:
    """‖A x̂ − y‖₁ + MSE(x₃, x₂) + MSE(A₂x₃, A₂x₂), x₂ = rotate_g(x̂) (not detached), as REILoss.

    The network sees the rotated problem as measurements y₂ = A_{S₂}x₂ with maps S₂ and the same
    mask, packed like any input. The equivariance terms are averaged over the `angles` rotations.
    """
    from torchvision.transforms.functional import rotate

    from prunecli.mri.ops import forward
    from prunecli.mri.pack import pack

    y, mask, smaps = unpack(x)
    loss = F.l1_loss(torch.view_as_real(measure(out, x)), torch.view_as_real(y))
    for g in (torch.randperm(359)[:angles] + 1).tolist():
        x2 = rotate(out, g)
        s2 = torch.complex(rotate(smaps.real, g), rotate(smaps.imag, g))
        y2 = forward(to_complex(x2), s2, mask)
        x3 = model(pack(y2, mask, s2))
        y3 = forward(to_complex(x3), s2, mask)
        image_term = F.mse_loss(_inscribed(x3), _inscribed(x2))
        loss = loss + (image_term + F.mse_loss(torch.view_as_real(y3), torch.view_as_real(y2))) / angles
    return loss


def _inscribed(img: torch.Tensor) -> torch.Tensor:
    """The central square that stays inside the field of view under any rotation (side H/√2):
    REI's crop, so the corners a rotation fills with zeros do not count."""
    return _crop(img, max(1, int(min(img.shape[-2:]) / 2**0.5)))


class ReconLoss:
    """The training loss of one fine-tuning strategy; called as loss(x̂, target, teacher_out, x, model).

    The target is read by the supervised strategies only."""

    full = True

    def __init__(self, strategy: str, kind: str):
        self.strategy, self.kind, self.fn = strategy, kind, image_loss(kind)

    def __call__(self, out, target, teacher_out, x, model):
        keep = support(x)  # background zeroed by the coil support (not by x_gt == 0)
        out = out * keep
        if self.strategy == "selfsup":
            return rei_loss(model, out, x)
        if self.strategy == "supervised":
            return self.fn(out, target * keep)
        teacher_out = teacher_out * keep
        if self.strategy == "distill":
            return self.fn(out, teacher_out)
        if self.strategy == "supervised+distill":
            return self.fn(out, target * keep) + F.mse_loss(out, teacher_out)
        if self.strategy == "testdc+distill":
            return self.measurement_loss(out, x) + self.fn(out, teacher_out)
        raise ValueError(self.strategy)

    def measurement_loss(self, out, x) -> torch.Tensor:
        """loss(A x̂, y) on (real, imag) k-space; MSE when the image loss is SSIM (see the module doc)."""
        y, _, _ = unpack(x)
        fn = F.mse_loss if self.kind == "ssim" else self.fn
        return fn(torch.view_as_real(measure(out, x)), torch.view_as_real(y))


@torch.no_grad()
def evaluate(model, loader, device: str, on_step=None, ground_truth: bool = True) -> dict[str, float]:
    """PSNR / SSIM / NMSE with §1.6's protocol (magnitude, centre crop to min(H,W)², per-image
    min–max to [0,1]; PSNR = 10·log10(1/MSE); SSIM Gaussian 11, σ 1.5), and the measurement-domain
    error `dc`. With `ground_truth=False` only `dc` is computed: the target is not read."""
    model.eval()
    sums = {"psnr": 0.0, "ssim": 0.0, "nmse": 0.0, "dc": 0.0}
    n = 0
    for x, target in loader:
        x = x.to(device, non_blocking=True)
        out = model(x)
        sums["dc"] += float(dc_error(out, x)) * len(x)
        if ground_truth:
            target = target.to(device, non_blocking=True)
            for key, value in image_metrics(out * support(x), target).items():
                sums[key] += float(value.sum())
        n += len(x)
        if on_step is not None:
            on_step()
    from prunecli.engine import dist

    if dist.context().distributed:  # each rank evaluated its own slice: the sums over all ranks
        total = dist.all_reduce_sum(torch.tensor([*sums.values(), float(n)], dtype=torch.float64, device=device))
        sums, n = dict(zip(sums, total.tolist(), strict=False)), int(total[-1])
    n = max(1, n)
    keys = sums if ground_truth else ("dc",)
    return {**{k: sums[k] / n for k in keys}, "samples": n}


def image_metrics(out: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image PSNR, SSIM, NMSE of [B,2,H,W] reconstructions against targets."""
    a, b = _normalise(_crop(magnitude(out))), _normalise(_crop(magnitude(target)))
    mse = (a - b).pow(2).flatten(1).mean(1)
    nmse = (a - b).pow(2).flatten(1).sum(1) / b.pow(2).flatten(1).sum(1).clamp_min(1e-12)
    return {"psnr": 10 * torch.log10(1 / mse.clamp_min(1e-12)), "ssim": ssim(a, b, 11, True, reduce=False),
            "nmse": nmse}


def _crop(img: torch.Tensor, side: int | None = None) -> torch.Tensor:
    """The central `side`×`side` square (default: min(H, W)², the evaluation crop of §1.6)."""
    h, w = img.shape[-2:]
    s = side or min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return img[..., top:top + s, left:left + s]


def _normalise(img: torch.Tensor) -> torch.Tensor:
    lo = img.flatten(1).min(1).values.view(-1, 1, 1, 1)
    hi = img.flatten(1).max(1).values.view(-1, 1, 1, 1)
    return (img - lo) / (hi - lo).clamp_min(1e-12)

