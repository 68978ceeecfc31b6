"""The timing protocol of `prunecli profile` (issue 15 item 8): `--stat median|mean`, and the clock
chosen by device: `time.perf_counter` on CPU, CUDA events on a GPU (tested here with a stand-in)."""

from __future__ import annotations

import json

import pytest
import torch

from prunecli.profiling import latency
from tests.conftest import run_cli


class FakeCuda:
    """Just enough of `torch.cuda` for CudaEventTimer; logs every call in `events`."""

    MS = 7.25

    def __init__(self, events: list):
        self.events, self.made = events, 0

    def synchronize(self, device=None):
        self.events.append("sync")

    def current_stream(self, device=None):
        return "stream"

    def Event(self, enable_timing=False):  # noqa: N802 (torch.cuda's name)
        assert enable_timing
        fake, index = self, self.made % 2
        self.made += 1

        class Event:
            def record(self, stream=None):
                assert stream == "stream"
                fake.events.append(f"record {index}")

            def synchronize(self):
                fake.events.append(f"wait {index}")

            def elapsed_time(self, end):
                fake.events.append("elapsed")
                return FakeCuda.MS

        return Event()


def test_the_clock_follows_the_device():
    assert isinstance(latency.make_timer("cpu"), latency.WallTimer)
    assert latency.make_timer("cpu").name == "perf_counter"
    timer = latency.make_timer("cuda:1")
    assert isinstance(timer, latency.CudaEventTimer) and timer.name == "cuda_event" and timer.device == "cuda:1"


def test_cuda_event_timer_brackets_one_pass_with_events_on_the_stream():
    events: list = []
    timer = latency.CudaEventTimer("cuda:0", cuda=FakeCuda(events))
    ms = timer(lambda: events.append("pass"))
    assert ms == FakeCuda.MS
    assert events == ["sync", "record 0", "pass", "record 1", "wait 1", "elapsed"]


def test_wall_timer_synchronises_cuda_around_the_pass(monkeypatch):
    events: list = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: events.append("sync"))
    ms = latency.WallTimer("cuda:0")(lambda: events.append("pass"))
    assert events == ["sync", "pass", "sync"] and ms >= 0


def test_summarize_median_and_mean():
    times = [3.0, 1.0, 10.0, 2.0]
    median, mean = latency.summarize(times, 4), latency.summarize(times, 4, "mean")
    for row in (median, mean):
        assert (row["median_ms"], row["mean_ms"], row["p90_ms"], row["batch"]) == (2.5, 4.0, 10.0, 4)
    assert median["stat"] == "median" and median["images_per_s"] == pytest.approx(4 / 2.5e-3)
    assert mean["stat"] == "mean" and mean["images_per_s"] == pytest.approx(4 / 4e-3)
    with pytest.raises(ValueError):
        latency.summarize(times, 1, "mode")


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    from tests.conftest import untrained

    root = tmp_path_factory.mktemp("stat")
    return untrained("resnet_tiny", root / "a.safetensors"), untrained("resnet_tiny", root / "b.safetensors")


@pytest.mark.parametrize("stat", ["median", "mean"])
def test_profile_stat_sets_the_reported_number_and_the_speedup(two, stat):
    a, b = two
    extra = [] if stat == "median" else ["--stat", "mean"]
    r = run_cli("profile", a, "--compare", b, "--runs", "5", "--warmup", "1", "--batch-sizes", "1,2",
                "--device", "cpu", "--json", *extra)
    assert r.exit_code == 0, r.output + repr(r.exception)
    out = json.loads(r.stdout)
    assert out["settings"]["stat"] == stat and out["settings"]["timer"] == "perf_counter"
    for mine, theirs in zip(out["latency"], out["compare"]["latency"]):
        assert mine["stat"] == stat and mine["mean_ms"] > 0 and mine["median_ms"] > 0
        assert out["ratios"]["speedup"][str(mine["batch"])] == pytest.approx(
            theirs[f"{stat}_ms"] / mine[f"{stat}_ms"], rel=1e-12)  # a time ratio base/this, not minus 1
        assert mine["images_per_s"] == pytest.approx(mine["batch"] / (mine[f"{stat}_ms"] / 1000))
    sidecar = json.loads(a.with_name("a.flops.json").read_text())["latency"]
    assert (sidecar["stat"], sidecar["timer"]) == (stat, "perf_counter")
