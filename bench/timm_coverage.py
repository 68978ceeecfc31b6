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

A refusal that names `--ignore` globs is then checked: prune again with exactly those globs and
profile the result. The `with --ignore` column says whether the suggested command works (and
how many MACs it removes), so a refusal never points at a command that fails.

`--method taylor|isomorphic` sweeps those methods instead (calibration on a seeded synthetic
set at the model's input size), `--update` replaces only the swept models' rows in the existing
JSON and rewrites the table from all rows.

Input size: the model's pretrained_cfg input size, or `--small N` (default 64) when the model
runs at N×N (convnets do; most ViTs have a fixed patch grid), which keeps the sweep fast.

    .venv/bin/python bench/timm_coverage.py                       # all models below, docs/timm-coverage.md
    .venv/bin/python bench/timm_coverage.py --models resnet18,rexnet_100 --timeout 300
    .venv/bin/python bench/timm_coverage.py --models dpn48b --update          # refresh one row
    .venv/bin/python bench/timm_coverage.py --method isomorphic --models deit_tiny_patch16_224 \
        --markdown docs/timm-coverage-isomorphic.md --json bench/results/timm_coverage_isomorphic.json
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import datetime
import json
import os
import re
import shlex
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

# torchvision (`--zoo tv`, models as `tv:NAME`): Torch-Pruning's torchvision benchmark families.
TV_MODELS = [
    ("alexnet", "alexnet"), ("vgg", "vgg11_bn"), ("vgg", "vgg16"), ("resnet", "resnet18"), ("resnet", "resnet50"),
    ("resnext", "resnext50_32x4d"), ("wide_resnet", "wide_resnet50_2"), ("squeezenet", "squeezenet1_1"),
    ("densenet", "densenet121"), ("googlenet", "googlenet"), ("inception", "inception_v3"),
    ("mobilenet_v2", "mobilenet_v2"), ("mobilenet_v3", "mobilenet_v3_small"), ("shufflenet", "shufflenet_v2_x0_5"),
    ("mnasnet", "mnasnet0_5"), ("efficientnet", "efficientnet_b0"), ("efficientnet_v2", "efficientnet_v2_s"),
    ("regnet", "regnet_x_400mf"), ("regnet", "regnet_y_400mf"), ("convnext", "convnext_tiny"),
    ("vit", "vit_b_16"), ("swin", "swin_t"), ("swin_v2", "swin_v2_t"), ("maxvit", "maxvit_t"),
]

RESULTS = ("prunes+reloads", "refused", "timeout", "traceback", "unloadable", "not built")


def _build(name: str, small: int, work: Path) -> dict:
    """Child side: random init, 10 classes, state dict to `work`; pick the input size."""
    import torch

    torch.manual_seed(0)
    if name.startswith("tv:"):
        from prunecli.models import get_entry

        entry = get_entry(name)
        model, cfg_size = entry.builder(num_classes=10).eval(), list(entry.input_shape)
    else:
        import timm

        model = timm.create_model(name, num_classes=10).eval()
        cfg_size = list(timm.models.get_pretrained_cfg(name, allow_unregistered=True).input_size or (3, 224, 224))
    torch.save(model.state_dict(), work / "weights.pth")
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


def _suggested_ignores(reason: str) -> list[str]:
    """The `--ignore 'GLOB'` options a refusal line suggests, in order."""
    return re.findall(r"--ignore '([^']+)'", reason)


def _method_options(method: str, size: int) -> list[str]:
    """`prune` options for `method`; Taylor and isomorphic calibrate on seeded synthetic images."""
    if method == "l1":
        return ["--method", "l1", "--ratio", "0.3"]
    data = ["--calib-data", f"synthetic:classes=10,size={size},n=16,val=4", "--calib-batches", "2",
            "--batch-size", "4"]
    if method == "taylor":
        return ["--method", "taylor", "--ratio", "0.3", *data]
    return ["--method", "isomorphic", "--ratio", "0.3", *data]


def _prune_and_profile(work: Path, options: list[str], out: str, deadline: float) -> tuple[int | None, str, str]:
    """(exit code or None at the wall limit, error line, step) of prune → profile into `out`."""
    prune = ["prune", str(work / "base.safetensors"), *options,
             "--timeout", str(max(1, int(deadline - time.monotonic()) - 15)), "-o", str(work / out), "--json"]
    code, err = _step(prune, deadline)
    if code != 0:
        return code, _last_line(err), "prune"
    profile = ["profile", str(work / out), "--compare", str(work / "base.safetensors"),
               "--batch-sizes", "1", "--runs", "1", "--warmup", "0", "--json"]
    code, err = _step(profile, deadline)
    return code, _last_line(err), "profile"


def _check_ignores(row: dict, work: Path, options: list[str], deadline: float) -> None:
    """Run the refusal's suggested `--ignore` globs; record whether the prune then works."""
    globs = _suggested_ignores(row["reason"])
    if row["result"] != "refused" or not globs or deadline - time.monotonic() < 30:
        return
    extra = [arg for g in globs for arg in ("--ignore", g)]
    code, line, step = _prune_and_profile(work, [*options, *extra], "ignored.safetensors", deadline)
    row["ignore_args"] = " ".join(f"--ignore {shlex.quote(g)}" for g in globs)
    row["with_ignore"] = "prunes+reloads" if code == 0 else f"fails at {step}: {line[:200]}"
    if code == 0:
        macs = _macs(work / "ignored.flops.json")
        if macs:
            row["with_ignore"] += f" (MACs -{100 * (1 - macs[1] / macs[0]):.0f}%)"


def _macs(flops_json: Path) -> tuple[float, float] | None:
    try:
        data = json.loads(flops_json.read_text())
        return float(data["before"]["macs"]), float(data["after"]["macs"])
    except (OSError, KeyError, ValueError, TypeError):
        return None


def run_one(family: str, name: str, timeout: float, small: int, method: str = "l1") -> dict:
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
        code, err = _step(["import", str(work / "weights.pth"), "--model",
                           name if name.startswith("tv:") else f"timm:{name}", "--num-classes", "10",
                           "--input-size", str(facts["size"]), "-o", str(work / "base.safetensors")], deadline)
        if code is None:
            return done("timeout", f"import killed at the {timeout:g} s wall-time limit", "import")
        if code != 0:
            return done("refused" if code == 2 else "traceback", _last_line(err), "import")
        if deadline - time.monotonic() < 20:
            return done("timeout", "wall-time limit before prune", "prune")
        options = _method_options(method, facts["size"])
        code, reason, step = _prune_and_profile(work, options, "pruned.safetensors", deadline)
        if code is None:
            return done("timeout", f"{step} killed at the {timeout:g} s wall-time limit", step)
        if code != 0 and step == "profile":
            return done("unloadable", reason, step)
        if code == 2:
            done("timeout" if "took longer than --timeout" in reason else "refused", reason, step)
            _check_ignores(row, work, options, deadline)
            row["seconds"] = round(time.monotonic() - start, 1)
            return row
        if code != 0:
            return done("traceback", reason, step)
        macs = _macs(work / "pruned.flops.json")
        return done("prunes+reloads", f"MACs -{100 * (1 - macs[1] / macs[0]):.0f}%" if macs else "")


def write_markdown(path: Path, rows: list[dict], meta: dict) -> None:
    counts = {r: sum(row["result"] == r for row in rows) for r in RESULTS}
    counted = len(rows) - counts["not built"]
    checked = [r for r in rows if r.get("with_ignore")]
    working = sum(r["with_ignore"].startswith("prunes+reloads") for r in checked)
    method = meta.get("method", "l1")
    lines = [
        f"# {meta.get('zoo', 'timm')} coverage: random init → `prunecli import` → `prune --method {method} --ratio 0.3` → `profile`",
        "",
        f"Generated by `bench/timm_coverage.py` on {meta['date']} (torch {meta['torch']}, timm {meta['timm']}, "
        f"torch-pruning {meta['torch_pruning']}; wall limit {meta['timeout']:g} s per model, "
        f"input {meta['small']}×{meta['small']} where the model runs at it, else its own size). "
        f"Swept {len(rows)} of the {meta['listed']} listed models"
        + ("." if len(rows) == meta["listed"] else f" (`--models {','.join(r['model'] for r in rows)}`)."),
        "",
        f"**{counts['prunes+reloads']} of {counted} prune and reload** "
        + ", ".join(f"{counts[r]} {r}" for r in RESULTS[1:] if counts[r]) + "."
        + (f" The suggested `--ignore` of {working} of the {len(checked)} refusals that name one prunes and "
           "reloads (column *with --ignore*: the refusal's own globs, run as given)." if checked else ""),
        "",
        "Reason: for a pruned model the MACs it removed; else the one `error:` line the user sees.",
        "",
        "| family | model | result | reason | with --ignore | input | time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        reason = row["reason"].replace("|", "\\|")
        where = f"({row['step']}) " if row.get("step") and row["result"] != "prunes+reloads" else ""
        ignore = (row.get("with_ignore") or "").replace("|", "\\|")
        lines.append(f"| {row['family']} | `{row['model']}` | {row['result']} | {where}{reason} | {ignore} | "
                     f"{row['size'] or ''} | {row['seconds']} |")
    lines += ["", "Regenerate: `.venv/bin/python bench/timm_coverage.py` (see `bench/README.md`)."]
    path.write_text("\n".join(lines) + "\n")


def _meta(args, listed: int) -> dict:
    from importlib.metadata import version

    import timm
    import torch

    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "torch": torch.__version__,
            "timm": timm.__version__, "torch_pruning": version("torch-pruning"),
            "timeout": args.timeout, "small": args.small, "listed": listed, "cpus": os.cpu_count(),
            "method": args.method, "zoo": "torchvision" if args.zoo == "tv" else "timm"}


def sweep(names: list[str], timeout: float, small: int, jobs: int, log=print, method: str = "l1") -> list[dict]:
    family = dict((m, f) for f, m in MODELS) | {f"tv:{m}": f for f, m in TV_MODELS}
    todo = [(family.get(n, n.split("_")[0]), n) for n in names]
    rows: dict[str, dict] = {}
    with futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        running = {pool.submit(run_one, f, n, timeout, small, method): n for f, n in todo}
        for fut in futures.as_completed(running):
            row = fut.result()
            rows[row["model"]] = row
            log(f"{row['model']:32s} {row['result']:15s} {row['seconds']:7.1f} s  {row['reason'][:120]}")
    return [rows[n] for _, n in todo]


def _merged(path: Path, fresh: list[dict], meta: dict) -> tuple[list[dict], dict]:
    """The stored rows with `fresh` ones replacing theirs (list order kept), and a date that says so."""
    old = json.loads(path.read_text())
    new = {r["model"]: r for r in fresh}
    rows = [new.pop(r["model"], r) for r in old["rows"]] + list(new.values())
    dates = old["meta"]["date"].split(" and ")[0]
    meta = {**meta, "date": f"{dates} and {meta['date']} (rows {', '.join(r['model'] for r in fresh)} re-run)"}
    return rows, meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated timm names (default: the list in this script)")
    parser.add_argument("--timeout", type=float, default=600, help="wall seconds per model, all steps (600)")
    parser.add_argument("--small", type=int, default=64, help="input size to use where the model runs at it (0: own)")
    parser.add_argument("--jobs", type=int, default=1, help="models in parallel (1)")
    parser.add_argument("--markdown", help="table (default docs/timm-coverage.md, docs/torchvision-coverage.md)")
    parser.add_argument("--json", help="rows (default bench/results/timm_coverage.json, torchvision_coverage.json)")
    parser.add_argument("--method", choices=("l1", "taylor", "isomorphic"), default="l1",
                        help="pruning method to sweep (l1)")
    parser.add_argument("--zoo", choices=("timm", "tv"), default="timm",
                        help="timm models, or torchvision ones as tv:NAME (default list: TV_MODELS)")
    parser.add_argument("--update", action="store_true",
                        help="replace only these models' rows in the existing --json, rewrite the table from all")
    parser.add_argument("--build", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build:  # child: build one model
        print(json.dumps(_build(args.build, args.small, Path(args.work))))
        return
    listed = TV_MODELS if args.zoo == "tv" else MODELS
    stem = "torchvision" if args.zoo == "tv" else "timm"
    args.markdown = args.markdown or str(ROOT / "docs" / f"{stem}-coverage.md")
    args.json = args.json or str(ROOT / "bench" / "results" / f"{stem}_coverage.json")
    names = args.models.split(",") if args.models else [m for _, m in listed]
    if args.zoo == "tv":
        names = [n if n.startswith("tv:") else f"tv:{n}" for n in names]
    rows = sweep(names, args.timeout, args.small, args.jobs, method=args.method)
    meta = _meta(args, len(listed))
    if args.update and Path(args.json).exists():
        rows, meta = _merged(Path(args.json), rows, meta)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    write_markdown(Path(args.markdown), rows, meta)
    print(f"wrote {args.markdown} and {args.json}")


if __name__ == "__main__":
    main()
