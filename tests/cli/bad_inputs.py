"""Real bad files for tests/cli/test_errors.py, written once per session (each a few KB).

Every family gets the breakage a user meets in practice: an image folder with a file that is not
an image, a truncated PNG, a zero-byte file; a HAM10000 CSV without its `dx` column or naming
images that are not there; CIFAR pickles of the wrong shape, of strings, with labels out of range,
not pickles at all; fastMRI HDF5 files truncated, without `kspace`, single-coil, with a corrupted
data chunk, or of mixed coil counts.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

CLASSES4 = ("c0", "c1", "c2", "c3")


def _png(path: Path, seed: int, size: int = 12) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def image_folder(root: Path, classes=CLASSES4, val_classes=None, per_class: int = 2) -> Path:
    for split, names in (("train", classes), ("val", val_classes or classes)):
        for c, name in enumerate(names):
            for i in range(per_class):
                _png(root / split / name / f"{i}.png", seed=100 * c + i)
    return root


def truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _ham(root: Path, rows: list[tuple[str, str, str]], header: str = "lesion_id,image_id,dx",
         images: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    lines = [header] + [",".join(r) for r in rows]
    (root / "HAM10000_metadata.csv").write_text("\n".join(lines) + "\n")
    if images:
        for i, (_, image, _) in enumerate(rows):
            from PIL import Image

            pixels = np.random.default_rng(i).integers(0, 255, (12, 16, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"{image}.jpg")
    return root


def ham_rows() -> list[tuple[str, str, str]]:
    """Two lesions of two images per class, so the lesion-grouped split has a test part."""
    dxs = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
    return [(f"HAM_{c}{les}", f"ISIC_{c}{les}{i}", dx) for c, dx in enumerate(dxs) for les in range(2)
            for i in range(2)]


def _cifar(root: Path, batch: dict, files=None, meta=None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    names = files or [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]
    for name in names:
        with open(root / name, "wb") as fh:
            pickle.dump(batch, fh)
    with open(root / "batches.meta", "wb") as fh:
        pickle.dump(meta or {b"label_names": [b"c"] * 10}, fh)
    return root


def _h5(path: Path, shape=(2, 2, 16, 16), **extra) -> Path:
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        if shape is not None:
            data = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
            f.create_dataset("kspace", data=data, chunks=shape, compression="gzip")
        for key, value in extra.items():
            f.create_dataset(key, data=value)
    return path


def _corrupt_chunk(path: Path) -> None:
    """Overwrite the middle of the compressed k-space chunk: the header still reads fine."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid: mid + 256] = b"\xff" * 256
    path.write_bytes(bytes(data))


def build(root: Path) -> dict[str, Path]:
    """All bad inputs under `root`; returns name → path (see the module doc)."""
    p: dict[str, Path] = {}
    # image folders (4 classes, like the tiny checkpoint)
    p["imf_bad_train"] = image_folder(root / "imf_bad_train")
    (p["imf_bad_train"] / "train" / "c1" / "bad.jpg").write_bytes(b"this is not a JPEG " * 8)
    (p["imf_bad_train"] / "train" / "c3" / "empty.png").write_bytes(b"")
    p["imf_trunc_val"] = image_folder(root / "imf_trunc_val")
    truncated(p["imf_trunc_val"] / "val" / "c2" / "1.png")
    p["imf_mismatch"] = image_folder(root / "imf_mismatch", val_classes=CLASSES4[:3])
    p["imf_noclasses"] = root / "imf_noclasses"
    for split in ("train", "val"):
        (p["imf_noclasses"] / split).mkdir(parents=True)
    p["imf_noval"] = root / "imf_noval"
    _png(p["imf_noval"] / "train" / "c0" / "0.png", 0)
    p["imf_2cls"] = image_folder(root / "imf_2cls", classes=CLASSES4[:2])
    p["imf_all_bad_val"] = image_folder(root / "imf_all_bad_val")
    for image in (p["imf_all_bad_val"] / "val").rglob("*.png"):
        image.write_bytes(b"")
    # HAM10000
    rows = ham_rows()
    p["ham_nocol"] = _ham(root / "ham_nocol", [(a, b, "") for a, b, _ in rows], header="lesion_id,image_id,dx_type",
                          images=False)
    p["ham_noimages"] = _ham(root / "ham_noimages", rows, images=False)
    p["ham_baddx"] = _ham(root / "ham_baddx", [*rows, ("HAM_x", "ISIC_x", "melanoma")], images=False)
    p["ham_bad_image"] = _ham(root / "ham_bad_image", rows)
    (p["ham_bad_image"] / f"{rows[0][1]}.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    p["ham_notutf8"] = root / "ham_notutf8"
    p["ham_notutf8"].mkdir()
    (p["ham_notutf8"] / "HAM10000_metadata.csv").write_bytes(b"lesion_id,image_id,dx\n\xff\xfe\x00bad")
    # CIFAR
    good_labels = list(range(10)) * 2
    p["c10_shape"] = _cifar(root / "c10_shape", {b"data": np.zeros((20, 100), np.uint8), b"labels": good_labels})
    p["c10_strings"] = _cifar(root / "c10_strings", {b"data": [["abc"] * 3072] * 20, b"labels": good_labels})
    p["c10_labels"] = _cifar(root / "c10_labels", {b"data": np.zeros((20, 3072), np.uint8), b"labels": [42] * 20})
    p["c10_nodata"] = _cifar(root / "c10_nodata", {b"pixels": np.zeros((20, 3072), np.uint8), b"labels": good_labels})
    p["c10_list"] = _cifar(root / "c10_list", [1, 2, 3])  # type: ignore[arg-type]
    p["c10_missing"] = _cifar(root / "c10_missing", {b"data": np.zeros((20, 3072), np.uint8), b"labels": good_labels},
                              files=["data_batch_1", "test_batch"])
    p["c10_garbage"] = _cifar(root / "c10_garbage", {b"data": np.zeros((20, 3072), np.uint8), b"labels": good_labels})
    (p["c10_garbage"] / "test_batch").write_bytes(b"\x80\x04 garbage, not a pickle")
    p["c10_empty"] = root / "c10_empty"
    p["c10_empty"].mkdir()
    p["c100_shape"] = _cifar(root / "c100_shape", {b"data": np.zeros((20, 3, 32, 32), np.uint8),
                                                   b"fine_labels": good_labels}, files=["train", "test"],
                             meta={b"fine_label_names": [b"c"] * 100})
    (p["c100_shape"] / "batches.meta").rename(p["c100_shape"] / "meta")
    # fastMRI
    p["fm_trunc"] = root / "fm_trunc"
    _h5(p["fm_trunc"] / "a.h5")
    truncated(p["fm_trunc"] / "a.h5")
    p["fm_garbage"] = root / "fm_garbage"
    p["fm_garbage"].mkdir()
    (p["fm_garbage"] / "a.h5").write_bytes(b"not hdf5 " * 50)
    p["fm_nokspace"] = root / "fm_nokspace"
    _h5(p["fm_nokspace"] / "a.h5", shape=None, reconstruction_rss=np.zeros((2, 8, 8), np.float32))
    p["fm_singlecoil"] = root / "fm_singlecoil"
    _h5(p["fm_singlecoil"] / "a.h5", shape=(2, 16, 16))
    p["fm_coils"] = root / "fm_coils"
    _h5(p["fm_coils"] / "a.h5", shape=(2, 2, 16, 16))
    _h5(p["fm_coils"] / "b.h5", shape=(2, 3, 16, 16))
    p["fm_sizes"] = root / "fm_sizes"
    _h5(p["fm_sizes"] / "a.h5", shape=(2, 2, 16, 16))
    _h5(p["fm_sizes"] / "b.h5", shape=(2, 2, 20, 20))
    p["fm_chunk"] = root / "fm_chunk"
    for name in ("a", "b"):
        _h5(p["fm_chunk"] / f"{name}.h5")
        _corrupt_chunk(p["fm_chunk"] / f"{name}.h5")
    p["fm_strings"] = root / "fm_strings"
    import h5py

    p["fm_strings"].mkdir()
    for name in ("a", "b"):
        with h5py.File(p["fm_strings"] / f"{name}.h5", "w") as f:
            f.create_dataset("kspace", data=np.array([[[[b"x"] * 4] * 4] * 2] * 2))
    p["fm_empty"] = root / "fm_empty"
    p["fm_empty"].mkdir()
    p["fm_one"] = root / "fm_one"
    _h5(p["fm_one"] / "a.h5")
    # plain files
    (root / "a_file").write_text("not a folder")
    p["a_file"] = root / "a_file"
    p["state_dict.pth"] = root / "state_dict.pth"
    p["state_dict.pth"].write_bytes(b"PK\x03\x04 not a torch zip")
    p["pickle.pth"] = root / "pickle.pth"
    with open(p["pickle.pth"], "wb") as fh:
        pickle.dump({"w": 1}, fh, protocol=2)
    return p
