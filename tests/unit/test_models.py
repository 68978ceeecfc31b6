"""Model registry: every family builds, forwards, and has the published sizes.

Full-size models are built on the `meta` device: parameter counts need shapes, not memory,
and VGG-16-BN's 138M parameters would otherwise cost seconds to initialise.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from prunecli.errors import UserError
from prunecli.models import build_model, get_entry, list_models

TINY = sorted(e.name for e in list_models() if e.tiny and e.task == "classification")
ALL = sorted(e.name for e in list_models() if e.task == "classification")  # MRI nets: test_mri_models.py


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def meta_build(name: str, **kwargs):
    with torch.device("meta"):
        return build_model(name, **kwargs)


def test_every_family_has_a_tiny_model():
    families = {e.family for e in list_models()}
    assert families == {"cifar_resnet", "cifar_vgg", "cifar_densenet", "torchvision", "timm", "mri", "keras_resnet",
                        "keras_densenet"}
    assert families == {e.family for e in list_models() if e.tiny}


@pytest.mark.parametrize("name", TINY)
def test_tiny_model_forwards_its_input_shape(name):
    model, entry, args = build_model(name)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, *entry.input_shape))
    assert out.shape == (2, entry.num_classes) == (2, args["num_classes"])


@pytest.mark.parametrize("name", TINY)
def test_tiny_model_takes_any_class_count(name):
    model, entry, _ = build_model(name, num_classes=3)
    with torch.no_grad():
        assert model.eval()(torch.randn(2, *entry.input_shape)).shape == (2, 3)


@pytest.mark.parametrize("name", ALL)
def test_protected_layers_are_the_classifier(name):
    """`protected` names real heads whose outputs are the classes (never guessed): a Linear, or a
    1×1 conv (DPN's classifier)."""
    model, entry, _ = meta_build(name, num_classes=7)
    assert entry.protected
    for path in entry.protected:
        head = model.get_submodule(path)
        width = head.out_features if isinstance(head, nn.Linear) else head.out_channels
        assert isinstance(head, (nn.Linear, nn.Conv2d)) and width == 7
        assert not isinstance(head, nn.Conv2d) or head.kernel_size == (1, 1)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        # conv 432 + bn 32 + stage1 3×(2·2304+64) + stage2 (4608+9216+512 shortcut+192) + 2×18560
        # + stage3 (18432+36864+2048 shortcut+384) + 2×73984 + fc 650
        ("resnet20", 272_474),
        ("resnet56", 855_770),
        # 14,719,680 conv + 8,448 BN + 262,656 + 1,024 BN1d + 5,130 (Li et al. 2017: 1.5e7)
        ("vgg16", 14_987_722),
        # Huang et al. 2017, Table 2: 1.0M
        ("densenet40", 1_019_722),
        # torchvision's published num_params
        ("tv_resnet50", 25_557_032),
        ("tv_vgg16", 138_357_544),
        ("tv_vgg16_bn", 138_365_992),
        ("tv_densenet169", 14_149_480),
        # Li et al. 2023's Keras models: conv biases + BN-less projections; conv+dense 271,690 (0.27M) + BN 1,376
        ("resnet20_keras", 273_066),
        ("densenet40_keras", 1_019_722),
    ],
)
def test_full_size_parameter_counts(name, params):
    model, _, _ = meta_build(name)
    assert n_params(model) == params


def test_full_size_cifar_models_forward():
    for name in ("resnet20", "densenet40"):
        model, entry, _ = build_model(name)
        with torch.no_grad():
            assert model.eval()(torch.randn(1, *entry.input_shape)).shape == (1, 10)


def test_imagenet_entries_declare_224_inputs():
    for name in ("tv_resnet50", "tv_vgg16", "tv_vgg16_bn", "tv_densenet169"):
        entry = get_entry(name)
        assert (entry.input_shape, entry.num_classes) == ((3, 224, 224), 1000)


@pytest.mark.parametrize(("name", "size", "classes"),
                         [("tv_vgg16", 32, 100), ("tv_vgg16", 64, 7), ("tv_densenet169", 32, 100),
                          ("tv_densenet169", 64, 7)])
def test_mtp_models_forward_small_inputs(name, size, classes):
    """The MTP report feeds torchvision VGG-16 and DenseNet-169 32×32 CIFAR-100 (and HAM10000 at any
    size): both end in an adaptive pool, so small inputs work. Built on `meta` and materialised
    with averaging weights: a real forward in well under a second (VGG-16's random init takes ~4 s)."""
    model, _, _ = meta_build(name, num_classes=classes)
    model = model.to_empty(device="cpu").eval()
    with torch.no_grad():
        for key, t in model.state_dict().items():  # averaging weights, unit BN: activations stay O(1)
            unit = key.endswith(("running_var", "weight")) and t.dim() == 1
            t.fill_(1 / t[0].numel() if t.dim() > 1 else 1 if unit else 0)
        out = model(torch.randn(1, 3, size, size))
    assert out.shape == (1, classes) and torch.isfinite(out).all()


def test_tv_vgg16_state_dict_is_torchvisions():
    """`prunecli import` of a torchvision VGG-16 state dict needs the same keys and shapes."""
    from torchvision.models import vgg16

    ours, _, _ = meta_build("tv_vgg16")
    with torch.device("meta"):
        theirs = vgg16(weights=None)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}


@pytest.mark.slow
def test_import_torchvision_vgg16_state_dict(tmp_path):
    """The full round trip through the CLI: a 528 MB .pth in, a checkpoint out (~15 s)."""
    from torchvision.models import vgg16

    from tests.conftest import run_cli

    torch.manual_seed(0)
    weights = vgg16(weights=None).state_dict()
    torch.save(weights, tmp_path / "vgg16.pth")
    out = tmp_path / "vgg16.safetensors"
    res = run_cli("import", tmp_path / "vgg16.pth", "--model", "tv_vgg16", "-o", out)
    assert res.exit_code == 0, res.output + repr(res.exception)
    from prunecli.io import checkpoint as ckpt

    loaded = ckpt.load(out)
    assert loaded.header.model.name == "tv_vgg16" and loaded.header.num_classes == 1000
    state = loaded.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in weights.items())


def test_timm_prefix_builds_timm_test_models():
    model, entry, args = build_model("timm:test_vit", num_classes=5)
    assert entry.name == "timm:test_vit" and entry.family == "timm"
    assert entry.input_shape == (3, 160, 160) and entry.protected == ("head",)
    assert args == {"num_classes": 5}
    with torch.no_grad():
        assert model.eval()(torch.randn(1, *entry.input_shape)).shape == (1, 5)


def test_timm_entry_facts_come_from_pretrained_cfg():
    deit = get_entry("timm:deit_tiny_distilled_patch16_224")
    assert deit.protected == ("head", "head_dist")
    assert (deit.input_shape, deit.num_classes) == ((3, 224, 224), 1000)
    assert get_entry("timm:resnet50.a1_in1k").protected == ("fc",)
    assert get_entry("timm:test_convnext").protected == ("head.fc",)


@pytest.mark.parametrize("name", ["timm:resnet5o", "timm:", "timm:not_a_model"])
def test_unknown_timm_model_is_a_user_error(name):
    with pytest.raises(UserError, match="unknown timm model") as err:
        get_entry(name)
    assert "\n" not in str(err.value)


def test_timm_rejects_unknown_options():
    with pytest.raises(UserError, match="does not accept"):
        build_model("timm:test_vit", no_such_option=1)


def test_unknown_registry_name_suggests_close_matches():
    with pytest.raises(UserError, match="vgg16"):
        get_entry("vgg61")
