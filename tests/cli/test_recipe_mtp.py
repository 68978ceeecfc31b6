"""`make -C recipes/mtp-layer-similarity SMOKE=1`: the MTP chain on tiny models (~2 min), reference mode.

train → evaluate -o → prune --method l1-unstructured (oneshot, iterative, layerwise) → evaluate -o →
analyze --method cka (self and between schedules) → prunecli report, as the real run; the one-shot
schedule runs seeds 0 and 1 (two base models), so the report averages them. The two modes' flags (and
the real run's) are checked on `make -n`, which runs nothing.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from prunecli.io import checkpoint as ckpt
from tests.recipes import ROOT, check_paper_rows, check_report_files, check_seed_row, report_rows, run_smoke

RECIPE = ROOT / "recipes" / "mtp-layer-similarity"
PAIR = "reference/densenet_smoke"
SEEDS = {"oneshot": [0, 1], "iterative": [0], "layerwise": [0]}  # SEEDS_reference/densenet_smoke-oneshot-0.8 = 0 1


def test_mtp_recipe_smoke_reference_mode(tmp_path):
    md = run_smoke("mtp-layer-similarity", tmp_path)
    rows = report_rows(md)

    def run(setting: str, seed: int = 0):  # the run folder <mode>/<pair>-<setting>/seed<N>
        return tmp_path / f"{PAIR}-{setting}" / f"seed{seed}"

    check_seed_row(rows, tmp_path, f"{PAIR}-base", "base", [0, 1])
    budget = {"iterative": 8, "oneshot": 1, "layerwise": 5}  # fine-tuning epochs each schedule spent
    for schedule, seeds in SEEDS.items():
        row = check_seed_row(rows, tmp_path, f"{PAIR}-{schedule}-0.8", "pruned", seeds)
        assert row["method"] == "l1-unstructured" and "prune l1-unstructured (sparsity=0.8)" in row["lineage"]
        assert row["sparsity"] == "0.800"  # the same in every seed: no ± shown
        for s in seeds:
            prune = json.loads((run(f"{schedule}-0.8", s) / "prune.json").read_text())
            masks = json.loads((run(f"{schedule}-0.8", s) / "pruned.masks.json").read_text())
            assert prune["finetune_epochs"] == budget[schedule] and abs(prune["sparsity"] - 0.8) < 1e-3
            assert masks["options"]["seed"] == s
            assert masks["options"]["batch_size"] == (128 if schedule == "iterative" else 64)  # the schedule's own
            assert (run(f"{schedule}-0.8", s) / "pruned.selfcka.png").read_bytes()[:4] == b"\x89PNG"
    assert "over n = 1, 2 seed(s)" in md
    assert check_paper_rows(rows, "mtp-layer-similarity") == 24
    check_report_files(tmp_path, rows)
    masks = json.loads((run("layerwise-0.8") / "pruned.masks.json").read_text())
    steps = masks["steps"]
    assert steps[0]["unit"] == "features.conv0" and steps[-1]["unit"] == "classifier"
    assert len(steps) == 5  # conv0+norm0, 2 dense blocks, 1 transition, classifier (DenseNet-169: 9)
    assert masks["options"]["shared_optimizer"] is True and masks["options"]["nesterov"] is False
    assert json.loads((run("iterative-0.8") / "pruned.masks.json").read_text())["options"]["shared_optimizer"] is False
    # a snapshot per step, outside OUT (in it, the report would take them for seeds)
    snapshots = tmp_path.parent / f"{tmp_path.name}-snapshots" / f"{PAIR}-iterative-0.8" / "seed0"
    assert len(list(snapshots.glob("*.safetensors"))) == 8 \
        and {p.name for p in tmp_path.rglob("*.safetensors")} == {"base.safetensors", "pruned.safetensors"}
    cka = json.loads((run("cka-0.8") / "oneshot-iterative.cka.json").read_text())  # seed 0: both schedules ran it
    assert len(cka["layers_a"]) == len(cka["layers_b"]) and (run("cka-0.8") / "oneshot-iterative.cka.png").exists()
    assert sorted(p.name for p in (tmp_path / f"{PAIR}-cka-0.8").iterdir()) == ["seed0"]
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
    assert all("/tmp/mtp-dry/improved/" in c for c in _of(imp, " -o "))


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
