"""Unstructured L1 schedules (MTP report, spec §2.2) on tiny models: exact sparsities, compounding
iterative steps, layerwise locality, and masks that training keeps at zero."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from prunecli.models import build_model
from prunecli.pruning.sparse import (
    MaskKeeper,
    masks_from_zeros,
    prunable_modules,
    sparse_counts,
    sparsity_rows,
)
from prunecli.pruning.unstructured import (
    SparsePlan,
    cut,
    epochs_per_step,
    iterative_targets,
    plan_steps,
    run_schedule,
    units,
)


def _vgg():
    torch.manual_seed(0)
    return build_model("vgg_tiny", num_classes=4)[0]


def _names(model, include_bn=False):
    return [f"{n}.weight" for n, _ in prunable_modules(model, include_bn)]


def test_iterative_targets_step_to_the_target_exactly():
    assert iterative_targets(0.8, 0.1) == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    assert iterative_targets(0.85, 0.1)[-2:] == pytest.approx([0.8, 0.85])
    assert iterative_targets(0.5, 0.5) == [0.5]


def test_oneshot_cut_is_global_l1_and_exact():
    model = _vgg()
    modules = prunable_modules(model)
    weights = torch.cat([m.weight.detach().abs().flatten() for _, m in modules])
    threshold = weights.sort().values[int(round(0.7 * weights.numel())) - 1]
    cut(modules, 0.7)
    rows, total = sparsity_rows(model, _names(model))
    assert sum(r["zeros"] for r in rows) == int(round(0.7 * weights.numel()))  # exact, not ±1 per layer
    for _, m in modules:  # the survivors are exactly the large weights, wherever they are
        assert bool((m.weight.abs()[m.weight != 0] >= threshold).all())
    assert len({round(r["sparsity"], 2) for r in rows}) > 1  # global: layers end at different sparsities


def test_iterative_steps_compound_on_the_live_weights():
    model = _vgg()
    plan = SparsePlan(sparsity=0.8, schedule="iterative", step=0.2, finetune_epochs=0)
    before: dict = {}

    def finetune(epochs, masks):  # pretend training moved the survivors: zeros must stay, others change
        raise AssertionError("no fine-tuning with 0 epochs")

    def after(i, record, names):
        zeros = {n: (p == 0) for n, p in model.named_parameters() if n in names}
        if before:
            for n, z in zeros.items():
                assert bool(z[before[n]].all())  # what was pruned stays pruned
        before.update(zeros)

    records, names = run_schedule(model, plan, finetune, after, log=lambda *a: None)
    targets = [0.2, 0.4, 0.6, 0.8]
    assert [r["target"] for r in records] == pytest.approx(targets)
    prev = 0.0
    for r, p in zip(records, targets):
        assert r["amount_of_alive"] == pytest.approx(1 - (1 - p) / (1 - prev), abs=1e-4)
        assert r["sparsity"] == pytest.approx(p, abs=1e-4)
        prev = p


def test_layerwise_touches_only_its_layer():
    model = _vgg()
    names = _names(model)
    snapshots = []
    plan = SparsePlan(sparsity=0.5, schedule="layerwise", finetune_epochs=0)
    run_schedule(model, plan, lambda e, m: None,
                 lambda i, r, n: snapshots.append({k: (v == 0).sum().item() for k, v in model.named_parameters()
                                                   if k in names}), log=lambda *a: None)
    assert len(snapshots) == len(names)
    for i, snap in enumerate(snapshots):
        for j, name in enumerate(names):
            numel = dict(model.named_parameters())[name].numel()
            if j <= i:
                assert snap[name] == int(round(0.5 * numel))  # its local ratio, exactly
            else:
                assert snap[name] == 0  # not reached yet


def test_block_units_merge_batchnorm_only_units():
    model = build_model("tv_densenet_tiny", num_classes=4)[0]
    blocks = [name for name, _ in units(prunable_modules(model, include_bn=True), "block")]
    assert blocks[0] == "features.conv0" and blocks[-1] == "classifier"
    assert "features.norm0" not in blocks and "features.norm5" not in blocks
    assert any(b.startswith("features.denseblock") for b in blocks)
    assert any(b.startswith("features.transition") for b in blocks)


def test_epoch_budget_spread_over_steps():
    plan = SparsePlan(sparsity=0.8, total_finetune_epochs=10)
    assert epochs_per_step(plan, 3) == [3, 3, 4]
    assert epochs_per_step(SparsePlan(sparsity=0.8, finetune_epochs=2), 3) == [2, 2, 2]


def test_mask_keeper_keeps_zeros_through_sgd_with_momentum_and_decay():
    model = _vgg()
    cut(prunable_modules(model), 0.6)
    names = _names(model)
    masks = masks_from_zeros(model, names)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    MaskKeeper(model, masks).attach(opt)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 4, (8,))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    params = dict(model.named_parameters())
    for n in names:
        assert bool((params[n][~masks[n]] == 0).all())
        assert not torch.equal(params[n][masks[n]], before[n][masks[n]])  # survivors do learn
    assert sparsity_rows(model, names)[1] == pytest.approx(0.6, abs=1e-4)


def test_sparse_macs_scale_with_density():
    from prunecli.profiling.counts import count

    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8, bias=False))
    with torch.no_grad():
        model[1].weight[:, :8] = 0
    counted = count(model, (16,))
    nonzero, macs = sparse_counts(model, counted)
    assert nonzero == 64 and macs == counted.macs // 2


def test_bad_schedule_and_ignore():
    from prunecli.errors import UserError

    with pytest.raises(UserError, match="--schedule"):
        plan_steps(_vgg(), SparsePlan(sparsity=0.5, schedule="gradual"))
    with pytest.raises(UserError, match="--ignore"):
        plan_steps(_vgg(), SparsePlan(sparsity=0.5, ignore=["nothing.*"]))


def test_densenet169_has_the_reports_nine_blocks():
    import torchvision

    with torch.device("meta"):  # names only: no weight initialisation
        model = torchvision.models.densenet169(weights=None, num_classes=100)
    blocks = [name for name, _ in units(prunable_modules(model, include_bn=True), "block")]
    assert blocks == ["features.conv0", "features.denseblock1", "features.transition1", "features.denseblock2",
                      "features.transition2", "features.denseblock3", "features.transition3",
                      "features.denseblock4", "classifier"]
