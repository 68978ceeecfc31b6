"""`?aug=crop|shift|none&norm=dataset|half` on the in-memory image families (CIFAR, digits)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prunecli.data import build_data
from prunecli.data.cifar import CIFAR100
from prunecli.data.tensor import _interp
from prunecli.errors import UserError
from tests.conftest import run_main
from tests.unit.test_data import _all, write_cifar100


def _pixels(x, ds):
    """Back to 0..255 pixel values with the data set's recorded mean/std."""
    mean, std = torch.tensor(ds.mean).view(1, -1, 1, 1), torch.tensor(ds.std).view(1, -1, 1, 1)
    return x * std * 255 + mean * 255


def _by_label(loader):
    x, y = _all(loader)
    order = y.argsort()  # the fixture's 20 train labels are distinct
    return x[order], y[order]


def test_aug_none_gives_the_same_images_whatever_the_epoch_or_seed(tmp_path):
    root, (train, fine), _ = write_cifar100(tmp_path)
    ds = build_data(f"cifar100:{root}?aug=none")
    assert (ds.mean, ds.std) == (CIFAR100.mean, CIFAR100.std)  # norm stays the default
    expected = torch.from_numpy(train.reshape(-1, 3, 32, 32)).float()[torch.tensor(fine).argsort()]
    seen = []
    for seed, epoch in ((0, 0), (0, 5), (3, 1)):
        loader = ds.loader("train", 6, train=True, seed=seed)
        loader.set_epoch(epoch)
        x, y = _by_label(loader)
        assert torch.allclose(_pixels(x, ds), expected, atol=1e-3)
        seen.append(x)
    assert torch.equal(seen[0], seen[1]) and torch.equal(seen[0], seen[2])
    # the default (crop) does change them: the test above would fail on it
    crop = build_data(f"cifar100:{root}").loader("train", 6, train=True, seed=0)
    assert not torch.allclose(_pixels(_by_label(crop)[0], ds), expected, atol=1e-3)


def test_norm_half_maps_0_to_minus_1_and_255_to_1_and_is_recorded(tmp_path):
    root, *_ = write_cifar100(tmp_path)
    ds = build_data(f"cifar100:{root}?aug=none&norm=half")
    assert ds.mean == ds.std == (0.5, 0.5, 0.5)
    assert ds.spec == f"cifar100:{root}?aug=none&norm=half"
    loader = ds.loader("val", 2)
    loader.images = torch.stack([torch.zeros(3, 32, 32), torch.full((3, 32, 32), 255.0)]).to(torch.uint8)
    loader.labels = torch.tensor([0, 1])
    x, _ = _all(loader)
    assert torch.equal(x[0], torch.full((3, 32, 32), -1.0)) and torch.equal(x[1], torch.full((3, 32, 32), 1.0))


def _ramp_loader(root, seed, vertical=False):
    ds = build_data(f"cifar100:{root}?aug=shift&norm=half")
    loader = ds.loader("train", 20, train=True, seed=seed)
    ramp = (7 * torch.arange(32)).to(torch.uint8)  # 0, 7, …, 217: a linear ramp
    ramp = ramp.view(1, 1, 32, 1) if vertical else ramp.view(1, 1, 1, 32)
    loader.images = ramp.expand(20, 3, 32, 32).contiguous()
    return loader


def test_shift_is_keras_real_valued_shift_within_10_percent_with_edge_pixels(tmp_path):
    """On a ramp 7·j, out(j) = 7·clamp(j + t, 0, 31): t is read back from the middle pixel, and every
    pixel must then match, so the edges repeat the border value ('nearest'), never zero padding."""
    root, *_ = write_cifar100(tmp_path)
    shifts, flips = [], 0
    for seed in range(3):
        x, _ = _all(_ramp_loader(root, seed))
        px = (x + 1) * 127.5  # norm=half: back to 0..255
        assert torch.allclose(px, px[:, :1, :1, :].expand_as(px), atol=1e-3)  # rows/channels alike: a width shift
        for row in px[:, 0, 0, :]:
            if row[0] > row[-1]:  # horizontally flipped after the shift
                row, flips = row.flip(0), flips + 1
            t = float(row[16]) / 7 - 16
            expected = 7 * (torch.arange(32) + t).clamp(0, 31)
            assert torch.allclose(row, expected, atol=1e-3), (t, row)
            shifts.append(t)
    shifts = torch.tensor(shifts)
    assert shifts.abs().max() <= 0.1 * 32 + 1e-4
    assert shifts.abs().max() > 1.5 and (shifts > 0).any() and (shifts < 0).any()
    assert ((shifts - shifts.round()).abs() > 0.05).float().mean() > 0.5  # real-valued, as Keras
    assert 0 < flips < len(shifts)
    x, _ = _all(_ramp_loader(root, 0, vertical=True))  # and the height shift on a vertical ramp
    col = ((x + 1) * 127.5)[:, 0, :, 0]
    t = col[:, 16] / 7 - 16
    assert torch.allclose(col, 7 * (torch.arange(32) + t[:, None]).clamp(0, 31), atol=1e-3)
    assert t.abs().max() <= 3.2 + 1e-4 and t.abs().max() > 1


def test_shift_interpolation_equals_scipy_affine_transform_nearest():
    """Keras' apply_affine_transform is scipy.ndimage.affine_transform(order=1, mode='nearest')."""
    from scipy import ndimage

    x = torch.randint(0, 256, (4, 2, 9, 11), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    ty, tx = torch.tensor([0.3, -1.7, 2.5, -0.49]), torch.tensor([-0.2, 1.1, -3.2, 2.0])
    out = _interp(_interp(x.float(), ty, 2), tx, 3)
    for k in range(4):
        for c in range(2):
            ref = ndimage.affine_transform(x[k, c].double().numpy(), np.eye(2), offset=[float(ty[k]), float(tx[k])],
                                           order=1, mode="nearest")
            assert np.allclose(out[k, c].numpy(), ref, atol=1e-4)


def test_shift_is_fixed_by_seed_and_epoch(tmp_path):
    root, *_ = write_cifar100(tmp_path)
    ds = build_data(f"cifar100:{root}?aug=shift")

    def epoch(seed, e):
        loader = ds.loader("train", 7, train=True, seed=seed)
        loader.set_epoch(e)
        return _all(loader)[0]

    assert torch.equal(epoch(1, 2), epoch(1, 2))
    assert not torch.equal(epoch(1, 2), epoch(1, 3)) and not torch.equal(epoch(1, 2), epoch(2, 2))
    assert torch.equal(_all(ds.loader("val", 4))[0], _all(build_data(f"cifar100:{root}").loader("val", 4))[0])


def test_digits_takes_the_same_options():
    plain, half = build_data("digits"), build_data("digits?aug=none&norm=half")
    assert half.mean == (0.5, 0.5, 0.5) and plain.mean != half.mean
    assert build_data("digits:?norm=half").mean == (0.5, 0.5, 0.5)
    x1, _ = _all(half.loader("train", 500, train=True, seed=0))
    loader = half.loader("train", 500, train=True, seed=4)
    loader.set_epoch(2)
    x2, _ = _all(loader)
    assert torch.equal(x1.sum((1, 2, 3)).sort().values, x2.sum((1, 2, 3)).sort().values)  # same images
    assert x1.min() >= -1 and x1.max() <= 1
    with pytest.raises(UserError, match="takes no argument"):
        build_data("digits:extra")


@pytest.mark.parametrize("spec", ["cifar100:{root}?aug=flip", "cifar100:{root}?norm=imagenet",
                                  "cifar100:{root}?size=32", "cifar100:{root}?aug", "digits?aug=cutout"])
def test_bad_option_is_one_user_error(spec, tmp_path):
    root, *_ = write_cifar100(tmp_path)
    with pytest.raises(UserError, match="options are aug=crop|shift|none and norm=dataset|half"):
        build_data(spec.format(root=root))


def test_bad_option_exits_2_on_the_command_line(tmp_path, capsys):
    root, *_ = write_cifar100(tmp_path)
    code = run_main("train", "--model", "resnet_tiny", "--data", f"cifar100:{root}?aug=mixup",
                    "-o", str(tmp_path / "o.safetensors"))
    err = capsys.readouterr().err
    assert code == 2 and "bad cifar100 option 'aug=mixup'" in err and "Traceback" not in err
    assert not (tmp_path / "o.safetensors").exists()
