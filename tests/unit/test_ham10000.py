"""ham10000: a fake HAM10000 download (metadata CSV + tiny JPEGs in two part folders)."""

from __future__ import annotations

import csv
import json
import random

import numpy as np
import pytest
import torch

from prunecli.data import build_data
from prunecli.data.ham10000 import CLASSES, METADATA, load_splits, parse_spec
from prunecli.errors import UserError
from tests.conftest import run_cli

# lesions per class (vasc has a single lesion: it must stay in train)
LESIONS = {"akiec": 3, "bcc": 3, "bkl": 2, "df": 2, "mel": 4, "nv": 4, "vasc": 1}
HEADER = ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"]


def make_rows() -> list[dict]:
    """One row per image; lesions have 1-3 images; ids interleave classes (as in the real CSV)."""
    lesions = [(dx, k) for dx, n in LESIONS.items() for k in range(n)]
    random.Random(7).shuffle(lesions)
    rows, image = [], 24300
    for i, (dx, _) in enumerate(lesions):
        for _ in range(1 + i % 3):
            image += 1
            rows.append({"lesion_id": f"HAM_{1000 + 37 * i % 101:07d}", "image_id": f"ISIC_{image:07d}", "dx": dx,
                         "dx_type": "histo", "age": "45.0", "sex": "male", "localization": "back"})
    return rows


def write_csv(root, rows, header=HEADER) -> None:
    with open(root / METADATA, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def write_ham(root, rows=None):
    """The download's layout: CSV at the top, images split over two part folders (one at the top, one .JPG)."""
    from PIL import Image

    rows = make_rows() if rows is None else rows
    root.mkdir(parents=True, exist_ok=True)
    write_csv(root, rows)
    rng = np.random.default_rng(0)
    for i, row in enumerate(rows):
        folder = root / f"HAM10000_images_part_{1 + i % 2}" if i else root
        folder.mkdir(exist_ok=True)
        ext = ".JPG" if i == 3 else ".jpg"
        Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(folder / f"{row['image_id']}{ext}")
    return root, rows


@pytest.fixture
def ham(tmp_path):
    return write_ham(tmp_path / "ham")


def split_lesions(root, query=""):
    """{"train": {lesion ids}, "val": {...}} and {"train": [image ids], ...} of one spec."""
    rows = {r["image_id"]: r for r in make_rows()}
    splits = load_splits(parse_spec(f"{root}{query}"))
    images = {k: [p.stem for p, _ in v] for k, v in splits.items()}
    return {k: {rows[i]["lesion_id"] for i in v} for k, v in images.items()}, images


def _all(loader):
    xs, ys = zip(*loader, strict=True)
    return torch.cat(xs), torch.cat(ys)


def test_classes_labels_and_sizes(ham):
    root, rows = ham
    assert CLASSES == ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
    ds = build_data(f"ham10000:{root}?size=16")
    assert (ds.num_classes, ds.input_shape) == (7, (3, 16, 16))
    assert sum(ds.sizes.values()) == len(rows) and set(ds.sizes) == {"train", "val"}
    dx = {r["image_id"]: r["dx"] for r in rows}
    for samples in load_splits(parse_spec(f"{root}?size=16")).values():
        for path, label in samples:
            assert CLASSES[label] == dx[path.stem]
    assert build_data(f"ham10000:{root}").input_shape == (3, 224, 224)


def test_split_is_lesion_grouped_and_stratified(ham):
    root, rows = ham
    lesions, images = split_lesions(root)
    assert not lesions["train"] & lesions["val"]  # no lesion on both sides
    assert sorted(images["train"] + images["val"]) == sorted(r["image_id"] for r in rows)
    dx_of = {r["lesion_id"]: r["dx"] for r in rows}
    for dx, n in LESIONS.items():
        n_val = sum(dx_of[lesion] == dx for lesion in lesions["val"])
        n_train = sum(dx_of[lesion] == dx for lesion in lesions["train"])
        assert n_val + n_train == n
        if n >= 2:
            assert n_val >= 1 and n_train >= 1, dx
        else:
            assert n_val == 0, dx  # a single lesion stays in train
    assert sum(len(v) for v in split_lesions(root, "?test=0.6")[0].values()) == len(dx_of)
    assert len(split_lesions(root, "?test=0.6")[0]["val"]) > len(lesions["val"])


def test_split_is_deterministic_and_depends_on_the_seed(ham):
    root, _ = ham
    first = split_lesions(root)[0]
    assert split_lesions(root)[0] == first == split_lesions(root, "?seed=0")[0]
    others = [split_lesions(root, f"?seed={s}")[0] for s in range(1, 6)]
    assert any(o != first for o in others)
    assert split_lesions(root, "?seed=3")[0] == others[2]


def test_split_does_not_depend_on_csv_row_order(ham, tmp_path):
    root, rows = ham
    first = split_lesions(root)
    shuffled = rows[::-1]
    random.Random(1).shuffle(shuffled)
    write_csv(root, shuffled)
    assert split_lesions(root) == first


def test_loader_batches(ham):
    root, _ = ham
    ds = build_data(f"ham10000:{root}?size=16")
    loader = ds.loader("train", 4, train=True, seed=0)
    x, y = next(iter(loader))
    assert x.shape == (4, 3, 16, 16) and x.dtype == torch.float32 and y.dtype == torch.int64
    xs, ys = _all(ds.loader("test", 5))  # `test` is `val`
    assert xs.shape == (ds.sizes["val"], 3, 16, 16) and 0 <= int(ys.min()) and int(ys.max()) <= 6
    assert len(ds.loader("val", 5)) == -(-ds.sizes["val"] // 5)


def test_train_flips_are_random_but_val_is_deterministic(ham):
    root, _ = ham
    ds = build_data(f"ham10000:{root}?size=16")
    plain, _ = _all(ds.loader("train", 8))
    candidates = {kind: torch.flip(plain, dims) if dims else plain
                  for kind, dims in (("none", ()), ("h", (3,)), ("v", (2,)), ("hv", (2, 3)))}

    def kinds(x):
        seen = []
        for sample in x:
            match = [k for k, c in candidates.items() if (c == sample).all(dim=(1, 2, 3)).any()]
            assert match, "an augmented sample is not a flip of a plain one"
            seen.append(match[0])
        return seen

    def epoch(e, seed=0):
        loader = ds.loader("train", 8, train=True, seed=seed)
        loader.set_epoch(e)
        return _all(loader)

    x1, y1 = epoch(0)
    assert {"h", "v", "hv"} <= set(kinds(x1))  # both flips, independently
    x2, y2 = epoch(0)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(x1, epoch(1)[0])
    # val: only resized, whatever `train` says, and the same every time
    v1, w1 = _all(ds.loader("val", 8))
    v2, w2 = _all(ds.loader("val", 8))
    assert torch.equal(v1, v2) and torch.equal(w1, w2)
    vt, _ = _all(ds.loader("val", 8, train=True))
    assert torch.equal(torch.sort(vt.flatten(1), 0).values, torch.sort(v1.flatten(1), 0).values)


def test_option_errors(ham):
    root, _ = ham
    with pytest.raises(UserError, match="needs a folder"):
        build_data("ham10000")
    for bad in ("test=0", "test=1", "test=1.5", "test=x"):
        with pytest.raises(UserError, match="test must be a fraction"):
            build_data(f"ham10000:{root}?{bad}")
    for bad in ("size=4", "size=5000", "size=big"):
        with pytest.raises(UserError, match="size must be an integer in 8..4096"):
            build_data(f"ham10000:{root}?{bad}")
    with pytest.raises(UserError, match="seed must be"):
        build_data(f"ham10000:{root}?seed=-1")
    with pytest.raises(UserError, match="bad ham10000 option 'crop=3'"):
        build_data(f"ham10000:{root}?size=32&crop=3")


def test_file_errors(ham, tmp_path):
    root, rows = ham
    with pytest.raises(UserError, match="folder not found"):
        build_data(f"ham10000:{tmp_path / 'nope'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=f"no {METADATA} in"):
        build_data(f"ham10000:{tmp_path / 'empty'}")
    write_csv(root, rows, header=["lesion_id", "image", "dx"])
    with pytest.raises(UserError, match="lacks column.s. image_id"):
        build_data(f"ham10000:{root}")
    write_csv(root, [{**rows[0], "dx": "melanoma"}, *rows[1:]])
    with pytest.raises(UserError, match="unknown diagnosis 'melanoma'"):
        build_data(f"ham10000:{root}")
    write_csv(root, rows)
    for row in rows[4:7]:
        next(root.rglob(f"{row['image_id']}.jpg")).unlink()
    with pytest.raises(UserError, match=f"3 of {len(rows)} images .* missing .*first: {rows[4]['image_id']}.jpg"):
        build_data(f"ham10000:{root}")


def test_cli_train_evaluate_and_ls(ham, tmp_path):
    root, _ = ham
    out = tmp_path / "ham.safetensors"
    data = f"ham10000:{root}?size=32"
    res = run_cli("train", "--model", "tv_vgg_tiny", "--data", data, "--epochs", "1", "--batch-size", "8",
                  "--device", "cpu", "-o", out)
    assert res.exit_code == 0, res.output + repr(res.exception)
    res = run_cli("evaluate", out, "--data", data, "--device", "cpu", "--json")
    assert res.exit_code == 0, res.output + repr(res.exception)
    result = json.loads(res.stdout)  # stderr says the input size
    assert 0 <= result["top1"] <= 100 and result["samples"] == build_data(data).sizes["val"]
    res = run_cli("ls", "data")
    assert res.exit_code == 0 and "ham10000" in res.output
