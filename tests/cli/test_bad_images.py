"""Unreadable images (imagefolder, ham10000): the error names the file and counts the others;
--skip-bad-images leaves them out with one warning, with or without DataLoader workers."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_main


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def test_bad_image_error_names_the_file_counts_the_others_and_hints(tiny_ckpt, bad_data, tmp_path, capsys):
    """Two unreadable files in train/ (not an image; zero bytes): the one met first is named, the
    header scan counts the other, and the hint names --skip-bad-images."""
    code = run_main("train", "--model", "resnet_tiny", "--epochs", "1", "-b", "64", "--device", "cpu",
                    "--data", f"imagefolder:{bad_data['imf_bad_train']}?size=16", "-o", tmp_path / "o.safetensors")
    err = capsys.readouterr().err
    (line,) = _error_lines(err)
    assert code == 2 and "Traceback" not in err
    named = "bad.jpg" if "bad.jpg (" in line else "empty.png"
    other = {"bad.jpg": "empty.png", "empty.png": "bad.jpg"}[named]
    assert "1 more of its split" in line and other in line, line
    assert "hint: --skip-bad-images" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("workers", [0, 2])
def test_skip_bad_images_trains_and_warns_once(tiny_ckpt, bad_data, tmp_path, capsys, workers):
    """--skip-bad-images: the run completes on the readable images and one warning says how many
    were left out, also with DataLoader worker processes (the decision is in the main process)."""
    out = tmp_path / "o.safetensors"
    code = run_main("train", "--model", "resnet_tiny", "--epochs", "2", "-b", "4", "--device", "cpu",
                    "--workers", str(workers), "--skip-bad-images",
                    "--data", f"imagefolder:{bad_data['imf_bad_train']}?size=16", "-o", out)
    err = capsys.readouterr().err
    assert code == 0 and out.exists(), err
    warnings = [ln for ln in err.splitlines() if ln.startswith("warning:") and "unreadable" in ln]
    assert len(warnings) == 1 and "skipped 2 unreadable images" in warnings[0], err


def test_skip_bad_images_evaluates_the_rest(tiny_ckpt, bad_data, capsys):
    code = run_main("evaluate", tiny_ckpt, "--data", f"imagefolder:{bad_data['imf_trunc_val']}?size=32",
                    "--skip-bad-images", "--json", "--device", "cpu")
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert json.loads(captured.out)["samples"] == 7  # 8 images, the truncated one left out
    assert "skipped 1 unreadable image " in captured.err and "1.png" in captured.err


def test_bad_image_in_a_worker_is_still_one_line(tiny_ckpt, bad_data, capsys):
    code = run_main("evaluate", tiny_ckpt, "--data", f"imagefolder:{bad_data['imf_trunc_val']}?size=32",
                    "--workers", "2", "--device", "cpu")
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "worker" not in err
    (line,) = _error_lines(err)
    assert "1.png" in line and "truncated" in line


def test_skip_bad_images_ham10000(bad_data, tmp_path, capsys):
    out = tmp_path / "o.safetensors"
    code = run_main("train", "--model", "resnet_tiny", "--epochs", "1", "-b", "64", "--device", "cpu",
                    "--skip-bad-images", "--data", f"ham10000:{bad_data['ham_bad_image']}?size=16", "-o", out)
    err = capsys.readouterr().err
    assert code == 0 and out.exists(), err
    assert "skipped 1 unreadable image " in err and "ISIC_000.jpg" in err
