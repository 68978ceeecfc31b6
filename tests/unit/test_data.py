"""Data registry: CIFAR (official pickle layout, faked small), imagefolder, digits, synthetic."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from prunecli.data import build_data, list_data
from prunecli.data.cifar import CIFAR10, CIFAR100, class_names
from prunecli.errors import UserError

# ---------------------------------------------------------------- fake CIFAR on disk


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)


def _dump(path, doc) -> None:
    with open(path, "wb") as fh:
        pickle.dump(doc, fh)


def write_cifar10(parent, n_train=20, n_test=10):
    """The real layout: 5 training batches, a test batch and batches.meta, bytes keys."""
    root = parent / "cifar-10-batches-py"
    root.mkdir()
    data, labels = _images(n_train, 0), [i % 10 for i in range(n_train)]
    per = n_train // 5
    for b in range(5):
        sl = slice(b * per, (b + 1) * per)
        _dump(root / f"data_batch_{b + 1}", {b"batch_label": b"x", b"labels": labels[sl], b"data": data[sl],
                                             b"filenames": [b"f"] * per})
    test, test_labels = _images(n_test, 1), [(3 * i) % 10 for i in range(n_test)]
    _dump(root / "test_batch", {b"labels": test_labels, b"data": test})
    _dump(root / "batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)], b"num_vis": 3072})
    return root, (data, labels), (test, test_labels)


def write_cifar100(parent, n_train=20, n_test=10):
    root = parent / "cifar-100-python"
    root.mkdir()
    train, fine = _images(n_train, 2), [(7 * i) % 100 for i in range(n_train)]
    _dump(root / "train", {b"data": train, b"fine_labels": fine, b"coarse_labels": [f % 20 for f in fine]})
    test, test_fine = _images(n_test, 3), [99 - i for i in range(n_test)]
    _dump(root / "test", {b"data": test, b"fine_labels": test_fine, b"coarse_labels": [0] * n_test})
    _dump(root / "meta", {b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                          b"coarse_label_names": [f"k{i}".encode() for i in range(20)]})
    return root, (train, fine), (test, test_fine)


def _all(loader):
    xs, ys = zip(*loader, strict=True)
    return torch.cat(xs), torch.cat(ys)


def _unnormalise(x, mean, std):
    return x * torch.tensor(std).view(1, 3, 1, 1) * 255 + torch.tensor(mean).view(1, 3, 1, 1) * 255


def test_cifar10_val_is_the_test_batch_normalised(tmp_path):
    root, _, (test, test_labels) = write_cifar10(tmp_path)
    ds = build_data(f"cifar10:{root}")
    assert (ds.num_classes, ds.input_shape, ds.mean) == (10, (3, 32, 32), CIFAR10.mean)
    loader = ds.loader("val", 4)
    assert len(loader) == 3
    x, y = _all(loader)
    assert x.shape == (10, 3, 32, 32) and x.dtype == torch.float32
    assert y.tolist() == test_labels
    expected = torch.from_numpy(test.reshape(-1, 3, 32, 32)).float()  # channel-first rows, as documented
    assert torch.allclose(_unnormalise(x, ds.mean, ds.std), expected, atol=1e-3)
    assert ds.sizes == {"train": 50000, "val": 10}  # the real count once read
    assert class_names(root, CIFAR10)[:2] == ["c0", "c1"]


def test_cifar10_accepts_the_parent_folder_and_reads_all_train_batches(tmp_path):
    write_cifar10(tmp_path)
    ds = build_data(f"cifar10:{tmp_path}")
    x, y = _all(ds.loader("train", 8))  # no train=True: in order, no augmentation
    assert x.shape == (20, 3, 32, 32) and y.tolist() == [i % 10 for i in range(20)]


def test_cifar_normalisation_standardises_the_stated_mean(tmp_path):
    root, *_ = write_cifar10(tmp_path)
    ds = build_data(f"cifar10:{root}")
    loader = ds.loader("val", 10)
    loader.images = torch.tensor([round(m * 255) for m in CIFAR10.mean], dtype=torch.uint8).view(1, 3, 1, 1)
    loader.images = loader.images.expand(10, 3, 32, 32).contiguous()
    x, _ = _all(loader)
    assert x.abs().max() < 0.01  # pixels at the channel mean map to ~0


def test_cifar_augmentation_is_fixed_by_seed_and_epoch(tmp_path):
    root, *_ = write_cifar10(tmp_path)
    ds = build_data(f"cifar10:{root}")

    def epoch(seed, e):
        loader = ds.loader("train", 6, train=True, seed=seed)
        loader.set_epoch(e)
        return _all(loader)

    x1, y1 = epoch(1, 3)
    x2, y2 = epoch(1, 3)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    x3, y3 = epoch(1, 4)
    assert not torch.equal(x1, x3)
    assert sorted(y1.tolist()) == sorted(y3.tolist()) == sorted(i % 10 for i in range(20))
    assert not torch.equal(epoch(2, 3)[0], x1)
    plain, _ = _all(ds.loader("train", 20))
    assert not torch.equal(torch.sort(x1.flatten(1), 0).values, torch.sort(plain.flatten(1), 0).values)


def test_cifar100_uses_fine_labels(tmp_path):
    root, (train, fine), (test, test_fine) = write_cifar100(tmp_path)
    ds = build_data(f"cifar100:{tmp_path}")
    assert ds.num_classes == 100 and ds.mean == CIFAR100.mean
    assert _all(ds.loader("val", 3))[1].tolist() == test_fine
    x, y = _all(ds.loader("train", 7))
    assert y.tolist() == fine and x.shape == (20, 3, 32, 32)
    assert class_names(root, CIFAR100)[99] == "f99"


def test_cifar_missing_folder_or_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="folder not found"):
        build_data(f"cifar10:{tmp_path / 'nope'}")
    with pytest.raises(UserError, match="needs a folder"):
        build_data("cifar100")
    with pytest.raises(UserError, match="no CIFAR batch files"):
        build_data(f"cifar10:{tmp_path}")
    root, *_ = write_cifar10(tmp_path)
    (root / "data_batch_3").unlink()
    with pytest.raises(UserError, match="lacks data_batch_3"):
        build_data(f"cifar10:{root}")


def test_cifar_corrupt_file_is_a_user_error(tmp_path):
    root, *_ = write_cifar10(tmp_path)
    (root / "test_batch").write_bytes(b"not a pickle")
    ds = build_data(f"cifar10:{root}")
    with pytest.raises(UserError, match="cannot read CIFAR file"):
        ds.loader("val", 4)


# ---------------------------------------------------------------- imagefolder


def write_folder(root, classes=("cat", "dog"), train_n=3, val_n=2):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", train_n), ("val", val_n)):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / c / f"{i}.png")
    return root


def test_imagefolder_size_option_and_val_loader(tmp_path):
    write_folder(tmp_path)
    ds = build_data(f"imagefolder:{tmp_path}?size=32")
    assert (ds.num_classes, ds.input_shape) == (2, (3, 32, 32))
    loader = ds.loader("val", 3)
    assert len(loader) == 2
    x, y = _all(loader)
    assert x.shape == (4, 3, 32, 32) and y.tolist() == [0, 0, 1, 1]
    assert ds.sizes["val"] == 4
    assert build_data(f"imagefolder:{tmp_path}").input_shape == (3, 224, 224)


def test_imagefolder_train_order_and_augmentation_follow_seed_and_epoch(tmp_path):
    write_folder(tmp_path)
    ds = build_data(f"imagefolder:{tmp_path}?size=16")

    def epoch(e, workers=0, seed=0):
        loader = ds.loader("train", 4, train=True, seed=seed, workers=workers)
        loader.set_epoch(e)
        return _all(loader)

    x1, y1 = epoch(2)
    torch.rand(5)  # the caller's RNG use must not matter
    x2, y2 = epoch(2)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(x1, epoch(3)[0])
    assert not torch.equal(x1, epoch(2, seed=1)[0])
    xw, yw = epoch(2, workers=1)  # same batches whatever the number of worker processes
    assert torch.equal(x1, xw) and torch.equal(y1, yw)


def test_imagefolder_errors(tmp_path):
    with pytest.raises(UserError, match="needs a folder"):
        build_data("imagefolder")
    with pytest.raises(UserError, match="folder not found"):
        build_data(f"imagefolder:{tmp_path / 'nope'}")
    write_folder(tmp_path / "a")
    with pytest.raises(UserError, match="size must be"):
        build_data(f"imagefolder:{tmp_path / 'a'}?size=big")
    with pytest.raises(UserError, match="bad imagefolder option"):
        build_data(f"imagefolder:{tmp_path / 'a'}?crop=3")
    (tmp_path / "a" / "val" / "bird").mkdir()
    with pytest.raises(UserError, match="classes differ"):
        build_data(f"imagefolder:{tmp_path / 'a'}")
    (tmp_path / "b" / "train" / "x").mkdir(parents=True)
    with pytest.raises(UserError, match="missing folder"):
        build_data(f"imagefolder:{tmp_path / 'b'}")


# ---------------------------------------------------------------- digits, synthetic, registry


def test_registry_lists_every_family():
    names = {e.name for e in list_data()}
    assert {"digits", "synthetic", "cifar10", "cifar100", "imagefolder"} <= names
    with pytest.raises(UserError, match="unknown data"):
        build_data("cifar11:x")


def test_digits_basics():
    ds = build_data("digits")
    assert (ds.num_classes, ds.input_shape) == (10, (3, 32, 32))
    x, y = next(iter(ds.loader("val", 16)))
    assert x.shape == (16, 3, 32, 32) and y.shape == (16,)
    assert len(ds.loader("train", 100)) == 15  # 1437 samples
    with pytest.raises(UserError):
        build_data("digits:extra")


def test_synthetic_options_and_determinism():
    ds = build_data("synthetic:classes=3,size=8,channels=1,n=10,val=4,seed=5")
    assert (ds.num_classes, ds.input_shape, ds.sizes) == (3, (1, 8, 8), {"train": 10, "val": 4})
    x, y = _all(ds.loader("train", 4))
    assert x.shape == (10, 1, 8, 8) and int(y.max()) < 3
    assert torch.equal(x, _all(build_data("synthetic:classes=3,size=8,channels=1,n=10,val=4,seed=5")
                                .loader("train", 4))[0])
    for bad in ("synthetic:n=0", "synthetic:foo=1", "synthetic:n=x"):
        with pytest.raises(UserError):
            build_data(bad)
