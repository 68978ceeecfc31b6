"""timm building blocks Torch-Pruning needs help with (`pruning/timm_blocks.py`), on tiny configurations.

Each family here crashed before (issue 12): PoolFormer's `Scale.view` in the pruned forward,
MLP-Mixer and CSPNet with index errors inside Torch-Pruning, EdgeNeXt with a traceback from
its transposed attention. Now they prune (MACs drop, the forward runs, the file reloads
bit-identically in a fresh process) or are refused before pruning with one line and exit 2.
"""

from __future__ import annotations

import pytest
import torch

from prunecli.errors import UserError
from prunecli.io import checkpoint as ckpt
from tests.conftest import pruned_json, reload_in_fresh_process, run_main, untrained

DATA = "synthetic:n=8,val=4,classes=4"


def _base(model: str, tmp_path):
    return untrained(model, tmp_path / f"{model}.safetensors", DATA)


def _prune(base, out, *extra: str) -> dict:
    return pruned_json(base, out, "--method", "l1", "--ratio", "0.3", *extra)


@pytest.fixture(scope="module")
def pruned(tmp_path_factory):
    """`get(model, *prune options)` → (pruned checkpoint, prune's JSON), made once per module."""
    cache: dict = {}

    def get(model: str, *extra: str):
        if (model, extra) not in cache:
            folder = tmp_path_factory.mktemp(model)
            out = folder / "p.safetensors"
            cache[model, extra] = out, _prune(_base(model, folder), out, *extra)
        return cache[model, extra]

    return get


@pytest.mark.parametrize(("model", "ignore"), [
    ("poolformer_tiny_test", []),
    ("mixer_tiny_test", []),
    ("caformer_tiny_test", ["--ignore", "stages.2.blocks.*.token_mixer", "--ignore", "stages.3.blocks.*.token_mixer"]),
])
def test_family_prunes_and_reloads(model, ignore, pruned, tmp_path):
    """CAFormer's SepConv mixers, MLPs and ResScale vectors prune once its attention is ignored."""
    out, result = pruned(model, *ignore)
    assert result["macs_after"] < 0.8 * result["macs_before"]
    here, fresh = reload_in_fresh_process(out, tmp_path)
    assert torch.equal(here, fresh) and here.shape == (2, 4)


def test_poolformer_scale_shape_follows_its_vector(pruned):
    """LayerScale vectors are cut with their `view` shape, which the header records for reload."""
    from timm.models.metaformer import Scale

    out, _ = pruned("poolformer_tiny_test")
    structure = ckpt.read_header(out.read_bytes()).structure
    scales = [(n, m) for n, m in ckpt.load(out).model.named_modules() if isinstance(m, Scale)]
    dims = {0: 8, 1: 16, 2: 24, 3: 32}
    cut = [(n, m) for n, m in scales if m.scale.numel() < dims[int(n.split(".")[1])]]
    assert scales and cut
    for _, module in scales:
        assert module.shape == (module.scale.numel(), 1, 1)
    for name, module in cut:
        assert structure[name]["shape"] == [module.scale.numel(), 1, 1]


def test_mixer_prunes_channels_never_tokens(pruned):
    """The token-mixing MLPs keep their 16 patches; the embedding and channel MLPs shrink."""
    out, _ = pruned("mixer_tiny_test")
    model = ckpt.load(out).model
    for block in model.blocks:
        assert block.mlp_tokens.fc1.in_features == 16 and block.mlp_tokens.fc2.out_features == 16
        assert block.mlp_tokens.fc1.out_features == 16  # the token MLP's hidden width (0.5 × dim 32) is not touched
        assert block.mlp_channels.fc1.out_features < 128
    assert model.stem.proj.out_channels < 32 and model.head.in_features == model.stem.proj.out_channels


@pytest.mark.parametrize("model", ["cspdarknet_tiny_test", "cspresnet_tiny_test"])
def test_csp_prunes_and_runs(model):
    """CrossStage's split conv stays whole, everything else may shrink; the pruned model runs."""
    from prunecli.methods import get_method
    from prunecli.models import build_model
    from prunecli.pruning.structured import PrunePlan, prune

    net, entry, _ = build_model(model)
    widths = {n: m.conv.out_channels for n, m in net.named_modules() if n.endswith("conv_exp")}
    pruned, outcome = prune(net.eval(), entry.input_shape, get_method("l1", kind="structured").importance,
                            PrunePlan(ratio=0.3), entry.protected)
    assert outcome.after.macs < 0.8 * outcome.before.macs
    assert {n: m.conv.out_channels for n, m in pruned.named_modules() if n.endswith("conv_exp")} == widths
    with torch.no_grad():
        assert pruned(torch.randn(2, *entry.input_shape)).shape == (2, 10)


def test_csp_reloads(tmp_path):
    out = tmp_path / "p.safetensors"
    _prune(_base("cspdarknet_tiny_test", tmp_path), out)
    here, fresh = reload_in_fresh_process(out, tmp_path)
    assert torch.equal(here, fresh)


def test_unsupported_layer_refused_before_pruning_then_ignore_works(tmp_path, capsys):
    """EdgeNeXt's transposed attention: exit 2 with one line naming it and the --ignore to use
    (in-process through the console entry point's `main()`; test_errors.py runs real processes)."""
    base, out = _base("edgenext_tiny_test", tmp_path), tmp_path / "p.safetensors"
    capsys.readouterr()
    code = run_main("prune", base, "--method", "l1", "--ratio", "0.3", "-o", out)
    stderr = capsys.readouterr().err
    assert code == 2, stderr
    line = [x for x in stderr.splitlines() if x.startswith("error:")]
    assert len(line) == 1 and "CrossCovarianceAttn" in line[0] and "--ignore '*.xca'" in line[0]
    assert "Traceback" not in stderr and not out.exists()
    result = _prune(base, out, "--ignore", "*.xca")
    assert result["macs_after"] < 0.9 * result["macs_before"]
    model = ckpt.load(out).model
    assert all(m.xca.qkv.out_features == 3 * m.xca.qkv.in_features for m in model.modules() if hasattr(m, "xca"))
    here, fresh = reload_in_fresh_process(out, tmp_path)
    assert torch.equal(here, fresh)


def test_cross_stage3_refused_even_when_ignored():
    """cs3 CSP stages break Torch-Pruning's graph itself: no --ignore can help, so none is offered."""
    from timm.models.cspnet import CspModelCfg, CspNet, CspStagesCfg, CspStemCfg

    from prunecli.pruning.extensions import collect

    cfg = CspModelCfg(stem=CspStemCfg(out_chs=8, kernel_size=3, stride=2, pool=""),
                      stages=CspStagesCfg(depth=(1,), out_chs=(16,), stride=2, block_type="dark", stage_type="cs3"))
    model = CspNet(cfg, num_classes=4)
    with pytest.raises(UserError, match="CrossStage3.*not supported") as refusal:
        collect(model, list(model.modules()))
    assert "--ignore" not in str(refusal.value)


def test_scale_pruner_cuts_vector_shape_and_gradient_together():
    """Calibration gradients follow the kept channels (block scores read them after width pruning)."""
    from timm.models.metaformer import Scale

    from prunecli.pruning.timm_blocks import ScalePruner

    layer = Scale(6)
    layer.scale.data = torch.arange(6.0)
    layer.scale.grad = torch.arange(6.0) * 10
    ScalePruner().prune_out_channels(layer, [1, 4])
    assert layer.scale.tolist() == [0, 2, 3, 5] and layer.scale.grad.tolist() == [0, 20, 30, 50]
    assert layer.shape == (4, 1, 1) and isinstance(layer.scale, torch.nn.Parameter)
    assert layer(torch.ones(1, 4, 2, 2))[0, :, 0, 0].tolist() == [0, 2, 3, 5]


def test_gmlp_gating_refused_then_ignore_prunes_the_rest():
    """gMLP's spatial gating unit is refused before pruning; ignoring it, the rest prunes and runs."""
    from timm.layers import GatedMlp
    from timm.models.mlp_mixer import MlpMixer, SpatialGatingBlock

    from prunecli.methods import get_method
    from prunecli.pruning.structured import PrunePlan, prune

    def build():
        return MlpMixer(num_classes=4, img_size=32, patch_size=8, num_blocks=2, embed_dim=32, mlp_ratio=6,
                        block_layer=SpatialGatingBlock, mlp_layer=GatedMlp).eval()

    importance = get_method("l1", kind="structured").importance
    model = build()
    untouched = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(UserError, match=r"SpatialGatingUnit.*--ignore 'blocks\.\*\.mlp_channels\.gate'"):
        prune(model, (3, 32, 32), importance, PrunePlan(ratio=0.3), ("head",))
    assert all(torch.equal(v, untouched[k]) for k, v in model.state_dict().items())  # refused before pruning
    pruned, outcome = prune(build(), (3, 32, 32), importance, PrunePlan(ratio=0.3, ignore=["blocks.*.mlp_channels.gate"]),
                            ("head",))
    assert outcome.after.macs < 0.9 * outcome.before.macs
    with torch.no_grad():
        assert pruned(torch.randn(2, 3, 32, 32)).shape == (2, 4)
