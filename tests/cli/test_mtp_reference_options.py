"""The MTP report's optimiser settings as options: plain momentum (`--no-nesterov`) on train,
finetune and prune, and one SGD shared across unstructured pruning steps (`--shared-optimizer`)."""

from __future__ import annotations

import json

import pytest
import torch

from prunecli.engine.config import TrainConfig
from prunecli.engine.optim import make_optimizer
from prunecli.io import checkpoint as ckpt
from tests.conftest import SYNTH, run_cli

LR, MOM, WD = 0.1, 0.9, 0.01


def _two_steps(cfg: TrainConfig) -> torch.Tensor:
    """Two SGD steps on f(w) = ½‖w − 1‖² from w = (2, −3); returns w."""
    w = torch.nn.Parameter(torch.tensor([2.0, -3.0]))
    opt = make_optimizer(torch.nn.ParameterList([w]), cfg)
    for _ in range(2):
        opt.zero_grad()
        (0.5 * (w - 1).pow(2).sum()).backward()
        opt.step()
    return w.detach()


def test_no_nesterov_is_plain_momentum_by_hand():
    w0 = torch.tensor([2.0, -3.0])
    # plain (heavy-ball) SGD, coupled decay: g = ∇f + wd·w; v ← m·v + g; w ← w − lr·v
    g1 = (w0 - 1) + WD * w0
    v1 = g1
    w1 = w0 - LR * v1
    g2 = (w1 - 1) + WD * w1
    w2 = w1 - LR * (MOM * v1 + g2)
    cfg = dict(lr=LR, momentum=MOM, weight_decay=WD)
    assert torch.allclose(_two_steps(TrainConfig(**cfg, nesterov=False)), w2, atol=1e-6)
    # the default is Nesterov (w ← w − lr·(g + m·v)), which differs already after one step
    assert TrainConfig().nesterov is True
    assert not torch.allclose(_two_steps(TrainConfig(**cfg)), w2, atol=1e-3)
    assert make_optimizer(torch.nn.Linear(2, 2), TrainConfig(**cfg, nesterov=False)).param_groups[0]["nesterov"] is False
    # no momentum: Nesterov is off whatever the flag (torch refuses it)
    assert make_optimizer(torch.nn.Linear(2, 2), TrainConfig(momentum=0)).param_groups[0]["nesterov"] is False


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    out = tmp_path_factory.mktemp("mtp") / "base.safetensors"
    r = run_cli("train", "--model", "vgg_tiny", "--data", SYNTH, "--epochs", "1", "--device", "cpu",
                "--no-nesterov", "-o", out)
    assert r.exit_code == 0, r.output + repr(r.exception)
    return out


def _lineage(path):
    return ckpt.read_header(path.read_bytes()).lineage


def test_lineage_records_nesterov_on_train_finetune_and_prune(base, tmp_path):
    assert _lineage(base)[-1].options["nesterov"] is False
    ft, p = tmp_path / "ft.safetensors", tmp_path / "p.safetensors"
    r = run_cli("finetune", base, "--data", SYNTH, "--epochs", "1", "--device", "cpu", "--no-nesterov", "-o", ft)
    assert r.exit_code == 0, r.output + repr(r.exception)
    assert _lineage(ft)[-1].options["nesterov"] is False
    r = run_cli("finetune", base, "--data", SYNTH, "--epochs", "1", "--device", "cpu", "-o", ft)
    assert r.exit_code == 0 and _lineage(ft)[-1].options["nesterov"] is True
    r = run_cli("prune", base, "--method", "l1-unstructured", "--sparsity", "0.5", "--finetune-epochs", "0",
                "--no-nesterov", "-o", p)
    assert r.exit_code == 0, r.output + repr(r.exception)
    assert _lineage(p)[-1].options["nesterov"] is False
    assert json.loads((tmp_path / "p.masks.json").read_text())["options"]["nesterov"] is False


class Spy:
    """Wraps `engine.fit.fit`: the optimizer each step's fine-tuning got, and its momentum buffers then."""

    def __init__(self, monkeypatch):
        import prunecli.engine.fit as fit_module

        self.calls, real = [], fit_module.fit

        def spy(*args, optimizer=None, **kwargs):
            buffers = None if optimizer is None else [s["momentum_buffer"].clone() for s in optimizer.state.values()]
            self.calls.append((optimizer, buffers))
            self.last = real(*args, optimizer=optimizer, **kwargs)
            return self.last

        monkeypatch.setattr(fit_module, "fit", spy)


def _prune(base, out, *flags, schedule="layerwise"):
    r = run_cli("prune", base, "--method", "l1-unstructured", "--sparsity", "0.5", "--schedule", schedule,
                "--total-finetune-epochs", "2", "--data", SYNTH, "--device", "cpu", "--no-nesterov", *flags,
                "-o", out)
    assert r.exit_code == 0, r.output + repr(r.exception)
    return json.loads(out.with_suffix("").with_suffix(".masks.json").read_text())["options"]


def test_shared_optimizer_carries_momentum_buffers_across_layerwise_steps(base, tmp_path, monkeypatch):
    spy = Spy(monkeypatch)
    options = _prune(base, tmp_path / "lw.safetensors")  # layerwise: shared by default, as the report
    assert options["shared_optimizer"] is True
    (first, at_start), (second, carried) = spy.calls  # the last two steps get one epoch each
    assert first is not None and second is first
    assert at_start == []  # a new SGD before the first step ...
    assert len(carried) > 0 and all(b.abs().sum() > 0 for b in carried)  # ... whose buffers step 2 continues
    hooks = first._optimizer_step_post_hooks
    assert len(hooks) == 1  # one mask keeper on the shared optimizer, the latest step's


@pytest.mark.parametrize("flags,schedule", [(("--fresh-optimizer",), "layerwise"), ((), "iterative")])
def test_fresh_optimizer_per_step(base, tmp_path, monkeypatch, flags, schedule):
    spy = Spy(monkeypatch)
    options = _prune(base, tmp_path / "f.safetensors", *flags, schedule=schedule)
    assert options["shared_optimizer"] is False
    assert len(spy.calls) == 2 and all(opt is None for opt, _ in spy.calls)  # fit makes its own each time


def test_shared_and_fresh_optimizers_give_different_weights(base, tmp_path):
    from safetensors.torch import load_file

    _prune(base, tmp_path / "s.safetensors", "--shared-optimizer")
    _prune(base, tmp_path / "f.safetensors", "--fresh-optimizer")
    shared, fresh = load_file(tmp_path / "s.safetensors"), load_file(tmp_path / "f.safetensors")
    assert any(not torch.allclose(shared[k], fresh[k]) for k in shared if k.endswith(".weight"))
