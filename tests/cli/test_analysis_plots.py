"""Issue 14 item 6: `analyze --plot` draws sensitivity and magnitude figures, refuses a plot an
analysis cannot draw, wide tables fit 80 columns, and sensitivity says its expected time."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re

import numpy as np
import pytest

from tests.conftest import SYNTH, run_main

RATIOS = "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9"


def _png(path) -> np.ndarray:
    """The decoded PNG (H×W×4 floats in [0, 1]); it must be a real picture, not a blank canvas."""
    import matplotlib.image as mpimg

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = mpimg.imread(path)
    assert image.shape[0] >= 400 and image.shape[1] >= 600
    ink = (image[..., :3] < 0.9).any(-1).mean()  # share of pixels that are not (near) white
    assert 0.02 < ink < 0.6, ink
    assert len(np.unique(image[..., :3].reshape(-1, 3), axis=0)) > 50  # curves in several colours
    return image


def _no_temp_left(folder) -> None:
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


@pytest.fixture(scope="module")
def sensitivity(tiny_ckpt, tmp_path_factory):
    """One sweep at the default nine ratios, with --plot, run at COLUMNS=80; (report, png, out, err).
    Module-scoped (the sweep is the slow part), so stdout/stderr are captured by hand, not capsys."""
    work = tmp_path_factory.mktemp("sens")
    out, png = work / "s.json", work / "s.png"
    mp = pytest.MonkeyPatch()
    mp.setenv("COLUMNS", "80")
    stdout, stderr = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = run_main("analyze", tiny_ckpt, "--method", "sensitivity", "--data", SYNTH, "--ratios", RATIOS,
                            "--device", "cpu", "-o", out, "--plot", png)
    finally:
        mp.undo()
    assert code == 0, stderr.getvalue()
    return json.loads(out.read_text()), png, stdout.getvalue(), stderr.getvalue()


def test_sensitivity_plot_is_a_real_figure_with_a_curve_per_layer(sensitivity):
    from prunecli.analysis import plots

    report, png, _, _ = sensitivity
    _png(png)
    _no_temp_left(png.parent)
    assert report["options"]["plot"] == str(png)
    fig = plots.sensitivity(report)  # the same figure, inspected: one curve per swept layer + baseline
    swept = [la for la in report["layers"] if "results" in la]
    curves = [line for line in fig.axes[0].lines if line.get_label() in {la["name"] for la in swept}]
    assert len(curves) == len(swept) >= 2
    first = curves[0].get_xydata()
    assert first[0].tolist() == [0.0, report["baseline"]["top1"]]  # every curve starts unpruned
    assert np.allclose(first[1:, 1], [r["top1"] for r in swept[0]["results"]])


def test_sensitivity_table_fits_80_columns_and_says_where_the_numbers_are(sensitivity):
    report, _, stdout, _ = sensitivity
    lines = stdout.splitlines()
    assert lines and max(len(line) for line in lines) <= 80
    assert "…" not in stdout
    for ratio in RATIOS.split(","):  # every ratio column is there, in one of the split tables
        assert f"r={float(ratio):g}" in stdout
    assert "(1/2)" in stdout and "(2/2)" in stdout
    assert "-o FILE, or --json" in " ".join(stdout.split())
    from prunecli.cli._output import fmt

    first = next(la for la in report["layers"] if "results" in la)  # its row in the first table
    row = next(line for line in lines if line.startswith(f"│ {first['name']} {first['channels']} "))
    cells = [c.strip() for c in row.strip("│").split("│")]
    assert cells[2:7] == [fmt(round(r["drop"], 1)) for r in first["results"][:5]]


def test_sensitivity_says_progress_and_expected_time(sensitivity):
    report, _, _, stderr = sensitivity
    total = len(report["layers"]) * 9
    said = re.findall(r"sensitivity: (\d+)/(\d+) trials in \d+ s, about \d+ s left", " ".join(stderr.split()))
    assert said and all(int(t) == total for _, t in said)
    assert int(said[0][0]) == 9  # after the first layer: its nine ratios


def test_magnitude_plot_and_table(tiny_ckpt, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    out, png = tmp_path / "m.json", tmp_path / "m.png"
    assert run_main("analyze", tiny_ckpt, "--method", "magnitude", "-o", out, "--plot", png) == 0
    stdout = capsys.readouterr().out
    _png(png)
    _no_temp_left(tmp_path)
    report = json.loads(out.read_text())
    from prunecli.analysis import plots

    fig = plots.magnitude(report)
    ys = [line.get_ydata() for line in fig.axes[0].lines]
    assert len(ys) == len(report["layers"])
    assert all(y[0] == pytest.approx(1.0) and all(np.diff(y) <= 1e-12) for y in ys)  # sorted, normalised
    assert "…" not in stdout and max(len(s) for s in stdout.splitlines()) <= 80


def test_similarity_table_fits_80_columns(tiny_ckpt, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    out = tmp_path / "sim.json"
    assert run_main("analyze", tiny_ckpt, "--method", "similarity", "--data", SYNTH, "--samples", "8",
                    "--device", "cpu", "-o", out) == 0
    stdout = capsys.readouterr().out
    assert "…" not in stdout and max(len(s) for s in stdout.splitlines()) <= 80
    for tau in json.loads(out.read_text())["options"]["thresholds"]:
        assert f"τ={tau:.2f}" in stdout


def test_an_analysis_without_a_plot_refuses_it(tiny_ckpt, tmp_path, capsys, monkeypatch):
    """Every analysis today draws one; one that does not (here magnitude with its figure taken
    away) refuses --plot with one error line, before any work, writing nothing."""
    from prunecli.analysis import run

    monkeypatch.setitem(run.ANALYSES, "magnitude",
                        dataclasses.replace(run.ANALYSES["magnitude"], plot="", figure=None))
    out, png = tmp_path / "m.json", tmp_path / "m.png"
    assert run_main("analyze", tiny_ckpt, "--method", "magnitude", "-o", out, "--plot", png) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --method magnitude draws no plot")
    assert "sensitivity (" in lines[0] and "Traceback" not in err
    assert not out.exists() and not png.exists()
