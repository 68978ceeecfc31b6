"""`prunecli report` (issue 17): a folder of runs → aggregated rows, Pareto fronts, md/HTML/JSON,
and the `evaluate -o` / `profile -o` sidecars it reads."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import pytest

from tests.conftest import SYNTH, run_cli, untrained

# runs/<method>/seed<N>/ft.safetensors: eval top-1, header best/last val top-1, latency (ms, batch 1)
NUMBERS = {
    "l1": {0: (90.0, 91.0, 89.0, 1.0), 1: (91.0, 92.0, 90.5, 1.2), 2: (93.0, 93.5, 92.0, 1.4)},
    "random": {0: (85.0, 86.0, 84.0, 0.9), 1: (87.0, 88.0, 86.0, 1.1), 2: (86.0, 86.5, 85.5, 1.0)},
}
BASE = (95.0, 95.5, 95.0, 2.0)


def _mean_std(xs):
    """By hand: the mean and the sample standard deviation (n - 1)."""
    m = sum(xs) / len(xs)
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def _write_run(src: Path, dst: Path, seed: int, numbers, lineage_extra: bool = True, counts=None) -> None:
    """`src` rewritten by prunecli's own writer as a fine-tuned run of `seed` with known header
    metrics, plus known `.eval.json` and `.profile.json` sidecars and `src`'s `.flops.json`."""
    from prunecli.io import checkpoint as ckpt

    top1, best, last, ms = numbers
    loaded = ckpt.load(src)
    entry = ckpt.lineage_entry("finetune", {"data": SYNTH, "epochs": 3, "lr": 0.01, "seed": seed,
                                            "select": "last", "workers": 0}, loaded.sha256)
    header = loaded.header.model_copy(update={
        "lineage": [*loaded.header.lineage, entry] if lineage_extra else loaded.header.lineage,
        "metrics": {"epoch": 3.0, "val_top1": last, "best_epoch": 2.0, "best_val_top1": best,
                    "last_epoch": 3.0, "last_val_top1": last}})
    dst.parent.mkdir(parents=True, exist_ok=True)
    ckpt.save(loaded.model, dst, header)
    stem = dst.name[: -len(".safetensors")]
    (dst.parent / f"{stem}.eval.json").write_text(json.dumps({"checkpoint": str(dst), "split": "test", "top1": top1}))
    (dst.parent / f"{stem}.profile.json").write_text(json.dumps({
        "latency": [{"batch": 1, "median_ms": ms}, {"batch": 64, "median_ms": 10 * ms}],
        "settings": {"device": "cpu", "device_name": "x86_64"}, **(counts or {})}))
    flops = src.parent / f"{src.name[: -len('.safetensors')]}.flops.json"
    if flops.exists():
        (dst.parent / f"{stem}.flops.json").write_text(flops.read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """Two methods × three seeds, a base, a corrupt checkpoint, a foreign safetensors file and an
    unknown sidecar."""
    tmp = tmp_path_factory.mktemp("report")
    base = untrained("resnet_tiny", tmp / "base.safetensors", SYNTH)
    root = tmp / "runs"
    for method, seeds in NUMBERS.items():
        pruned = tmp / f"{method}.safetensors"
        r = run_cli("prune", base, "--method", method, "--ratio", "0.5", "-o", pruned)
        assert r.exit_code == 0, r.output
        for seed, numbers in seeds.items():
            _write_run(pruned, root / method / f"seed{seed}" / "ft.safetensors", seed, numbers)
    before = json.loads((tmp / "l1.flops.json").read_text())["before"]  # the base's counts, as profile -o has them
    _write_run(base, root / "base" / "seed0" / "base.safetensors", 0, BASE, lineage_extra=False,
               counts={"macs": before["macs"], "params": before["params"]})
    (root / "l1" / "seed1" / "broken.safetensors").write_bytes(b"\x00\x01not a checkpoint" * 10)
    meta = b'{"__metadata__":{}}'
    (root / "random" / "seed0" / "plain.safetensors").write_bytes(struct.pack("<Q", len(meta)) + meta)
    (root / "l1" / "seed0" / "ft.latency.json").write_text("{not json")  # unknown sidecar: left alone
    return root


def _report(capsys, *args):
    from tests.conftest import run_main

    capsys.readouterr()
    code = run_main("report", *map(str, args))
    out, err = capsys.readouterr()
    return code, out, err


def test_rows_aggregate_seeds_exactly_and_bad_files_are_one_warning_each(runs, capsys):
    code, out, err = _report(capsys, runs, "--json")
    assert code == 0
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2 and "Traceback" not in err
    assert any("broken.safetensors" in w for w in warnings) and any("plain.safetensors" in w for w in warnings)
    doc = json.loads(out)
    rows = {r["setting"]: r for r in doc["rows"]}
    assert set(rows) == {"base", "l1", "random"}
    for method, seeds in NUMBERS.items():
        row = rows[method]
        assert row["n"] == 3 and sorted(row["seeds"]) == [0, 1, 2] and row["method"] == method
        for key, i in (("acc", 0), ("best", 1), ("last", 2), ("latency_ms", 3)):
            mean, std = _mean_std([v[i] for v in seeds.values()])
            assert row[key]["mean"] == pytest.approx(mean, abs=1e-12), key
            assert row[key]["std"] == pytest.approx(std, abs=1e-12), key
            assert row[key]["n"] == 3
        flops = json.loads((runs.parent / f"{method}.flops.json").read_text())
        assert row["macs"] == {"mean": flops["after"]["macs"], "std": 0.0, "n": 3}
        assert row["params"]["mean"] == flops["after"]["params"]
        assert row["lineage"].startswith("train resnet_tiny") and f"prune {method} (ratio=0.5)" in row["lineage"]
        assert row["acc_source"] == "evaluate (test)" and row["batch"] == 1 and row["device"] == "x86_64"
    assert rows["base"]["base"] and rows["base"]["n"] == 1 and rows["base"]["acc"]["std"] is None
    assert rows["base"]["acc"]["mean"] == BASE[0]
    assert "mean ± sample std" in doc["protocol"] and "batch 1 on x86_64" in doc["protocol"]
    # Pareto fronts over the rows' means: base (most accurate, most MACs/latency) and l1 beat random
    assert doc["pareto"]["macs"] == ["l1/ft", "base/base"]  # random: the same MACs as l1, less accurate
    assert doc["pareto"]["latency"] == ["random/ft", "l1/ft", "base/base"]


def test_latency_batch_is_chosen(runs, capsys):
    code, out, _ = _report(capsys, runs, "--json", "--batch", "64")
    rows = {r["setting"]: r for r in json.loads(out)["rows"]}
    assert code == 0 and rows["l1"]["latency_ms"]["mean"] == pytest.approx(12.0)


def test_pareto_front_by_hand():
    from prunecli.report.pareto import front

    points = [(1, 90), (2, 95), (3, 94), (2, 93), (4, 96), (1, 90), (5, 96)]
    # (3,94) and (2,93) lose to (2,95); (5,96) to (4,96); the two equal (1,90) both stay
    assert front(points) == [0, 5, 1, 4]
    assert front([(1, 0.5), (2, 0.2)], higher=False) == [0, 1]


def test_md_html_plot_with_paper(runs, tmp_path, capsys):
    paper = tmp_path / "paper.json"
    paper.write_text(json.dumps({"source": "Someone et al. 2099", "section": "Table 2", "metric": "top1", "rows": [
        {"setting": "l1", "method": "l1", "macs": 1.0e6, "params": 5000, "top1": 92.5, "latency_ms": 1.1},
        {"setting": "base", "method": "base", "base": True, "macs": 3.3e6, "top1": 95.1},
        {"setting": "taylor", "method": "taylor", "macs": 1.5e6, "top1": 93.0}]}))
    md, html, png = tmp_path / "r.md", tmp_path / "r.html", tmp_path / "p.png"
    code, out, err = _report(capsys, runs, "--paper", paper, "--x", "macs", "--x", "latency", "--plot", png,
                             "--md", md, "--html", html)
    assert code == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = md.read_text()
    lines = text.splitlines()
    assert lines[2].startswith("Protocol: top1: evaluate (test)") and "Someone et al. 2099, Table 2" in lines[2]
    l1 = next(line for line in lines if line.startswith("| l1 |"))
    assert "| 91.33 ± 1.53 | 92.50 |" in l1  # ours beside the paper's
    assert any(line.startswith("| taylor | taylor | 0 |") for line in lines)  # the paper's row we did not run
    page = html.read_text()
    assert page.count("data:image/png;base64,") == 2 and "top1 vs macs" in page and "top1 vs latency" in page
    for setting, method in (("l1", "l1"), ("random", "random"), ("base", "base"), ("taylor", "taylor")):
        assert f"<td>{setting}</td><td>{method}</td>" in page
    assert "http" not in page.replace("Someone", "")  # nothing fetched: works offline
    assert "│ l1" in out  # the rich table on stdout
    for ckpt in runs.rglob("ft.safetensors"):  # the per-run table: every checkpoint behind the means
        assert f"<td>{ckpt}</td>" in page
    # one level up the settings are runs/l1, ...: the paper's `l1` matches by its last folders
    code, out, _ = _report(capsys, runs.parent, "--paper", paper, "--json")
    matches = {m["ours"]: m["paper"] for m in json.loads(out)["matches"]}
    assert code == 0 and matches["runs/l1/ft"] == "l1" and matches["runs/base/base"] == "base"
    assert matches["runs/random/ft"] is None and matches[None] == "taylor"


def test_bad_paper_is_one_error_line(runs, tmp_path, capsys):
    paper = tmp_path / "paper.json"
    paper.write_text(json.dumps({"source": "x", "section": "y", "rows": [{"setting": "a", "method": "b", "top_1": 1}]}))
    code, out, err = _report(capsys, runs, "--paper", paper)
    assert code == 2 and "rows.0.top_1" in err and "Traceback" not in err and out == ""


def test_evaluate_and_profile_sidecars_are_the_json_output(tmp_path, tiny_ckpt, capsys):
    from tests.conftest import run_main

    ev = tmp_path / "base.eval.json"
    capsys.readouterr()
    assert run_main("evaluate", tiny_ckpt, "--data", SYNTH, "--device", "cpu", "--json", "-o", ev) == 0
    printed = capsys.readouterr().out
    assert ev.read_text() == printed
    doc = json.loads(printed)
    assert doc["split"] == "val" and doc["select"] == "last" and doc["epoch"] == 1 and doc["last_epoch"] == 1
    pr = tmp_path / "base.profile.json"
    assert run_main("profile", tiny_ckpt, "--batch-sizes", "1", "--runs", "2", "--warmup", "1", "--device", "cpu",
                    "--json", "-o", pr) == 0
    assert pr.read_text() == capsys.readouterr().out
    # without --json the table is printed and the file still holds the JSON
    assert run_main("evaluate", tiny_ckpt, "--data", SYNTH, "--device", "cpu", "-o", ev) == 0
    assert "top-1 %" in capsys.readouterr().out and json.loads(ev.read_text())["top1"] == doc["top1"]


def test_stale_sidecar_is_ignored_with_a_warning(runs, tmp_path, capsys):
    import shutil

    folder = tmp_path / "one" / "seed0"
    shutil.copytree(runs / "l1" / "seed0", folder)
    (folder / "broken.safetensors").unlink(missing_ok=True)
    side = folder / "ft.eval.json"
    side.write_text(json.dumps({"split": "test", "top1": 1.0, "sha256": "0" * 64}))
    code, out, err = _report(capsys, tmp_path / "one", "--json")
    row = json.loads(out)["rows"][0]
    assert code == 0 and "stale" in err and row["acc"]["mean"] == NUMBERS["l1"][0][2]  # the header's val top-1
    assert row["acc_source"] == "header val"


def _scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def test_tensorboard_scalars_per_epoch(tmp_path):
    from prunecli.io.checkpoint import read_file_header

    out, logdir = tmp_path / "s.safetensors", tmp_path / "tb"
    r = run_cli("train", "--model", "resnet_tiny", "--data", SYNTH, "--epochs", "2", "-b", "48", "--device", "cpu",
                "--optimizer", "proxsgd", "--mu", "0.05", "--lr", "0.01", "--tensorboard", logdir, "-o", out)
    assert r.exit_code == 0, r.output + repr(r.exception)
    scalars = _scalars(logdir)
    assert {"train/loss", "val/top1", "val/top5", "val/loss", "lr", "speed/images_per_s",
            "sparsity/zero_groups"} <= set(scalars)
    metrics = read_file_header(out).metrics
    assert [s for s, _ in scalars["val/top1"]] == [1, 2]
    assert scalars["val/top1"][-1][1] == pytest.approx(metrics["last_val_top1"], rel=1e-6)
    assert max(v for _, v in scalars["val/top1"]) == pytest.approx(metrics["best_val_top1"], rel=1e-6)
    assert scalars["train/loss"][-1][1] == pytest.approx(metrics["train_loss"], rel=1e-6)
    assert scalars["sparsity/zero_groups"][-1][1] == pytest.approx(metrics["zero_groups"], rel=1e-6)
    assert scalars["lr"][0][1] < 0.01 + 1e-9  # cosine: at most the initial lr after the first epoch


def test_tensorboard_without_the_package_is_one_line(tmp_path, monkeypatch, capsys):
    import sys

    from tests.conftest import run_main

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as when not installed
    capsys.readouterr()
    code = run_main("train", "--model", "resnet_tiny", "--data", SYNTH, "--epochs", "1", "--device", "cpu",
                    "--tensorboard", tmp_path / "tb", "-o", tmp_path / "o.safetensors")
    err = capsys.readouterr().err
    assert code == 2 and "pip install -e .[tensorboard]" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.safetensors").exists()


def test_measure_fills_missing_sidecars_once(tmp_path, tiny_ckpt, capsys):
    import shutil

    folder = tmp_path / "runs" / "base" / "seed0"
    folder.mkdir(parents=True)
    shutil.copy(tiny_ckpt, folder / "base.safetensors")
    code, out, _ = _report(capsys, tmp_path / "runs", "--json")
    assert code == 0 and json.loads(out)["rows"][0]["latency_ms"]["n"] == 0  # nothing run without --measure
    assert not (folder / "base.eval.json").exists()
    code, out, err = _report(capsys, tmp_path / "runs", "--json", "--measure", "--device", "cpu",
                             "--batch-sizes", "2")
    assert code == 0, err
    ev = json.loads((folder / "base.eval.json").read_text())
    prof = json.loads((folder / "base.profile.json").read_text())
    row = json.loads(out)["rows"][0]
    assert ev["split"] == "test" and ev["data"] == SYNTH  # the checkpoint's recorded data, its test split
    assert row["acc"]["mean"] == ev["top1"] and row["acc_source"] == "evaluate (test)"
    assert row["latency_ms"]["mean"] == prof["latency"][0]["median_ms"] and row["batch"] == 2
    stamp = (folder / "base.eval.json").stat().st_mtime_ns
    assert _report(capsys, tmp_path / "runs", "--measure", "--device", "cpu")[0] == 0
    assert (folder / "base.eval.json").stat().st_mtime_ns == stamp  # measured once, then read


def test_report_reads_headers_only(runs):
    """No model is built: neither torch nor matplotlib is imported for a table (fresh process)."""
    import subprocess
    import sys

    code = ("import sys\nfrom prunecli.cli.app import main\n"
            f"sys.argv = ['prunecli', 'report', {str(runs)!r}, '--json']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'matplotlib', 'safetensors') if m in sys.modules), file=sys.stderr)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stderr.strip().splitlines()[-1] == "[]" and json.loads(r.stdout)["rows"]


def test_reconstruction_rows_are_psnr_and_ssim(tmp_path, capsys):
    import shutil

    base = untrained("deq-edsr-tiny", tmp_path / "m.safetensors", "phantom:n=2,val=2,size=16")
    for seed, (psnr, ssim) in {0: (30.0, 0.80), 1: (31.0, 0.84)}.items():
        folder = tmp_path / "runs" / "deq" / f"seed{seed}"
        folder.mkdir(parents=True)
        shutil.copy(base, folder / "m.safetensors")
        (folder / "m.eval.json").write_text(json.dumps({"split": "test", "psnr": psnr, "ssim": ssim, "nmse": 0.1}))
    code, out, _ = _report(capsys, tmp_path / "runs", "--json")
    row = json.loads(out)["rows"][0]
    assert code == 0 and row["metric"] == "psnr" and row["n"] == 2
    assert row["acc"]["mean"] == pytest.approx(30.5) and row["acc"]["std"] == pytest.approx(math.sqrt(0.5))
    assert row["acc2"]["mean"] == pytest.approx(0.82) and row["acc2"]["std"] == pytest.approx(math.sqrt(0.0008))
    md = tmp_path / "r.md"
    assert _report(capsys, tmp_path / "runs", "--md", md)[0] == 0
    assert "| setting | method | n | psnr | ssim |" in md.read_text() and "| 30.50 ± 0.71 | 0.820 ± 0.028 |" in md.read_text()


def test_runs_differing_in_more_than_the_seed_are_not_averaged(runs, tmp_path, capsys):
    import shutil

    from prunecli.io import checkpoint as ckpt

    for seed in (0, 1):
        shutil.copytree(runs / "l1" / f"seed{seed}", tmp_path / "l1" / f"seed{seed}")
    (tmp_path / "l1" / "seed1" / "broken.safetensors").unlink()
    path = tmp_path / "l1" / "seed1" / "ft.safetensors"
    loaded = ckpt.load(path)
    lineage = [e.model_copy(update={"options": {**e.options, "epochs": 9}}) if e.command == "finetune" else e
               for e in loaded.header.lineage]
    ckpt.save(loaded.model, path, loaded.header.model_copy(update={"lineage": lineage}))
    code, out, err = _report(capsys, tmp_path, "--json")
    rows = json.loads(out)["rows"]
    assert code == 0 and [r["n"] for r in rows] == [1, 1]
    assert "l1/ft: runs differ in more than the seed (finetune --epochs): not averaged" in err


def test_tensorboard_writes_on_rank_0_only(tmp_path, monkeypatch):
    from prunecli.engine import tblog

    monkeypatch.setenv("RANK", "1")
    with tblog.writing(str(tmp_path / "tb1")):
        tblog.log_epoch({"epoch": 1, "train_loss": 1.0, "val_top1": 50.0}, 0.1)
    assert not (tmp_path / "tb1").exists()
    monkeypatch.setenv("RANK", "0")
    with tblog.writing(str(tmp_path / "tb0")):
        tblog.log_epoch({"epoch": 1, "train_loss": 1.0, "val_top1": 50.0, "zero_groups": 0.25}, 0.1)
    assert _scalars(tmp_path / "tb0") == {"train/loss": [(1, 1.0)], "val/top1": [(1, 50.0)], "lr": [(1, pytest.approx(0.1))],
                                          "sparsity/zero_groups": [(1, 0.25)]}


def test_foreign_sidecar_contents_cost_their_numbers_not_the_report(runs, tmp_path, capsys):
    import shutil

    folder = tmp_path / "x" / "seed0"
    shutil.copytree(runs / "l1" / "seed0", folder)
    (folder / "ft.profile.json").write_text(json.dumps({"latency": [{"batch": "one"}, 3], "settings": []}))
    (folder / "ft.flops.json").write_text(json.dumps({"after": {"macs": "many"}, "latency": 5}))
    (folder / "ft.eval.json").write_text("[1, 2]")
    (folder / "ft.masks.json").write_text(json.dumps({"sparsity": "half"}))
    code, out, err = _report(capsys, tmp_path / "x", "--json")
    row = json.loads(out)["rows"][0]
    assert code == 0 and "Traceback" not in err and "ft.eval.json: ignored, not a JSON object" in err
    assert row["macs"]["n"] == row["latency_ms"]["n"] == row["sparsity"]["n"] == 0
    assert row["acc"]["mean"] == NUMBERS["l1"][0][2]  # the header's val top-1 instead


@pytest.mark.slow  # ~15 s: one 2-process torchrun job
def test_tensorboard_under_torchrun_one_writer(tmp_path):
    from tests.cli.test_ddp import torchrun

    res = torchrun("train", "--model", "resnet_tiny", "--data", SYNTH, "--epochs", "2", "-b", "16", "--device", "cpu",
                   "--tensorboard", tmp_path / "tb", "-o", tmp_path / "o.safetensors")
    assert res.returncode == 0, res.stderr[-3000:]
    assert len(list((tmp_path / "tb").glob("events.out.tfevents.*"))) == 1
    assert [s for s, _ in _scalars(tmp_path / "tb")["val/top1"]] == [1, 2]
