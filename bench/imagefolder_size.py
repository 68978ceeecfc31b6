"""`train --model resnet20 --data imagefolder:DIR`: one epoch at the model's 32×32 (today's
default) against the 224×224 the folder used to be upsampled to (`?size=224`), in one run.

The folder is the issue's case: scikit-learn's digits as 28×28 grey PNGs (1,437 train / 360
val, the `digits` split), written once to a temporary folder. Each side is a fresh
`prunecli train --epochs 1` process (batch 64, CPU); we report its wall time, the
`images_per_s` it records, and its peak resident memory (the child's ru_maxrss). With
`--quick`, the train split is cut to its first 256 images per side (same images).
Not part of `run_all.py` (the 224 side takes minutes on 2 cores).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def write_digits(root: Path, limit: int | None) -> None:
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    tr, va = train_test_split(range(len(d.target)), test_size=0.2, random_state=0, stratify=d.target)
    for split, idx in (("train", tr[:limit] if limit else tr), ("val", va)):
        for i in idx:
            folder = root / split / str(d.target[i])
            folder.mkdir(parents=True, exist_ok=True)
            pixels = (np.kron(d.images[i], np.ones((4, 4)))[2:30, 2:30] * 255 / 16).astype(np.uint8)  # 28×28
            Image.fromarray(pixels, mode="L").save(folder / f"{i}.png")


def one_epoch(data: str, out: Path) -> dict:
    """A fresh `prunecli train` process; its wall time, recorded images/s and peak RSS."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "prunecli", "train", "--model", "resnet20", "--data", data, "--epochs", "1",
                    "-b", "64", "--device", "cpu", "-o", str(out)], check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - start
    info = subprocess.run([sys.executable, "-m", "prunecli", "info", str(out), "--json"], check=True,
                          capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    header = json.loads(info.stdout)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux; max over children so far
    return {"wall_s": round(wall, 1), "images_per_s": header["metrics"]["images_per_s"],
            "input_shape": header["input_shape"], "peak_rss_mib": round(max(peak, before) / 1024)}


def main() -> None:
    quick = "--quick" in sys.argv
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "digits28"
        write_digits(root, 256 if quick else None)
        small = one_epoch(f"imagefolder:{root}", Path(tmp) / "a.safetensors")  # first: its peak is its own
        large = one_epoch(f"imagefolder:{root}?size=224", Path(tmp) / "b.safetensors")
    print(json.dumps({"model_size": small, "size_224": large,
                      "speedup_wall": round(large["wall_s"] / small["wall_s"], 1),
                      "speedup_images_per_s": round(small["images_per_s"] / large["images_per_s"], 1)}, indent=2))


if __name__ == "__main__":
    main()
