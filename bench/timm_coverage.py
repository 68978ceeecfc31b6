"""Which timm architectures prunecli prunes, as a new user would try them (issue 12 item 4).

For each model: build it with random init and 10 classes → save its state dict → `prunecli
import` → `prunecli prune --method l1 --ratio 0.3` → `prunecli profile` of the pruned file
(reload + forward + counts). Every step is the real console entry point in its own process,
so exit codes and error lines are what a user sees; each model runs under one wall-time
limit (its process group is killed past it). Classes:

  prunes+reloads   every step exit 0
  refused          prune (or import) exit 2 with one `error:` line: the line is the reason
  timeout          prune's own `--timeout` (exit 2, "took longer than --timeout"), or the wall limit
  traceback        a step exited with anything else (a bug): the last traceback line
  unloadable       prune wrote a file that `profile` cannot load or run
  not built        timm itself cannot build/run the model here (not ours; listed, not counted)

Input size: the model's pretrained_cfg input size, or `--small N` (default 64) when the model
runs at N×N (convnets do; most ViTs have a fixed patch grid), which keeps the sweep fast.

    .venv/bin/python bench/timm_coverage.py                       # all models below, docs/timm-coverage.md
    .venv/bin/python bench/timm_coverage.py --models resnet18,rexnet_100 --timeout 300
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (family, smallest variant). The first 30: issue 12's sweep; then 22 more families.
MODELS = [
    ("resnet", "resnet18"), ("resnet", "resnet50"), ("efficientnet", "efficientnet_b0"),
    ("mobilenetv3", "mobilenetv3_small_100"), ("mobilenetv2", "mobilenetv2_100"), ("ghostnet", "ghostnet_100"),
    ("convnext", "convnext_atto"), ("convnextv2", "convnextv2_atto"), ("deit", "deit_tiny_patch16_224"),
    ("vit", "vit_tiny_patch16_224"), ("densenet", "densenet121"), ("dla", "dla34"),
    ("hrnet", "hrnet_w18_small"), ("tinynet", "tinynet_e"), ("byobnet (resnext-ts)", "resnext26ts"),
    ("regnet", "regnety_002"), ("inception", "inception_v3"), ("mobilevit", "mobilevit_xxs"),
    ("repvgg", "repvgg_a0"), ("swin", "swin_tiny_patch4_window7_224"), ("mlp-mixer", "mixer_b16_224"),
    ("poolformer", "poolformer_s12"), ("levit", "levit_128s"), ("efficientvit (mit)", "efficientvit_b0"),
    ("fastvit", "fastvit_t8"), ("edgenext", "edgenext_xx_small"), ("cspnet", "cspdarknet53"),
    ("coat", "coat_lite_tiny"), ("pvt_v2", "pvt_v2_b0"), ("rexnet", "rexnet_100"),
    # more families, smallest variants
    ("mnasnet", "mnasnet_small"), ("lcnet", "lcnet_050"), ("hardcorenas", "hardcorenas_a"),
    ("fbnet", "fbnetc_100"), ("mixnet", "mixnet_s"), ("efficientformer", "efficientformer_l1"),
    ("efficientformerv2", "efficientformerv2_s0"), ("metaformer (caformer)", "caformer_s18"),
    ("xcit", "xcit_nano_12_p16_224"), ("pit", "pit_ti_224"), ("visformer", "visformer_tiny"),
    ("selecsls", "selecsls42b"), ("dpn", "dpn48b"), ("res2net", "res2net50_26w_4s"), ("resnest", "resnest14d"),
    ("sknet", "skresnet18"), ("vovnet", "ese_vovnet19b_dw"), ("nfnet", "nf_regnet_b0"), ("mobileone", "mobileone_s0"),
    ("repghost", "repghostnet_050"), ("tiny_vit", "tiny_vit_5m_224"), ("efficientvit (msra)", "efficientvit_m0"),
    ("mobilenetv4", "mobilenetv4_conv_small"), ("vgg", "vgg11"), ("repvit", "repvit_m0_9"),
    ("inception_next", "inception_next_atto"),
]

RESULTS = ("prunes+reloads", "refused", "timeout", "traceback", "unloadable", "not built")


def _build(name: str, small: int, work: Path) -> dict:
    """Child side: random init, 10 classes, state dict to `work`; pick the input size."""
    import timm
    import torch

    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10).eval()
    torch.save(model.state_dict(), work / "weights.pth")
    cfg_size = list(timm.models.get_pretrained_cfg(name, allow_unregistered=True).input_size or (3, 224, 224))
    size = cfg_size[-1]
    if small and small < size:
        try:
            with torch.no_grad():
                model(torch.randn(1, cfg_size[0], small, small))
            size = small
        except Exception:  # a fixed token grid or window size: keep the model's own size
            pass
    return {"size": size, "params": sum(p.numel() for p in model.parameters())}


def _last_line(text: str) -> str:
    errors = [ln for ln in text.splitlines() if ln.startswith("error:")]
    if errors:
        return errors[-1].removeprefix("error:").strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def _step(cmd: list[str], deadline: float) -> tuple[int, str]:
    """Run one prunecli step in its own process group; (exit code or None at the limit, stderr)."""
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "prunecli", *cmd], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        return proc.returncode, err.decode(errors="replace")
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return None, ""


def run_one(family: str, name: str, timeout: float, small: int) -> dict:
    """Parent side: the four steps of one model under one wall-time limit."""
    start = time.monotonic()
    deadline = start + timeout
    row = {"family": family, "model": name, "result": None, "reason": "", "size": None}

    def done(result: str, reason: str = "", step: str = "") -> dict:
        row.update(result=result, reason=reason, step=step, seconds=round(time.monotonic() - start, 1))
        return row

    with tempfile.TemporaryDirectory(prefix="timmcov-") as tmp:
        work = Path(tmp)
        build = subprocess.run([sys.executable, __file__, "--build", name, "--small", str(small), "--work", tmp],
                               capture_output=True, text=True, timeout=max(1.0, deadline - time.monotonic()),
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
        if build.returncode != 0:
            return done("not built", _last_line(build.stderr), "build")
        facts = json.loads(build.stdout.strip().splitlines()[-1])
        row["size"] = facts["size"]
        steps = [
            ("import", ["import", str(work / "weights.pth"), "--model", f"timm:{name}", "--num-classes", "10",
                        "--input-size", str(facts["size"]), "-o", str(work / "base.safetensors")]),
            ("prune", ["prune", str(work / "base.safetensors"), "--method", "l1", "--ratio", "0.3",
                       "--timeout", str(max(1, int(deadline - time.monotonic()) - 15)),
                       "-o", str(work / "pruned.safetensors"), "--json"]),
            ("profile", ["profile", str(work / "pruned.safetensors"), "--compare", str(work / "base.safetensors"),
                         "--batch-sizes", "1", "--runs", "1", "--warmup", "0", "--json"]),
        ]
        for step, cmd in steps:
            if step == "prune" and "--timeout" in cmd and deadline - time.monotonic() < 20:
                return done("timeout", "wall-time limit before prune", step)
            code, err = _step(cmd, deadline)
            if code is None:
                return done("timeout", f"{step} killed at the {timeout:g} s wall-time limit", step)
            if code == 0:
                continue
            reason = _last_line(err)
            if step == "profile":
                return done("unloadable", reason, step)
            if code == 2:
                return done("timeout" if "took longer than --timeout" in reason else "refused", reason, step)
            return done("traceback", reason, step)
        return done("prunes+reloads")


def write_markdown(path: Path, rows: list[dict], meta: dict) -> None:
    counts = {r: sum(row["result"] == r for row in rows) for r in RESULTS}
    counted = len(rows) - counts["not built"]
    lines = [
        "# timm coverage: random init → `prunecli import` → `prune --method l1 --ratio 0.3` → `profile`",
        "",
        f"Generated by `bench/timm_coverage.py` on {meta['date']} (torch {meta['torch']}, timm {meta['timm']}, "
        f"torch-pruning {meta['torch_pruning']}; wall limit {meta['timeout']:g} s per model, "
        f"input {meta['small']}×{meta['small']} where the model runs at it, else its own size). "
        f"Swept {len(rows)} of the {meta['listed']} listed models"
        + ("." if len(rows) == meta["listed"] else f" (`--models {','.join(r['model'] for r in rows)}`)."),
        "",
        f"**{counts['prunes+reloads']} of {counted} prune and reload** "
        + ", ".join(f"{counts[r]} {r}" for r in RESULTS[1:] if counts[r]) + ".",
        "",
        "| family | model | result | reason | input | time (s) |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        reason = row["reason"].replace("|", "\\|")
        where = f"({row['step']}) " if row.get("step") and row["result"] != "prunes+reloads" else ""
        lines.append(f"| {row['family']} | `{row['model']}` | {row['result']} | {where}{reason} | "
                     f"{row['size'] or ''} | {row['seconds']} |")
    lines += ["", "Regenerate: `.venv/bin/python bench/timm_coverage.py` (see `bench/README.md`)."]
    path.write_text("\n".join(lines) + "\n")


def _meta(args, listed: int) -> dict:
    from importlib.metadata import version

    import timm
    import torch

    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "torch": torch.__version__,
            "timm": timm.__version__, "torch_pruning": version("torch-pruning"),
            "timeout": args.timeout, "small": args.small, "listed": listed, "cpus": os.cpu_count()}


def sweep(names: list[str], timeout: float, small: int, jobs: int, log=print) -> list[dict]:
    family = dict((m, f) for f, m in MODELS)
    todo = [(family.get(n, n.split("_")[0]), n) for n in names]
    rows: dict[str, dict] = {}
    with futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        running = {pool.submit(run_one, f, n, timeout, small): n for f, n in todo}
        for fut in futures.as_completed(running):
            row = fut.result()
            rows[row["model"]] = row
            log(f"{row['model']:32s} {row['result']:15s} {row['seconds']:7.1f} s  {row['reason'][:120]}")
    return [rows[n] for _, n in todo]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated timm names (default: the list in this script)")
    parser.add_argument("--timeout", type=float, default=600, help="wall seconds per model, all steps (600)")
    parser.add_argument("--small", type=int, default=64, help="input size to use where the model runs at it (0: own)")
    parser.add_argument("--jobs", type=int, default=1, help="models in parallel (1)")
    parser.add_argument("--markdown", default=str(ROOT / "docs" / "timm-coverage.md"))
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "timm_coverage.json"))
    parser.add_argument("--build", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build:  # child: build one model
        print(json.dumps(_build(args.build, args.small, Path(args.work))))
        return
    names = args.models.split(",") if args.models else [m for _, m in MODELS]
    rows = sweep(names, args.timeout, args.small, args.jobs)
    meta = _meta(args, len(MODELS))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    write_markdown(Path(args.markdown), rows, meta)
    print(f"wrote {args.markdown} and {args.json}")


if __name__ == "__main__":
    main()
