"""`prunecli export` (issue 16): every exportable pruned family round-trips through ONNX (onnxruntime)
and torch.export (.pt2) within tolerance; a corrupted or mismatching export is caught and removed; the
models that cannot be exported get one line naming why; the base CLI does not import the extra.

Each test checks the written file itself (read back here with onnxruntime / torch.export.load
on a fresh input, compared with the checkpoint's own PyTorch output), so it fails if the
command's verification were skipped or wrong. Checkpoints and exports are shared per module.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from prunecli.io import checkpoint as ckpt
from tests.conftest import run_cli, run_main, untrained

DATA = "synthetic:n=8,val=4,classes=4"
MRI = "phantom:n=2,val=2,size=32,coils=4"
L1 = ("--method", "l1", "--ratio", "0.3")
FAMILIES = {  # family: (model, data, prune arguments)
    "cifar resnet": ("resnet_tiny", DATA, L1),
    "cifar vgg": ("vgg_tiny", DATA, L1),
    "cifar densenet": ("densenet_tiny", DATA, L1),
    "torchvision resnet": ("tv_resnet_tiny", DATA, L1),
    "torchvision vgg": ("tv_vgg_tiny", DATA, L1),
    "torchvision densenet": ("tv_densenet_tiny", DATA, L1),
    "timm deit, heads pruned": ("vit_tiny_test", DATA, ("--method", "isomorphic", "--importance", "l1", "--ratio",
                                                        "0.25", "--head-ratio", "0.5", "--head-dim-ratio", "0.25")),
    "timm convnext, block removed": ("convnext_tiny_test", DATA, (
        "--method", "isomorphic", "--importance", "l1", "--ratio", "0.2", "--remove-blocks", "1",
        "--blocks", "stages.2.blocks.*", "--calib-data", DATA, "--calib-batches", "1")),
    "varnet": ("varnet-tiny", MRI, L1),
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Memoised pruned checkpoints and exports: `store("cifar resnet")`, `store("varnet", "onnx")`."""
    folder = tmp_path_factory.mktemp("export")
    made: dict = {}

    def get(family: str, fmt: str | None = None, *extra: str):
        key = (family, fmt, extra)
        if key not in made:
            if fmt is None:
                model, data, prune = FAMILIES[family]
                base = untrained(model, folder / f"{model}.safetensors", data)
                out = folder / f"{model}.pruned.safetensors"
                r = run_cli("prune", base, *prune, "-o", out)
                assert r.exit_code == 0, r.output + repr(r.exception)
                made[key] = out
            else:
                src = get(family)
                out = folder / f"{src.stem}{'.dyn' if extra else ''}.{fmt}"
                r = run_cli("export", src, "--format", fmt, "-o", out, "--json", *extra)
                assert r.exit_code == 0, r.output + repr(r.exception)
                made[key] = (out, json.loads(r.stdout))
        return made[key]

    return get


def _run_file(path, fmt: str, x: torch.Tensor) -> torch.Tensor:
    """The exported file's output, read back independently of prunecli's verification code."""
    if fmt == "pt2":
        with torch.no_grad():
            return torch.export.load(path).module()(x)
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])


def _close(path, fmt: str, src, batch: int) -> float:
    """Max |exported − PyTorch| on a fresh input of `batch` samples, checked against the tolerance."""
    loaded = ckpt.load(src)
    x = torch.randn(batch, *loaded.header.input_shape, generator=torch.Generator().manual_seed(123))
    with torch.no_grad():
        expected = loaded.model.eval()(x)
    got = _run_file(path, fmt, x)
    assert got.shape == expected.shape
    diff = (got - expected).abs().max().item()
    assert diff <= 1e-4 + 1e-3 * expected.abs().max().item()
    return diff


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_pruned_family_round_trips_within_tolerance(store, family, fmt):
    path, res = store(family, fmt)
    assert res["passed"] is True and res["format"] == fmt and res["batches"] == [2]
    assert res["max_abs_diff"] <= res["atol"] + res["rtol"] * res["max_abs_diff"] / max(res["max_rel_diff"], 1e-30)
    assert res["sha256"] == ckpt.load(res["checkpoint"]).sha256  # the source is named by its hash
    assert json.loads((path.parent / f"{path.name}.json").read_text())["max_abs_diff"] == res["max_abs_diff"]
    assert not [p for p in path.parent.iterdir() if p.name.endswith(f".tmp.{fmt}")]  # no temporary left behind
    diff = _close(path, fmt, res["checkpoint"], batch=2)
    if fmt == "pt2":
        assert diff == 0.0  # the same ATen kernels
    if fmt == "onnx":
        import onnx

        assert res["opset"] == [o.version for o in onnx.load(str(path)).opset_import if o.domain == ""][0] >= 18
    else:
        assert res["opset"] is None


def test_opset_is_the_one_asked_for(store, tmp_path):
    import onnx

    src = store("cifar resnet")
    r = run_cli("export", src, "--opset", "21", "-o", tmp_path / "m.onnx", "--json")
    assert r.exit_code == 0, r.output + repr(r.exception)
    assert json.loads(r.stdout)["opset"] == 21
    assert [o.version for o in onnx.load(str(tmp_path / "m.onnx")).opset_import if o.domain == ""] == [21]
    _close(tmp_path / "m.onnx", "onnx", src, batch=2)


def test_pruned_attention_keeps_its_head_count_and_width_in_both_formats(store):
    """The pruned DeiT has fewer heads (of 4) and narrower ones (of 16 dims), a width per block:
    the graphs carry those widths (and the outputs agree, test above)."""
    import onnx

    model = ckpt.load(store("timm deit, heads pruned")).model
    heads = [(b.attn.num_heads, b.attn.head_dim) for b in model.blocks]
    assert all(h < 4 and d < 16 for h, d in heads) and len(set(heads)) == 2  # seeded: [(2, 11), (2, 13)]
    onnx_path, _ = store("timm deit, heads pruned", "onnx")
    shapes = {init.name: list(init.dims) for init in onnx.load(str(onnx_path)).graph.initializer}
    pt2_path, _ = store("timm deit, heads pruned", "pt2")
    state = torch.export.load(pt2_path).state_dict
    width = model.blocks[0].attn.proj.out_features  # the embedding width (pruned too)
    for i, (h, d) in enumerate(heads):
        assert shapes[f"blocks.{i}.attn.qkv.bias"] == [3 * h * d]  # weights become transposed constants
        assert list(state[f"blocks.{i}.attn.qkv.weight"].shape) == [3 * h * d, width]
        assert list(state[f"blocks.{i}.attn.proj.weight"].shape) == [width, h * d]


def test_convnext_without_its_removed_block(store):
    path, _ = store("timm convnext, block removed", "pt2")
    names = set(torch.export.load(path).state_dict)
    assert not any(n.startswith("stages.2.blocks.0.") for n in names) and any(n.startswith("stages.1.") for n in names)


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_dynamic_batch_runs_at_another_batch(store, fmt):
    path, res = store("cifar resnet", fmt, "--dynamic-batch")
    assert res["batches"] == [2, 3] and res["dynamic_batch"] is True and res["passed"]
    _close(path, fmt, res["checkpoint"], batch=5)
    static, _ = store("cifar resnet", fmt)
    with pytest.raises(Exception, match=r"Expected: 2|size\(\)\[0\] == 2"):  # the static export is fixed to batch 2
        _run_file(static, fmt, torch.randn(5, 3, 32, 32))


def _tamper_onnx(path):
    """Scale the largest initializer by 1.5 (what a bit-rotten or edited file could hold)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    init = max(model.graph.initializer, key=lambda t: numpy_helper.to_array(t).size)
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.5, init.name))
    onnx.save(model, str(path))


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("fmt,damage,says", [("onnx", _tamper_onnx, "differs from PyTorch by max abs"),
                                              ("onnx", _truncate, "cannot be run"),
                                              ("pt2", _truncate, "cannot be run")])
def test_a_corrupted_export_is_detected_and_removed(store, tmp_path, monkeypatch, capsys, fmt, damage, says):
    """The file is damaged right after the exporter wrote it: verification must fail (exit 1),
    and neither the file, its sidecar nor a temporary is left. Skipping verification would exit 0."""
    from prunecli.export import formats

    write = formats.write

    def write_then_damage(program, x, fmt_, path, opset):
        write(program, x, fmt_, path, opset)
        damage(path)

    monkeypatch.setattr(formats, "write", write_then_damage)
    out = tmp_path / f"m.{fmt}"
    code = run_main("export", store("cifar resnet"), "--format", fmt, "-o", out)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1 and "Traceback" not in err, err
    assert len(lines) == 1 and "verification failed" in lines[0] and says in lines[0] and "not written" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_a_tolerance_below_the_real_difference_fails(store, tmp_path, capsys):
    """ONNX's DFT differs from torch.fft by ~1e-6 of the output's scale on the VarNet: --rtol 0
    --atol 0 rejects it (exit 1, nothing written, the JSON still says by how much)."""
    out = tmp_path / "v.onnx"
    code = run_main("export", store("varnet"), "--format", "onnx", "-o", out, "--atol", "0", "--rtol", "0", "--json")
    captured = capsys.readouterr()
    res = json.loads(captured.out)
    assert code == 1 and res["passed"] is False and res["max_abs_diff"] > 0
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("model,why", [("deq-edsr-tiny", "fixed-point solver (Anderson) iterates"),
                                       ("e2e-varnet-tiny", "sensitivity net measures the auto-calibration width")])
@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_a_model_that_cannot_be_exported_says_why(model, why, fmt, tmp_path, capsys):
    base = untrained(model, tmp_path / "m.safetensors", MRI)
    capsys.readouterr()
    code = run_main("export", base, "--format", fmt, "-o", tmp_path / f"m.{fmt}")
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and "Traceback" not in err and why in line and model in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.flops.json", "m.safetensors"] or \
        sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_the_solver_really_is_not_traceable():
    """The refusal is not just caution: torch.export itself fails on the DEQ's solver loop."""
    from prunecli.models import build_model

    model, entry, _ = build_model("deq-edsr-tiny")
    with pytest.raises(Exception, match="data-dependent"):
        torch.export.export(model.eval(), (torch.randn(1, *entry.input_shape),))


def test_missing_extra_names_the_install_command(store, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` raises ImportError
    code = run_main("export", store("cifar resnet"), "-o", tmp_path / "m.onnx")
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2 and "pip install -e .[export]" in line and "onnxruntime" in line
    assert list(tmp_path.iterdir()) == []


def test_base_cli_does_not_import_the_export_extra():
    code = ("import sys; sys.argv = ['prunecli', *sys.argv[1:]]\nfrom prunecli.cli.app import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('LOADED', sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'onnxscript') if m in sys.modules),"
            " file=sys.stderr)")
    for argv in (["--help"], ["export", "--help"], ["profile", "--help"]):
        res = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
        assert "LOADED []" in res.stderr, (argv, res.stderr)


def test_profile_backend_onnxruntime_times_an_onnxruntime_session(store, monkeypatch, capsys):
    """The timed passes run in the onnxruntime session (spied: one, CPU provider, --threads honoured,
    every batch size through the one dynamic-batch graph); the sidecar says which backend it was."""
    from prunecli.export import formats

    sessions = []
    make = formats.onnx_session

    def spy(*args, **kwargs):
        sessions.append(make(*args, **kwargs))
        return sessions[-1]

    monkeypatch.setattr(formats, "onnx_session", spy)
    src = store("cifar resnet")
    code = run_main("profile", src, "--backend", "onnxruntime", "--batch-sizes", "1,3", "--runs", "2",
                    "--warmup", "1", "--threads", "1", "--device", "cpu", "--json")
    res = json.loads(capsys.readouterr().out)
    assert code == 0 and res["backend"] == "onnxruntime" and res["settings"]["backend"] == "onnxruntime"
    assert [row["batch"] for row in res["latency"]] == [1, 3] and all(row["median_ms"] > 0 for row in res["latency"])
    timed = sessions[-1]  # the first ones are the verification's own sessions
    assert timed.get_providers() == ["CPUExecutionProvider"]
    assert timed.get_session_options().intra_op_num_threads == 1
    assert len(sessions) == 3  # verification at batches 2 and 3, then the timed session
    flops = json.loads(src.with_name(src.stem + ".flops.json").read_text())
    assert flops["latency"]["backend"] == "onnxruntime"


@pytest.mark.slow
@pytest.mark.parametrize("model,prune", [
    ("resnet56", ("--method", "l1", "--target-macs", "0.5x")),
    ("timm:deit_tiny_patch16_224", ("--method", "isomorphic", "--importance", "l1", "--ratio", "0.25",
                                    "--head-ratio", "0.5")),
])
def test_full_size_pruned_models_round_trip(model, prune, tmp_path):
    """The tiny models' round trip on full-size ones (ResNet-56 at 32×32, DeiT-Tiny at 224×224)."""
    data = "synthetic:n=8,val=4,classes=10" if model == "resnet56" else "synthetic:size=224,classes=1000,n=4,val=4"
    base = untrained(model, tmp_path / "base.safetensors", data)
    out = tmp_path / "pruned.safetensors"
    r = run_cli("prune", base, *prune, "-o", out)
    assert r.exit_code == 0, r.output + repr(r.exception)
    for fmt in ("onnx", "pt2"):
        path = tmp_path / f"pruned.{fmt}"
        r = run_cli("export", out, "--format", fmt, "--dynamic-batch", "-o", path, "--json")
        assert r.exit_code == 0, r.output + repr(r.exception)
        assert json.loads(r.stdout)["passed"] is True
        _close(path, fmt, out, batch=3)
