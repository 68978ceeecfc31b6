"""Peak memory of loading a big checkpoint: streamed (`checkpoint.load`) vs read whole (issue 14 item 7).

For each model (timm ViT-B/16 and ConvNeXt-B, random init, 1000 classes) a prunecli checkpoint
is written once; then, each in a fresh process (the OS's peak RSS, `ru_maxrss`, only grows),

  streamed   `prunecli.io.checkpoint.load(path)`: header from the first bytes, sha256 in chunks,
             tensors one by one through safetensors' memory-mapped reader into the built model
  whole      `load_bytes(read_bytes(path))`: the file's bytes, a tensor dict, then the model
             (what `load` did before)

and reports (peak RSS during the call − RSS before it) / tensor bytes (the peak is the kernel's
VmHWM, reset just before the call; `ru_maxrss` would include the parent's peak, kept across exec). The model being built counts
(it is what a load returns): 1.0× is the floor. Sides alternate (streamed, whole, whole,
streamed, …); medians of the rounds.

    .venv/bin/python bench/load_memory.py [--rounds 2] [--models vit_base_patch16_224,convnext_base]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHILD = """
import sys, torch
from prunecli.io import checkpoint as ckpt
torch.set_num_threads(1)
path, how = sys.argv[1], sys.argv[2]
import prunecli.models.timm_zoo, safetensors.torch  # imports before the baseline
def status(field):
    with open('/proc/self/status') as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ':'))
with open('/proc/self/clear_refs', 'w') as f:
    f.write('5')  # reset the peak (VmHWM) to the current RSS: ru_maxrss would include the parent's peak
before = status('VmRSS')
loaded = ckpt.load(path) if how == 'streamed' else ckpt.load_bytes(ckpt.read_bytes(path))
print(status('VmHWM') - before)
"""


def _write(name: str, folder: Path) -> tuple[Path, int]:
    import torch

    from prunecli.io import checkpoint as ckpt
    from prunecli.io.schema import ModelRef
    from prunecli.models import build_model

    torch.manual_seed(0)
    model, entry, kwargs = build_model(f"timm:{name}")
    header = ckpt.new_header(None, model=ModelRef(name=f"timm:{name}", kwargs=kwargs), task=entry.task,
                             input_shape=list(entry.input_shape), num_classes=kwargs.get("num_classes"), lineage=[])
    path = folder / f"{name}.safetensors"
    ckpt.save(model, path, header)
    return path, sum(t.numel() * t.element_size() for t in model.state_dict().values())


def _peak(path: Path, how: str) -> int:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), how], capture_output=True, text=True, env=env,
                         check=True)
    return int(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="vit_base_patch16_224,convnext_base")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            path, nbytes = _write(name, Path(tmp))
            seen = {"streamed": [], "whole": []}
            for r in range(args.rounds):
                for how in (("streamed", "whole") if r % 2 == 0 else ("whole", "streamed")):
                    seen[how].append(_peak(path, how))
            row = {"model": name, "tensor_mb": round(nbytes / 2**20, 1), "file_mb": round(path.stat().st_size / 2**20, 1)}
            for how, peaks in seen.items():
                row[f"{how}_mb"] = round(statistics.median(peaks) / 2**20, 1)
                row[f"{how}_x"] = round(statistics.median(peaks) / nbytes, 2)
            rows.append(row)
            print(f"{name:24s} tensors {row['tensor_mb']:7.1f} MB  streamed {row['streamed_mb']:7.1f} MB "
                  f"({row['streamed_x']:.2f}x)  whole {row['whole_mb']:7.1f} MB ({row['whole_x']:.2f}x)")
    out = ROOT / "bench" / "results" / "load_memory.json"
    out.write_text(json.dumps({"rounds": args.rounds, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
