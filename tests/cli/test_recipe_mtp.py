"""`make -C recipes/mtp-layer-similarity SMOKE=1`: the MTP chain on tiny models (~1.5 min), reference mode.

train → evaluate → prune --method l1-unstructured (oneshot, iterative, layerwise) → evaluate →
analyze --method cka (self and between schedules) → collect.py, as the real run. The two modes'
flags (and the real run's) are checked on `make -n`, which runs nothing.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from prunecli.io import checkpoint as ckpt
from tests.recipes import ROOT, is_pct, run_smoke, table_rows

RECIPE = ROOT / "recipes" / "mtp-layer-similarity"


def test_mtp_recipe_smoke_reference_mode(tmp_path):
    md = run_smoke("mtp-layer-similarity", tmp_path)
    assert "after the last fine-tuning epoch" in md and "seed 0" in md  # the protocol is stated
    acc, cka = md.split("## CKA")
    rows = table_rows(acc)
    assert {(r["pair"], r["schedule"]) for r in rows} == {
        ("densenet_smoke", k) for k in ("oneshot", "iterative", "layerwise")}
    for r in rows:
        assert abs(float(r["sparsity reached"]) - 0.8) < 1e-3
        assert is_pct(r["top-1 ours reference"]) and r["top-1 ours improved"] == "—" and r["top-1 report"] == "—"
    epochs = {r["schedule"]: int(r["FT epochs"]) for r in rows}
    assert epochs == {"iterative": 8, "oneshot": 1, "layerwise": 5}
    assert {r["schedule"]: r["batch"] for r in rows}["iterative"] == "128 / —"  # the schedule's own batch
    assert len(table_rows(cka)) == 3 and all(r["improved"] == "—" for r in table_rows(cka))
    def run(setting: str, seed: int = 0):  # the run folder <mode>-<pair>-<setting>/seed<N>
        return tmp_path / f"reference-densenet_smoke-{setting}" / f"seed{seed}"

    masks = json.loads((run("layerwise-0.8") / "pruned.masks.json").read_text())
    steps = masks["steps"]
    assert steps[0]["unit"] == "features.conv0" and steps[-1]["unit"] == "classifier"
    assert len(steps) == 5  # conv0+norm0, 2 dense blocks, 1 transition, classifier (DenseNet-169: 9)
    assert masks["options"]["shared_optimizer"] is True and masks["options"]["nesterov"] is False
    assert json.loads((run("iterative-0.8") / "pruned.masks.json").read_text())["options"]["shared_optimizer"] is False
    assert len(list((run("iterative-0.8") / "steps").glob("*.safetensors"))) == 8
    assert (run("cka-0.8") / "oneshot-iterative.cka.png").read_bytes()[:4] == b"\x89PNG"
    header = ckpt.read_header((run("base") / "base.safetensors").read_bytes())
    assert header.data.spec == "digits?aug=none&norm=half" and header.data.mean == [0.5, 0.5, 0.5]
    assert header.lineage[-1].options["nesterov"] is False


def _dry(*args: str) -> list[str]:
    """The commands `make -n` would run (joined continuation lines), one per entry."""
    res = subprocess.run(["make", "-n", "-C", str(RECIPE), "OUT=/tmp/mtp-dry", "SPARSITIES=0.8", *args],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return [c for c in res.stdout.replace("\\\n", " ").splitlines() if "prunecli " in c]


def _of(commands: list[str], *words: str) -> list[str]:
    found = [c for c in commands if all(w in c for w in words)]
    assert found, words
    return found


def test_mode_flags_in_the_smoke_chain():
    ref = _dry("SMOKE=1", "PAIRS=vgg_smoke densenet_smoke")
    assert all("'digits?aug=none&norm=half'" in c for c in _of(ref, "--data"))
    assert all("--no-nesterov" in c for c in _of(ref, " train ") + _of(ref, " prune "))
    assert all("--shared-optimizer" in c for c in _of(ref, " prune ", "--schedule layerwise"))
    assert all("--fresh-optimizer" in c for c in _of(ref, " prune ", "--schedule iterative"))
    assert all("--cka-modules all" in c for c in _of(ref, " analyze ", "vgg_smoke-"))
    assert all("--cka-modules layers" in c for c in _of(ref, " analyze ", "densenet_smoke-"))
    imp = _dry("SMOKE=1", "MODE=improved", "PAIRS=vgg_smoke densenet_smoke")
    assert all("--data 'digits'" in c for c in _of(imp, "--data"))
    assert all("--nesterov" in c and "--no-nesterov" not in c for c in _of(imp, " train ") + _of(imp, " prune "))
    assert all("--fresh-optimizer" in c for c in _of(imp, " prune "))
    assert all("--cka-modules layers" in c for c in _of(imp, " analyze "))
    assert all("/tmp/mtp-dry/improved-" in c for c in _of(imp, " -o "))


@pytest.mark.parametrize("mode,data,batches,modules", [
    ("reference", "'cifar100:/c100?aug=none&norm=half'", {"oneshot": 128, "iterative": 32, "layerwise": 64}, "all"),
    ("improved", "'cifar100:/c100'", {"oneshot": 128, "iterative": 128, "layerwise": 128}, "layers"),
])
def test_mode_flags_in_the_real_run(mode, data, batches, modules):
    cmds = _dry("CIFAR100_DIR=/c100", "HAM_DIR=/ham", "WEIGHTS_DIR=/w", "PAIRS=vgg16_cifar100", f"MODE={mode}")
    assert all(data in c for c in _of(cmds, "--data"))
    for schedule, batch in batches.items():
        (prune,) = _of(cmds, " prune ", f"--schedule {schedule}")
        assert f"--batch-size {batch} " in prune and "--lr 1e-3" in prune
        assert f"--finetune-epochs {100 if schedule == 'layerwise' else 10} " in prune
    assert all(f"--cka-modules {modules}" in c and "--batch-size 8 " in c for c in _of(cmds, " analyze "))
    (train,) = _of(cmds, " train ")
    assert "--epochs 100 " in train and "--schedule constant" in train


def test_unknown_mode_is_refused():
    res = subprocess.run(["make", "-n", "-C", str(RECIPE), "SMOKE=1", "MODE=exact"], capture_output=True, text=True)
    assert res.returncode != 0 and "MODE must be reference or improved" in res.stderr
