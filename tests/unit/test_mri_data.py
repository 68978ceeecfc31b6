"""MRI reconstruction data: operators, masks, coil maps, phantoms and the fastMRI reader (spec §1.1)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from prunecli.data import build_data
from prunecli.errors import UserError
from prunecli.mri import coils, masks, ops
from prunecli.mri.pack import to_complex, unpack
from prunecli.mri.phantom import phantom_slice
from tests.conftest import run_cli


def inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Complex inner product ⟨a, b⟩ = Σ a·conj(b)."""
    return (a * b.conj()).sum()


def crandn(*shape, gen, dtype=torch.complex128):
    return torch.randn(*shape, generator=gen, dtype=dtype)


@pytest.fixture
def operator_inputs():
    gen = torch.Generator().manual_seed(0)
    mask = (torch.rand(24, generator=gen) < 0.4).double()
    return crandn(2, 16, 24, gen=gen), crandn(2, 3, 16, 24, gen=gen), crandn(2, 3, 16, 24, gen=gen), mask


# ---- operators ------------------------------------------------------------------------------

def test_adjoint_dot_product(operator_inputs):
    x, y, smaps, mask = operator_inputs
    lhs, rhs = inner(ops.forward(x, smaps, mask), y), inner(x, ops.adjoint(y, smaps, mask))
    assert abs(lhs - rhs) <= 1e-5 * abs(lhs)


def test_adjoint_dot_product_float32_and_packed_mask(operator_inputs):
    x, y, smaps, mask = (t.to(torch.complex64) if t.is_complex() else t.float() for t in operator_inputs)
    mask4 = mask.view(1, 1, 1, -1).expand(2, 1, 16, 24)  # the packed layout's [B,1,H,W]
    lhs, rhs = inner(ops.forward(x, smaps, mask4), y), inner(x, ops.adjoint(y, smaps, mask4))
    assert abs(lhs - rhs) <= 1e-5 * abs(lhs)


def test_fft2c_is_orthonormal_centred_and_matches_fastmri():
    import fastmri

    x = crandn(3, 16, 20, gen=torch.Generator().manual_seed(1), dtype=torch.complex64)
    k = ops.fft2c(x)
    assert torch.allclose(k.norm(), x.norm(), rtol=1e-5)
    assert torch.allclose(ops.ifft2c(k), x, atol=1e-5)
    ones = ops.fft2c(torch.ones(16, 20, dtype=torch.complex64))
    assert ones.abs().argmax().item() == 8 * 20 + 10  # DC at [H//2, W//2]
    expected = torch.view_as_complex(fastmri.fft2c(torch.view_as_real(x)).contiguous())
    assert torch.allclose(k, expected, atol=1e-5)


def test_normal_operator_is_self_adjoint(operator_inputs):
    x, _, smaps, mask = operator_inputs
    v = crandn(*x.shape, gen=torch.Generator().manual_seed(2))
    lhs, rhs = inner(ops.normal(x, smaps, mask), v), inner(x, ops.normal(v, smaps, mask))
    assert abs(lhs - rhs) <= 1e-5 * abs(lhs)


# ---- masks ----------------------------------------------------------------------------------

def test_uniform_mask_matches_spec_rule():
    # W=20, R=4: i mod 4 == 0 plus ACS int(20·0.2·2/4)=2 → h=1 → columns 9..11, even W ends at 10
    assert masks.uniform_mask(20, 4).nonzero().flatten().tolist() == [0, 4, 8, 9, 10, 12, 16]
    # odd W=21: the ACS block keeps its last column (9..11)
    assert masks.uniform_mask(21, 4).nonzero().flatten().tolist() == [0, 4, 8, 9, 10, 11, 12, 16, 20]
    mask = masks.uniform_mask(320, 6)
    assert masks.acs_width(mask) == 20 and mask.dtype == torch.float32
    assert 4.5 < masks.effective_acceleration(mask) < 6


@pytest.mark.parametrize("kind", ["random", "equispaced"])
@pytest.mark.parametrize("accel,center", [(4, 0.08), (8, 0.04)])
def test_fastmri_masks_fraction_and_centre(kind, accel, center):
    mask = masks.fastmri_mask(kind, 320, accel, None, seed=3)
    assert masks.default_center(accel) == pytest.approx(center)
    assert mask.shape == (320,) and set(mask.unique().tolist()) <= {0.0, 1.0}
    n_center = round(320 * center)
    start = (320 - n_center + 1) // 2
    assert mask[start:start + n_center].all() and masks.acs_width(mask) >= n_center
    assert abs(mask.mean().item() - 1 / accel) < (0.02 if kind == "equispaced" else 0.08)
    assert torch.equal(mask, masks.fastmri_mask(kind, 320, accel, None, seed=3))


# ---- coil maps and phantoms -----------------------------------------------------------------

def test_estimated_maps_normalised_on_support_and_only_use_acs():
    image, smaps = phantom_slice(32, 4, seed=5)
    kspace = ops.fft2c(smaps * image)
    est = coils.estimate_smaps(kspace, 8)
    energy = est.abs().pow(2).sum(0)
    support = coils.support_mask(est)
    assert torch.allclose(energy[support], torch.ones(()), atol=1e-5) and (energy[~support] == 0).all()
    assert (support | ~coils.support_mask(smaps)).all()  # the object lies inside the estimated support
    acs_only = kspace * coils.centred_window(32, 8).bool()
    assert torch.allclose(coils.estimate_smaps(acs_only, 8), est, atol=1e-5)


def phantom_batch(spec: str, split: str = "train"):
    data = build_data(spec)
    return next(iter(data.loader(split, 64)))


def test_phantom_is_deterministic_and_consistent():
    x, target = phantom_batch("phantom:n=4,val=2,size=32,coils=3")
    x2, target2 = phantom_batch("phantom:n=4,val=2,size=32,coils=3")
    assert x.shape == (4, 13, 32, 32) and target.shape == (4, 2, 32, 32) and x.dtype == torch.float32
    assert torch.equal(x, x2) and torch.equal(target, target2)
    assert not torch.equal(target, phantom_batch("phantom:n=4,val=2,size=32,coils=3,seed=1")[1])
    y, mask, smaps = unpack(x)
    image = to_complex(target)
    energy = smaps.abs().pow(2).sum(1)
    support = coils.support_mask(smaps)
    assert torch.allclose(energy[support], torch.ones(()), atol=1e-5) and (energy[~support] == 0).all()
    assert torch.allclose(ops.forward(image, smaps, mask), y, atol=1e-6)
    zero_filled = ops.adjoint(y, smaps, mask)
    assert (zero_filled - image).norm() > 0.05 * image.norm()
    full = torch.ones_like(mask)
    assert torch.allclose(ops.adjoint(ops.forward(image, smaps, full), smaps, full), image, atol=1e-5)


def test_phantom_options_and_loader_order():
    data = build_data("phantom:n=6,val=2,size=16,coils=2,accel=4,mask=random,seed=2")
    assert data.task == "reconstruction" and data.num_classes == 0 and data.input_shape == (9, 16, 16)
    assert data.sizes == {"train": 6, "val": 2, "test": 2}  # test defaults to val's count
    loader = data.loader("train", 2, train=True, seed=1)
    first = [t for _, t in loader]
    loader.set_epoch(0)
    assert all(torch.equal(a, b) for a, b in zip(first, [t for _, t in loader]))
    loader.set_epoch(5)
    assert not all(torch.equal(a, b) for a, b in zip(first, [t for _, t in loader]))
    for bad in ("mask=foo", "accel=0", "center=2", "size=x", "colors=3", "n"):
        with pytest.raises(UserError):
            build_data(f"phantom:{bad}")


# ---- fastMRI layout round trip --------------------------------------------------------------

HEADER = """<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"><encoding>
<encodedSpace><matrixSize><x>{h}</x><y>{w}</y><z>1</z></matrixSize></encodedSpace>
<reconSpace><matrixSize><x>{h}</x><y>{w}</y><z>1</z></matrixSize></reconSpace>
<encodingLimits><kspace_encoding_step_1><minimum>0</minimum><maximum>{wmax}</maximum><center>{wc}</center>
</kspace_encoding_step_1></encodingLimits></encoding></ismrmrdHeader>"""


def write_volume(path, seed: int, slices: int = 3, coils_n: int = 4, h: int = 32, w: int = 32, maps=False):
    """A small file in fastMRI's brain multi-coil layout, k-space from phantoms at odd scales."""
    pairs = [phantom_slice(max(h, w), coils_n, seed * 10 + s) for s in range(slices)]
    smaps = torch.stack([s for _, s in pairs])[..., :h, :w]
    images = torch.stack([i for i, _ in pairs])[..., :h, :w]
    scale = torch.tensor([1e-4 * (s + 1) for s in range(slices)]).view(-1, 1, 1, 1)
    kspace = (ops.fft2c(smaps * images[:, None]) * scale).to(torch.complex64)
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=kspace.numpy())
        rss = ops.rss(ops.ifft2c(kspace)).float().numpy()
        f.create_dataset("reconstruction_rss", data=rss)
        f.create_dataset("ismrmrd_header", data=HEADER.format(h=h, w=w, wmax=w - 1, wc=w // 2).encode())
        if maps:
            f.create_dataset("sens_maps", data=smaps.numpy())
        f.attrs.update({"max": float(rss.max()), "norm": float(np.linalg.norm(rss)),
                        "acquisition": "AXT2", "patient_id": f"p{seed}"})
    return kspace


@pytest.fixture
def fastmri_dir(tmp_path):
    root = tmp_path / "brain"
    root.mkdir()
    kspaces = {f"file_brain_AXT2_{i}.h5": write_volume(root / f"file_brain_AXT2_{i}.h5", i, maps=True)
               for i in range(3)}
    return root, kspaces


def test_written_files_are_valid_fastmri_layout(fastmri_dir):
    from fastmri.data.mri_data import SliceDataset

    root, _ = fastmri_dir
    dataset = SliceDataset(root, "multicoil")
    assert len(dataset) == 9 and dataset[0][0].shape == (4, 32, 32)


def test_fastmri_shapes_target_and_split_by_file(fastmri_dir):
    root, kspaces = fastmri_dir
    data = build_data(f"fastmri:{root}?maps=acs&accel=4")
    assert data.task == "reconstruction" and data.input_shape == (17, 32, 32)
    assert data.sizes == {"train": 6, "val": 3, "test": 0}  # 3 files → 1 val file, whole; no test by default
    x, target = next(iter(data.loader("val", 8)))
    assert x.shape == (3, 17, 32, 32) and target.shape == (3, 2, 32, 32)
    _, _, smaps = unpack(x)
    matches = [name for name, k in kspaces.items()
               if torch.allclose(ops.coil_combine(k / k.abs().amax((1, 2, 3), keepdim=True), smaps),
                                 to_complex(target), atol=1e-5)]
    assert len(matches) == 1  # target = Σ conj(S)·F⁻¹(k / max|k|) for every slice of one file
    train_x, _ = next(iter(data.loader("train", 8)))
    assert train_x.shape[0] == 6


def test_fastmri_normalisation_with_file_maps(fastmri_dir):
    root, _ = fastmri_dir
    x, target = next(iter(build_data(f"fastmri:{root}?maps=file&accel=1").loader("train", 8)))
    y, mask, _ = unpack(x)
    assert mask.all()  # accel=1: y = F·S·x = k / max|k|, so each slice peaks at exactly 1
    assert torch.allclose(y.abs().amax((1, 2, 3)), torch.ones(6), atol=1e-5)
    cropped = build_data(f"fastmri:{root}?size=16&mask=equispaced&seed=1")
    assert cropped.input_shape == (17, 16, 16)
    assert next(iter(cropped.loader("train", 2, train=True)))[0].shape == (2, 17, 16, 16)


def test_fastmri_split_is_by_file_and_seeded():
    from prunecli.data.mri import Volume, split_volumes

    vols = [Volume(f"f{i}.h5", 5, 4, 8, 8) for i in range(20)]
    split = split_volumes(vols, seed=0)
    assert len(split["val"]) == 2 and len(split["train"]) == 18
    assert not {v.path for v in split["val"]} & {v.path for v in split["train"]}
    assert split == split_volumes(vols, seed=0) and split != split_volumes(vols, seed=1)
    assert split_volumes(vols[:2], 0)["val"] and not split_volumes(vols[:1], 0)["val"]


def test_fastmri_user_errors(tmp_path, fastmri_dir):
    root, _ = fastmri_dir
    cases = {}
    cases["missing"] = f"fastmri:{tmp_path / 'nope'}"
    (tmp_path / "empty").mkdir()
    cases["empty"] = f"fastmri:{tmp_path / 'empty'}"
    for name, make in {"nokspace": lambda f: f.create_dataset("other", data=[1]),
                       "single": lambda f: f.create_dataset("kspace", data=np.zeros((2, 8, 8), np.complex64))}.items():
        (tmp_path / name).mkdir()
        with h5py.File(tmp_path / name / "a.h5", "w") as f:
            make(f)
        cases[name] = f"fastmri:{tmp_path / name}"
    write_volume(root / "odd.h5", 9, h=32, w=24)
    cases["sizes"] = f"fastmri:{root}"
    cases["option"] = f"fastmri:{root}?mask=spiral"
    cases["size"] = f"fastmri:{root}?size=64"
    messages = {}
    for case, spec in cases.items():
        with pytest.raises(UserError) as err:
            build_data(spec)
        messages[case] = str(err.value)
    assert "not found" in messages["missing"] and "no .h5" in messages["empty"]
    assert "kspace" in messages["nokspace"] and "single-coil" in messages["single"]
    assert "size=N" in messages["sizes"] and "mask" in messages["option"] and "size=64" in messages["size"]
    assert build_data(f"fastmri:{root}?size=24").input_shape == (17, 24, 24)
    (tmp_path / "one").mkdir()
    write_volume(tmp_path / "one" / "a.h5", 1)
    single = build_data(f"fastmri:{tmp_path / 'one'}")
    assert single.sizes == {"train": 3, "val": 0, "test": 0}
    with pytest.raises(UserError, match="one file"):
        single.loader("val", 2)


def test_ls_data_lists_mri_families():
    result = run_cli("ls", "data")
    assert result.exit_code == 0, result.output
    assert "phantom" in result.output and "fastmri" in result.output


# ---- test split (issue 15 item 1): by volume, seeded, disjoint ------------------------------

def _all(data, split):
    return next(iter(data.loader(split, 256)))


def test_phantom_test_split_follows_val_and_leaves_train_and_val_as_before():
    """Old specs keep their train/val tensors: sample i of the stream is phantom_set(seed, i)."""
    from prunecli.data.mri import fixed_mask, packed
    from prunecli.mri.phantom import phantom_set

    spec = "phantom:n=6,val=2,size=16,coils=2,accel=4,mask=random,seed=2"
    old, new = build_data(spec), build_data(spec + ",test=3")
    assert old.sizes == {"train": 6, "val": 2, "test": 2} and new.sizes == {"train": 6, "val": 2, "test": 3}
    assert new.volumes == new.sizes  # each phantom sample is its own volume
    opts = {"mask": "random", "accel": 4, "center": None, "seed": 2}
    mask = fixed_mask(opts, 16)
    for split, (count, start) in {"train": (6, 0), "val": (2, 6), "test": (3, 8)}.items():
        images, smaps = phantom_set(count, 16, 2, 2, start)
        x, target = packed(ops.forward(images, smaps, mask), mask, smaps, images)
        got = _all(new, split)
        assert torch.equal(got[0], x) and torch.equal(got[1], target), split
        if split != "test":
            assert all(torch.equal(a, b) for a, b in zip(_all(old, split), got)), split
    targets = torch.cat([_all(new, s)[1] for s in ("train", "val", "test")])
    assert len({t.numpy().tobytes() for t in targets}) == 11  # no sample in two splits
    with pytest.raises(UserError, match="test=0 leaves no test split"):
        build_data(spec + ",test=0").loader("test", 2)
    with pytest.raises(UserError, match="test must be an integer"):
        build_data("phantom:test=-1")


def test_fastmri_split_counts_for_few_and_many_files():
    from prunecli.data.mri import Volume, split_volumes

    def counts(n, percent):
        split = split_volumes([Volume(f"f{i}.h5", 5, 4, 8, 8) for i in range(n)], 0, percent)
        return tuple(len(split[s]) for s in ("train", "val", "test"))

    paper, default = (90, 5, 5), (90, 10, 0)
    assert [counts(n, paper) for n in (1, 2, 3, 4, 20, 100)] == [
        (1, 0, 0), (1, 1, 0), (1, 1, 1), (2, 1, 1), (18, 1, 1), (90, 5, 5)]
    assert [counts(n, default) for n in (1, 2, 3, 20, 100)] == [(1, 0, 0), (1, 1, 0), (2, 1, 0), (18, 2, 0), (90, 10, 0)]
    assert counts(40, (80, 10, 10)) == (32, 4, 4)


def test_fastmri_split_is_seeded_disjoint_and_keeps_the_old_val_files():
    from prunecli.data.mri import Volume, split_volumes

    vols = [Volume(f"f{i}.h5", 5, 4, 8, 8) for i in range(40)]
    split = split_volumes(vols, 3, (90, 5, 5))
    names = [{v.path for v in split[s]} for s in ("train", "val", "test")]
    assert sum(map(len, names)) == 40 and len(set.union(*names)) == 40  # every file once
    assert split == split_volumes(vols, 3, (90, 5, 5)) and split != split_volumes(vols, 4, (90, 5, 5))
    order = torch.randperm(40, generator=torch.Generator().manual_seed(3)).tolist()
    old_val = {f"f{i}.h5" for i in order[:4]}  # the rule before test splits: the first max(1, round(n/10))
    assert {v.path for v in split_volumes(vols, 3)["val"]} == old_val
    assert {v.path for v in split_volumes(vols, 3, (80, 10, 10))["val"]} == old_val  # test comes out of train


def _files_of(data, split, kspaces):
    """The files whose slices a split's loader yields: a target is Σ conj(S)·F⁻¹(k / max|k|) of one
    slice k of its file, with the slice's own maps S."""
    x, target = _all(data, split)
    _, _, smaps = unpack(x)
    found = set()
    for i in range(len(target)):
        for name, k in kspaces.items():
            images = ops.coil_combine(k / k.abs().amax((1, 2, 3), keepdim=True), smaps[i:i + 1])
            if any(torch.allclose(image, to_complex(target[i:i + 1])[0], atol=1e-5) for image in images):
                found.add(name)
    return found


def test_fastmri_test_split_on_real_files_no_volume_in_two_splits(fastmri_dir):
    root, kspaces = fastmri_dir
    data = build_data(f"fastmri:{root}?maps=file&accel=4&split=90/5/5")
    assert data.sizes == {"train": 3, "val": 3, "test": 3} and data.volumes == {"train": 1, "val": 1, "test": 1}
    files = {s: _files_of(data, s, kspaces) for s in ("train", "val", "test")}
    assert all(len(f) == 1 for f in files.values()) and len(set.union(*files.values())) == 3, files
    default = build_data(f"fastmri:{root}?maps=file&accel=4")
    assert _files_of(default, "val", kspaces) == files["val"]  # the same val file as before test splits
    with pytest.raises(UserError, match="split=90/10/0 has no test files"):
        default.loader("test", 2)
    two = root.parent / "two"
    two.mkdir()
    for i in range(2):
        write_volume(two / f"f{i}.h5", i)
    with pytest.raises(UserError, match="holds 2 files; split=90/5/5 gives train 1, val 1, test 0"):
        build_data(f"fastmri:{two}?split=90/5/5").loader("test", 2)
    for bad in ("90/5", "0/50/50", "90/5/6", "a/b/c"):
        with pytest.raises(UserError, match="split must be TRAIN/VAL/TEST"):
            build_data(f"fastmri:{root}?split={bad}")
