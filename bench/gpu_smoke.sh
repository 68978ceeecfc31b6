#!/usr/bin/env bash
# GPU smoke test (issue 13): the CUDA paths end to end in under 5 minutes, numbers to
# bench/results/gpu_smoke.json. Run from the repository root: `make gpu-smoke` or `bash bench/gpu_smoke.sh`.
#
#  1. train a CIFAR ResNet-56 (synthetic 32×32 data) with --amp bf16 --channels-last --compile, 2 epochs
#     (the second epoch's images/s is the number: the first pays the compilation);
#  2. the same for timm DeiT-tiny (deit_tiny_patch16_224, synthetic 224×224, AdamW);
#  3. a 1-process NCCL torchrun of `train` (ResNet-56, bf16, 1 epoch);
#  4. prune the ResNet-56 (l1, ratio 0.5) on the GPU;
#  5. profile base and pruned ResNet-56 and DeiT-tiny on CUDA (latency timed with
#     torch.cuda.synchronize before and after every forward, prunecli/profiling/latency.py).
# Step limits add up to 295 s (a step past its limit fails the smoke with its log's tail).
#
# Without a CUDA GPU it stops at once with one `error:` line and exit code 2.
# `DRY_RUN=cpu bash bench/gpu_smoke.sh` checks this script's plumbing on a CPU (tiny data, no
# --compile, gloo): its numbers mean nothing and it writes bench/results/gpu_smoke_dryrun.json.
set -euo pipefail
DRY_RUN=${DRY_RUN:-}

PY=${PY:-.venv/bin/python}
TORCHRUN=${TORCHRUN:-.venv/bin/torchrun}
OUT=${OUT_JSON:-bench/results/gpu_smoke${DRY_RUN:+_dryrun}.json}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_smoke.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export PYTHONPATH="${PWD}${PYTHONPATH:+:$PYTHONPATH}"

if [ -z "$DRY_RUN" ] && ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 3)' 2>/dev/null; then
    echo "error: gpu-smoke needs a CUDA GPU: torch.cuda.is_available() is False here (nothing ran)" >&2
    exit 2
fi

START=$(date +%s)
step() {  # step NAME SECONDS CMD... : stdout → $WORK/NAME.json, stderr → $WORK/NAME.log, wall time recorded
    local name=$1 limit=$2
    shift 2
    local t0
    t0=$(date +%s.%N)
    echo "== $name (limit ${limit}s)" >&2
    if ! timeout --kill-after=10 "$limit" "$@" >"$WORK/$name.json" 2>"$WORK/$name.log"; then
        echo "error: gpu-smoke step '$name' failed (or passed ${limit}s); its log:" >&2
        tail -n 30 "$WORK/$name.log" >&2
        exit 1
    fi
    echo "$(date +%s.%N) - $t0" | bc >"$WORK/$name.secs"
}

PRUNECLI=("$PY" -m prunecli)
R56_DATA="synthetic:n=8192,val=1024,classes=10"
DEIT_DATA="synthetic:n=2048,val=256,classes=10,size=224"
DDP_DATA="synthetic:n=4096,val=512,classes=10"
DEV=cuda
FAST=(--amp bf16 --channels-last --compile --device cuda --json)
R56_PROFILE=(--batch-sizes 1,256 --runs 20 --warmup 5)
DEIT_PROFILE=(--batch-sizes 1,128 --runs 20 --warmup 5)
if [ -n "$DRY_RUN" ]; then
    R56_DATA="synthetic:n=256,val=64,classes=10" DEIT_DATA="synthetic:n=16,val=8,classes=10,size=224"
    DDP_DATA=$R56_DATA DEV=cpu FAST=(--amp bf16 --channels-last --device cpu --json)
    R56_PROFILE=(--batch-sizes 1,8 --runs 3 --warmup 1) DEIT_PROFILE=(--batch-sizes 1 --runs 3 --warmup 1)
fi

step train_resnet56 95 "${PRUNECLI[@]}" train --model resnet56 --data "$R56_DATA" --epochs 2 -b 256 --lr 0.1 \
    "${FAST[@]}" -o "$WORK/r56.safetensors"
step train_deit_tiny 95 "${PRUNECLI[@]}" train --model timm:deit_tiny_patch16_224 --data "$DEIT_DATA" --epochs 2 \
    -b 128 --optimizer adamw --lr 5e-4 --wd 0.05 "${FAST[@]}" -o "$WORK/deit.safetensors"
step torchrun_nccl 40 "$TORCHRUN" --standalone --nproc_per_node 1 -m prunecli train --model resnet56 \
    --data "$DDP_DATA" --epochs 1 -b 256 --amp bf16 --device "$DEV" --json \
    -o "$WORK/r56_ddp.safetensors"
step prune_resnet56 25 "${PRUNECLI[@]}" prune "$WORK/r56.safetensors" --method l1 --ratio 0.5 --device "$DEV" \
    --json -o "$WORK/r56_pruned.safetensors"
step profile_resnet56 20 "${PRUNECLI[@]}" profile "$WORK/r56_pruned.safetensors" --compare "$WORK/r56.safetensors" \
    --device "$DEV" "${R56_PROFILE[@]}" --json
step profile_deit_tiny 20 "${PRUNECLI[@]}" profile "$WORK/deit.safetensors" --device "$DEV" "${DEIT_PROFILE[@]}" --json

"$PY" - "$WORK" "$OUT" "$START" <<'EOF'
"""Collect images/s, latency and step times into one JSON; check bf16/compile reached the lineage."""
import datetime, json, sys, time
from pathlib import Path

import torch

from prunecli.io import checkpoint as ckpt

work, out, start = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
steps = sorted(p.stem for p in work.glob("*.secs"))
read = lambda name: json.loads((work / f"{name}.json").read_text())  # noqa: E731


def lineage(name):
    options = ckpt.load(work / f"{name}.safetensors").header.lineage[-1].options
    return {k: options.get(k) for k in ("amp", "channels_last", "compile", "batch_size")}


result = {
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu (DRY_RUN: plumbing only)", "torch": torch.__version__, "cuda": torch.version.cuda,
    "wall_s": time.time() - start,
    "step_seconds": {s: float((work / f"{s}.secs").read_text()) for s in steps},
    "train_images_per_s": {  # the last epoch's (the first one includes torch.compile)
        "resnet56 bf16+channels_last+compile, batch 256": read("train_resnet56")["images_per_s"],
        "deit_tiny_patch16_224 bf16+channels_last+compile, batch 128": read("train_deit_tiny")["images_per_s"],
        "resnet56 bf16, torchrun 1 process (NCCL), batch 256": read("torchrun_nccl")["images_per_s"],
    },
    "lineage": {"resnet56": lineage("r56"), "deit_tiny": lineage("deit"), "torchrun": lineage("r56_ddp")},
    "prune": {k: read("prune_resnet56").get(k) for k in ("macs_before", "macs_after", "macs_ratio",
                                                            "params_before", "params_after")},
    "latency_ms": {},
}
for name in ("profile_resnet56", "profile_deit_tiny"):
    data = read(name)
    for item in [data] + ([data["compare"]] if "compare" in data else []):
        result["latency_ms"][f"{item['model']} {Path(item['checkpoint']).stem}"] = item["latency"]
    if "ratios" in data:
        result[f"{name} ratios"] = data["ratios"]
bad = [k for k, v in result["lineage"].items() if v["amp"] != "bf16"]
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps(result, indent=2) + "\n")
print(json.dumps(result, indent=2))
if bad:
    sys.exit(f"error: these runs did not record --amp bf16 in their lineage: {bad}")
EOF
echo "gpu-smoke: done in $(( $(date +%s) - START )) s → $OUT" >&2
