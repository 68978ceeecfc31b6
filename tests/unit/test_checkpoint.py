"""The checkpoint format: safe loading, precise errors, stable published schemas."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as st_save

from prunecli.errors import CheckpointError
from prunecli.io import checkpoint as ckpt
from prunecli.io.schema import ModelRef, json_schemas
from prunecli.models import build_model

ROOT = Path(__file__).resolve().parents[2]


def _header(**kw):
    base = dict(model=ModelRef(name="resnet_tiny", kwargs={"num_classes": 4}), input_shape=[3, 32, 32], num_classes=4)
    base.update(kw)
    return ckpt.new_header(None, **base)


def _file_with(header_json: str, tensors: dict) -> bytes:
    return st_save(tensors, metadata={"prunecli": header_json})


def test_save_load_round_trip(tmp_path):
    model, _, _ = build_model("resnet_tiny", num_classes=4)
    path = tmp_path / "m.safetensors"
    ckpt.save(model, path, _header())
    loaded = ckpt.load(path)
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    assert torch.equal(loaded.model(x), model(x))
    assert loaded.sha256 == ckpt.sha256(path.read_bytes())


@pytest.mark.parametrize("attr,value,msg", [
    ("forward", 1, "not allowed"),
    ("__class__", 1, "not allowed"),
    ("__dict__", [1], "not allowed"),
    ("training", False, "invalid prunecli header"),
    ("out_channels", "8", "invalid prunecli header"),
    ("out_channels", 2.5, "must be int"),
    ("in_features", 3, "not allowed"),  # whitelisted name, but a Conv2d has no such attribute
])
def test_header_cannot_set_arbitrary_attributes(tmp_path, attr, value, msg):
    model, _, _ = build_model("resnet_tiny", num_classes=4)
    header = _header().model_dump()
    header["structure"] = {"layer1.0.conv1": {attr: value}}
    path = _write(tmp_path, _file_with(json.dumps(header), ckpt.tensors_of(model)))
    with pytest.raises(CheckpointError, match=msg):
        ckpt.load(path)
    assert model.layer1[0].conv1.out_channels == 8


def test_unknown_header_fields_and_modules_are_rejected(tmp_path):
    model, _, _ = build_model("resnet_tiny", num_classes=4)
    header = _header().model_dump()
    header["exec"] = "import os"
    with pytest.raises(CheckpointError, match="invalid prunecli header"):
        ckpt.read_header(_file_with(json.dumps(header), ckpt.tensors_of(model)))
    header.pop("exec")
    header["structure"] = {"no.such.module": {"out_channels": 3}}
    (tmp_path / "y.safetensors").write_bytes(_file_with(json.dumps(header), ckpt.tensors_of(model)))
    with pytest.raises(CheckpointError, match="does not have"):
        ckpt.load(tmp_path / "y.safetensors")


def test_truncation_is_detected_at_every_length(tmp_path):
    model, _, _ = build_model("resnet_tiny", num_classes=4)
    data = _file_with(_header().model_dump_json(), ckpt.tensors_of(model))
    for cut in (0, 4, 8, 20, len(data) // 3, len(data) - 1):
        with pytest.raises(CheckpointError):
            ckpt.read_header(data[:cut]) if cut < 40 else ckpt.load(_write(tmp_path, data[:cut]))


def _write(tmp_path, data):
    path = tmp_path / "t.safetensors"
    path.write_bytes(data)
    return path


def test_weights_that_do_not_fit_the_model(tmp_path):
    model, _, _ = build_model("resnet_tiny", num_classes=4)
    tensors = ckpt.tensors_of(model)
    tensors["extra.weight"] = torch.zeros(2)
    with pytest.raises(CheckpointError, match="do not match"):
        ckpt.load(_write(tmp_path, _file_with(_header().model_dump_json(), tensors)))


def test_header_length_beyond_file():
    with pytest.raises(CheckpointError, match="header length"):
        ckpt.read_header(struct.pack("<Q", 10**6) + b"{}")


def test_published_schemas_are_current():
    """docs/schemas/*.json are the formats users rely on: regenerate with
    `python -m prunecli.io.schema docs/schemas` when a change is intended."""
    for name, schema in json_schemas().items():
        stored = json.loads((ROOT / "docs" / "schemas" / f"{name}.schema.json").read_text())
        assert stored == json.loads(json.dumps(schema)), f"{name} schema changed"


def test_golden_header_still_loads():
    """A header written by format version 1 must stay readable."""
    golden = (ROOT / "tests" / "golden" / "header_v1.json").read_text()
    header = ckpt.Header.model_validate_json(golden)
    assert header.structure["layer1.0.conv1"]["out_channels"] == 4
    assert header.lineage[0].command == "train" and header.model.name == "resnet_tiny"


@pytest.mark.parametrize("path", ["forward", "__class__", "", "layer1.0.conv1.weight", "no.such.block"])
def test_removed_modules_only_replace_existing_submodules(tmp_path, path):
    model, _, _ = build_model("resnet_tiny", num_classes=4)
    header = _header().model_dump()
    header["removed_modules"] = [path]
    target = _write(tmp_path, _file_with(json.dumps(header), ckpt.tensors_of(model)))
    with pytest.raises(CheckpointError, match="does not have"):
        ckpt.load(target)
