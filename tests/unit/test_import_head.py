"""`prunecli import --new-head`: ImageNet-style weights into a model with another class count
(the MTP report fine-tunes torchvision VGG-16 / DenseNet-169 with a new classifier)."""

from __future__ import annotations

import json

import torch

from prunecli.io import checkpoint as ckpt
from prunecli.models import build_model
from tests.conftest import run_cli, run_main


def test_new_head_keeps_the_body_and_reinitialises_the_classifier(tmp_path, capsys):
    source, _, _ = build_model("tv_vgg_tiny", num_classes=10)
    pth = tmp_path / "w.pth"
    torch.save(source.state_dict(), pth)
    out = tmp_path / "c4.safetensors"
    assert run_main("import", pth, "--model", "tv_vgg_tiny", "--num-classes", "4", "-o", out) == 2
    assert "do not fit" in capsys.readouterr().err
    r = run_cli("import", pth, "--model", "tv_vgg_tiny", "--num-classes", "4", "--new-head", "-o", out, "--json")
    assert r.exit_code == 0, r.output + repr(r.exception)
    assert json.loads(r.stdout)["new_head"] == "classifier.6"
    loaded = ckpt.load(out)
    assert loaded.header.num_classes == 4 and loaded.model.classifier[6].out_features == 4
    for (name, theirs), ours in zip(source.state_dict().items(), loaded.model.state_dict().values()):
        if not name.startswith("classifier.6."):
            assert torch.equal(theirs, ours), name
    broken = {k: v for k, v in source.state_dict().items() if not k.startswith("features.0.")}
    torch.save(broken, pth)
    assert run_main("import", pth, "--model", "tv_vgg_tiny", "--num-classes", "4", "--new-head", "-o", out) == 2
    assert "outside the classifier" in capsys.readouterr().err


def test_import_infers_the_class_count_from_the_classifier(tmp_path, capsys):
    """Issue 14 item 4: no --num-classes needed when the weights say it (and it is said)."""
    import torch

    from prunecli.io import checkpoint as ckpt
    from prunecli.models import build_model
    from tests.conftest import run_main

    model, _, _ = build_model("resnet20", num_classes=7)
    torch.save(model.state_dict(), tmp_path / "w.pth")
    out = tmp_path / "r.safetensors"
    assert run_main("import", tmp_path / "w.pth", "--model", "resnet20", "-o", out) == 0
    assert "inferred --num-classes 7 from fc.weight (7, 64)" in capsys.readouterr().err
    loaded = ckpt.load(out)
    assert loaded.header.num_classes == 7
    assert torch.equal(loaded.model.fc.weight, model.fc.weight)
