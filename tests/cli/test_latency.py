"""Latency-aware pruning (issue 16): per-layer latency, the lookup table's cache, --round-to auto,
HALP's knapsack, --target-latency. Synthetic timing tables where the logic is what is tested;
real timing only on tiny models with few runs."""

from __future__ import annotations

import json

from tests.conftest import SYNTH, run_cli, untrained


def test_profile_per_layer_latency(tmp_path):
    ckpt = untrained("resnet_tiny", tmp_path / "t.safetensors")
    r = run_cli("profile", ckpt, "--per-layer", "--latency", "--batch-sizes", "1,4", "--runs", "2", "--warmup", "1",
                "--device", "cpu", "--json")
    assert r.exit_code == 0, r.output + repr(r.exception)
    out = json.loads(r.stdout)
    assert out["layer_latency"]["batch_sizes"] == [1, 4] and out["layer_latency"]["dtype"] == "float32"
    convs = [row for row in out["layers"] if row["kind"] == "Conv2d"]
    assert len(convs) == 9 and all(set(row["latency_ms"]) == {"1", "4"} for row in convs)
    assert all(row["latency_ms"]["4"] > 0 and row["macs"] > 0 for row in convs)
    assert {"macs", "params", "name", "kind"} <= set(out["layers"][0])  # existing keys kept
    plain = json.loads(run_cli("profile", ckpt, "--per-layer", "--runs", "1", "--warmup", "0", "--batch-sizes", "1",
                               "--device", "cpu", "--json").stdout)
    assert "layer_latency" not in plain and "latency_ms" not in plain["layers"][0]


def _tiny(tmp_path):
    from prunecli.io import checkpoint as ckpt

    path = untrained("resnet_tiny", tmp_path / "t.safetensors")
    return path, ckpt.load(str(path))


def _groups(loaded, **plan):
    from prunecli.methods import get_method
    from prunecli.pruning.latency import channel_groups
    from prunecli.pruning.structured import PrunePlan

    return channel_groups(loaded.model, loaded.header.input_shape, get_method("l1").importance(seed=0),
                          PrunePlan(**plan), loaded.entry.protected)


def _synthetic_table(model, fast: dict | None = None) -> dict:
    """layer → {width: ms}: 1 ms per output channel, times a per-layer factor; `fast` overrides entries.
    Input rows: linear in the input width (what a table without them assumes)."""
    from prunecli.profiling import lut

    dims = lut.layer_dims(model)
    table = lut.Table({n: {w: float(w * (1 + i % 3)) for w in range(1, cout + 1)}
                       for i, (n, (_, cout, _)) in enumerate(dims.items())},
                      {n: {w: float(w) for w in range(1, cin + 1)} for n, (cin, _, dw) in dims.items() if not dw})
    for (name, width), ms in (fast or {}).items():
        table[name][width] = ms
    return table


def test_halp_knapsack_matches_brute_force_on_a_tiny_model(tmp_path):
    import itertools

    from prunecli.pruning.latency import candidates, knapsack

    _, loaded = _tiny(tmp_path)
    groups = _groups(loaded)
    assert sorted(g.channels for g in groups) == [8, 8, 16, 16, 32, 32]
    for g in groups:  # three candidate widths each: 3^6 combinations to enumerate
        g.min_width = g.channels - (4 if g.channels == 32 else 2 if g.channels == 16 else 2)
    table = _synthetic_table(loaded.model, {("layer3.0.conv1", 30): 1.0, ("conv1", 7): 40.0})
    cands = [candidates(g) for g in groups]
    assert [len(c) for c in cands] == [3] * 6
    costs = [[sum(table[n][w] for n in g.outs) for w in ws] for g, ws in zip(groups, cands)]
    values = [[g.value(w) for w in ws] for g, ws in zip(groups, cands)]
    for budget in (340, 355, 370, 400):
        choice = knapsack(values, costs, budget, bins=budget * 20)  # integer costs: the units are exact
        brute = max(sum(values[i][k] for i, k in enumerate(combo)) for combo in itertools.product(range(3), repeat=6)
                    if sum(costs[i][k] for i, k in enumerate(combo)) <= budget)
        assert sum(costs[i][k] for i, k in enumerate(choice)) <= budget
        assert abs(sum(values[i][k] for i, k in enumerate(choice)) - brute) < 1e-9


def test_halp_widths_meet_the_predicted_target(tmp_path):
    from prunecli.profiling import lut
    from prunecli.pruning.latency import Predictor, halp_widths

    _, loaded = _tiny(tmp_path)
    groups = _groups(loaded)
    pred = Predictor(_synthetic_table(loaded.model), lut.layer_dims(loaded.model), groups)
    for target in (0.3, 0.5, 0.8):
        keep = halp_widths(pred, target)
        assert target * 0.75 <= pred.ratio(keep) <= target + 1e-9  # a grid of widths: not every ratio
        assert all(g.min_width <= keep[g.root] <= g.channels for g in groups)


def _inject(path, loaded, table, batch):
    """Write `table` as the cached `<stem>.latency.json` for this model, device cpu, `batch`."""
    from prunecli.profiling import lut
    from prunecli.pruning.latency_run import _sha

    key = lut.table_key(_sha(loaded.model), "cpu", batch, "float32")
    lut.save_table(str(path), key, table)
    return key


def test_round_to_auto_picks_the_faster_width_on_a_synthetic_table(tmp_path, monkeypatch):
    from prunecli.profiling import lut

    path, loaded = _tiny(tmp_path)
    # ratio 0.5 ranks 16 of layer3's inner 32 and 8 of layer2's inner 16; the table makes 20 and 6 fast
    table = _synthetic_table(loaded.model, {("layer3.0.conv1", 20): 2.0, ("layer2.0.conv1", 6): 1.0})
    _inject(path, loaded, table, 4)
    monkeypatch.setattr(lut, "time_layer_widths", lambda *a, **k: (_ for _ in ()).throw(AssertionError("timed")))
    out = tmp_path / "r.safetensors"
    r = run_cli("prune", path, "--method", "l1", "--ratio", "0.5", "--round-to", "auto", "--round-window", "4",
                "--latency-batch", "4", "--device", "cpu", "-o", out, "--json")
    assert r.exit_code == 0, r.output + repr(r.exception)
    after = {row["name"]: row["channels_after"] for row in json.loads((tmp_path / "r.masks.json").read_text())["layers"]}
    assert after["layer3.0.conv1"] == 20 and after["layer2.0.conv1"] == 6  # the fast widths, wider and narrower
    assert after["layer1.0.conv1"] == 4 and after["layer3.0.shortcut.0"] == 16  # linear cost: the ranked width
    flops = json.loads((tmp_path / "r.flops.json").read_text())["latency"]["prune"]
    assert flops["table"] == str(lut.table_path(str(path))) and flops["table_key"]["batch"] == 4
    assert flops["before_ms"] > 0 and flops["after_ms"] > 0 and flops["method"] == "round-auto"
    assert json.loads(r.stdout)["latency"]["batch"] == 4
    r = run_cli("profile", out, "--batch-sizes", "1", "--runs", "1", "--warmup", "0", "--device", "cpu", "--json")
    assert r.exit_code == 0, r.output
    rewritten = json.loads((tmp_path / "r.flops.json").read_text())["latency"]
    assert rewritten["prune"] == flops and rewritten["batches"][0]["batch"] == 1  # profile keeps latency.prune


def test_latency_table_cache_is_reused_only_on_the_same_key(tmp_path):
    import torch

    from prunecli.profiling import lut
    from prunecli.pruning.latency_run import _sha

    path, loaded = _tiny(tmp_path)
    key = lut.table_key(_sha(loaded.model), "cpu", 2, "float32")
    table: dict = {}
    timed = lut.ensure(table, loaded.model, loaded.header.input_shape, {"conv1": [4, 8], "fc": [4]}, 2, "cpu",
                       "float32", runs=1)
    assert timed == 3 and set(table["conv1"]) == {4, 8} and all(ms > 0 for ms in table["conv1"].values())
    lut.save_table(str(path), key, table)
    assert lut.load_table(str(path), key) == table
    assert lut.load_table(str(path), {**key, "batch": 3}) == {}  # another batch size: not reused
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        assert lut.load_table(str(path), lut.table_key(_sha(loaded.model), "cpu", 2, "float32")) == {}
    finally:
        torch.set_num_threads(threads)
    assert lut.load_table(str(path), lut.table_key(_sha(loaded.model), "cpu", 2, "float32")) == table
    assert lut.ensure(table, loaded.model, loaded.header.input_shape, {"conv1": [4, 8]}, 2, "cpu", "float32") == 0


def _fake_device(monkeypatch, table):
    """`measure` answers from the table (the device is the table): the search logic, without timing noise."""
    from prunecli.profiling import lut
    from prunecli.pruning import latency_run as latency

    def measure(models, input_shape, batch, device):
        full = lut.layer_dims(models[0])
        return [lut.predict(table, full, {n: d[:2] for n, d in lut.layer_dims(m).items()}) for m in models]

    monkeypatch.setattr(latency, "measure", measure)


def test_target_latency_lands_within_5_percent(tmp_path, monkeypatch):
    path, loaded = _tiny(tmp_path)
    table = _synthetic_table(loaded.model)
    _inject(path, loaded, table, 4)
    _fake_device(monkeypatch, table)
    for method, extra in (("l1", []), ("halp", ["--importance", "l2"]),
                          ("halp", ["--importance", "taylor", "--data", SYNTH, "--calib-batches", "1"])):
        out = tmp_path / f"{method}{len(extra)}.safetensors"
        r = run_cli("prune", path, "--method", method, *extra, "--target-latency", "0.5x", "--latency-batch", "4",
                    "--device", "cpu", "-o", out, "--json")
        assert r.exit_code == 0, r.output + repr(r.exception)
        lat = json.loads(r.stdout)["latency"]
        assert lat["target_ratio"] == 0.5 and abs(lat["after_ms"] / lat["before_ms"] / 0.5 - 1) <= 0.05, lat
        assert json.loads(r.stdout)["macs_ratio"] > 1.2  # the synthetic latency is not MACs: some pruned


def test_round_to_auto_counts_the_input_width_it_gives_the_next_layer():
    from prunecli.pruning.latency import Group, round_auto

    groups = [Group("a", 32, [1.0] * 32, outs=["a"], ins=["b"]), Group("b", 16, [1.0] * 16, outs=["b"])]
    table = {"a": {w: float(w) for w in range(1, 33)} | {32: 28.0},  # 32 costs a what the ranked 28 costs
             "b": {w: 2.0 * w for w in range(1, 17)}}
    dims = {"a": (3, 32, False), "b": (32, 16, False)}
    ranked = {"a": 28, "b": 16}
    assert round_auto(groups, table, ranked, 4)["a"] == 32  # alone, padding to 32 looks free
    assert round_auto(groups, table, ranked, 4, dims)["a"] == 28  # but b's input grows by 4/32: not free


def test_layer_ms_takes_the_input_width_from_its_own_row():
    from prunecli.profiling import lut

    # blocked kernels: outputs 1-16 cost 4, 17-32 cost 8; inputs 11 and 16 cost the same, 32 twice that
    table = lut.Table({"c": {16: 4.0, 24: 8.0, 32: 8.0}}, {"c": {8: 2.0, 11: 3.0, 16: 3.0, 32: 6.0}})
    dims = (32, 32, False)
    assert lut.layer_ms(table, "c", dims, 32, 32) == 8.0
    assert lut.layer_ms(table, "c", dims, 16, 32) == 4.0 == lut.layer_ms(table, "c", dims, 11, 32)
    assert lut.layer_ms(table, "c", dims, 11, 24) == 4.0 and lut.layer_ms(table, "c", dims, 16, 16) == 2.0
    assert lut.layer_ms({"c": {32: 8.0}}, "c", dims, 11, 32) == 8.0 * 11 / 32  # no input row: linear
    assert lut.layer_ms(table, "c", (32, 32, True), 11, 16) == 4.0  # depthwise: its output row only


def test_round_to_auto_pads_where_the_fed_layers_input_row_is_flat():
    from prunecli.profiling import lut
    from prunecli.pruning.latency import Group, round_auto

    groups = [Group("a", 32, [1.0] * 32, outs=["a"], ins=["b"]), Group("b", 16, [1.0] * 16, outs=["b"])]
    table = lut.Table({"a": {w: float(w) for w in range(1, 33)} | {32: 28.0}, "b": {w: 2.0 * w for w in range(1, 17)}},
                      {"b": {w: 10.0 if w > 16 else 5.0 for w in range(1, 33)}})  # b's inputs in blocks of 16
    dims = {"a": (3, 32, False), "b": (32, 16, False)}
    # the same case as above, but b's input row says 28 and 32 input channels cost the same: padding is free
    assert round_auto(groups, table, {"a": 28, "b": 16}, 4, dims)["a"] == 32


def test_halp_keeps_whole_blocks_when_the_device_runs_blocks(tmp_path):
    from prunecli.profiling import lut
    from prunecli.pruning.latency import Predictor, halp_widths

    _, loaded = _tiny(tmp_path)
    dims = lut.layer_dims(loaded.model)
    block = lambda w: float(-(-w // 8))  # noqa: E731  a cost that steps every 8 channels, in and out
    table = lut.Table({n: {w: block(w) for w in range(1, cout + 1)} for n, (_, cout, _) in dims.items()},
                      {n: {w: block(w) for w in range(1, cin + 1)} for n, (cin, _, _) in dims.items()})
    groups = _groups(loaded)
    pred = Predictor(table, dims, groups)
    for target in (0.5, 0.7):
        keep = halp_widths(pred, target)
        assert pred.ratio(keep) <= target + 1e-9
        assert all(w % 8 == 0 for w in keep.values()), keep  # a partial block costs a whole one: never kept
        assert any(keep[g.root] < g.channels for g in groups)


def test_latency_table_times_and_caches_input_widths(tmp_path):
    from prunecli.profiling import lut
    from prunecli.pruning.latency_run import _sha

    path, loaded = _tiny(tmp_path)
    key = lut.table_key(_sha(loaded.model), "cpu", 2, "float32")
    table = lut.Table()
    timed = lut.ensure(table, loaded.model, loaded.header.input_shape, {"fc": [4]}, 2, "cpu", "float32", runs=1,
                       wanted_inputs={"layer3.0.conv1": [8, 16], "fc": [16, 32]})
    assert timed == 5 and set(table.inputs) == {"layer3.0.conv1", "fc"} and set(table.inputs["fc"]) == {16, 32}
    assert all(ms > 0 for row in table.inputs.values() for ms in row.values())
    lut.save_table(str(path), key, table)
    again = lut.load_table(str(path), key)
    assert again == table and again.inputs == table.inputs
    assert lut.ensure(again, loaded.model, loaded.header.input_shape, {"fc": [4]}, 2, "cpu", "float32",
                      wanted_inputs={"fc": [16]}) == 0  # all cached


def test_allocator_steady_keeps_memory_while_timing_and_restores_glibc_defaults():
    from prunecli.profiling import allocator as A

    class FakeLibc:
        def __init__(self, ok=1):
            self.calls, self.ok = [], ok

        def mallopt(self, param, value):
            self.calls.append((param, value))
            return self.ok

        def malloc_trim(self, pad):
            self.calls.append(("trim", pad))
            return 1

    libc = FakeLibc()
    with A.allocator("steady", "cpu", libc) as mode:
        assert mode == "steady" and libc.calls == [(A.M_MMAP_MAX, 0), (A.M_TRIM_THRESHOLD, A.NO_TRIM)]
    assert libc.calls[2:] == [(A.M_MMAP_MAX, A.DEFAULT_MMAP_MAX), (A.M_TRIM_THRESHOLD, A.DEFAULT_TRIM), ("trim", 0)]
    for mode, device in (("system", "cpu"), ("steady", "cuda:0")):
        libc = FakeLibc()
        with A.allocator(mode, device, libc) as got:
            assert got == "system"
        assert libc.calls == []
    refused = FakeLibc(ok=0)
    with A.allocator("steady", "cpu", refused) as got:
        assert got == "system"
    libc = FakeLibc()
    with A.allocator("steady", "cpu", libc):
        with A.allocator("steady", "cpu", libc) as inner, A.allocator("system", "cpu", libc) as other:
            assert inner == other == "steady" and len(libc.calls) == 2  # nested: the enclosing block's setting
    assert len(libc.calls) == 5 and A._active == []  # restored and trimmed once, by the outer block


def test_profile_records_the_allocator(tmp_path):
    import platform

    ckpt = untrained("resnet_tiny", tmp_path / "t.safetensors")
    common = ["--batch-sizes", "2", "--runs", "1", "--warmup", "0", "--device", "cpu", "--json"]
    steady = json.loads(run_cli("profile", ckpt, *common).stdout)
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert steady["settings"]["allocator"] == ("steady" if glibc else "system")
    assert steady["latency"][0]["allocator"] == steady["settings"]["allocator"]
    system = json.loads(run_cli("profile", ckpt, *common, "--allocator", "system").stdout)
    assert system["settings"]["allocator"] == "system"
    assert json.loads((tmp_path / "t.flops.json").read_text())["latency"]["allocator"] == "system"


def test_predictor_scales_the_untimed_share_by_the_kept_output_volume():
    from prunecli.profiling import lut
    from prunecli.pruning.latency import Group, Predictor, halp_widths, solve_knapsack

    groups = [Group("a", 8, [1.0] * 8, outs=["a"], ins=["b"])]
    dims = {"a": (3, 8, False), "b": (8, 4, False)}
    table = lut.Table({"a": {w: float(w) for w in range(1, 9)}, "b": {4: 4.0}})  # timed: 8 + 4 = 12 ms
    volume = {"a": 100.0, "b": 100.0}  # a's 8 channels carry 800 output elements, b's 4 carry 400
    pred = Predictor(table, dims, groups, base_ms=24.0, volume=volume)  # 12 ms measured beyond the table
    assert pred.other == 12.0 and pred.full == 24.0
    # a at 4: a 4 ms, b 4 × 4/8 = 2 ms; untimed 12 × (400 + 400) / 1200 = 8 ms
    assert abs(pred.ratio({"a": 4}) - (4 + 2 + 8) / 24) < 1e-12
    assert Predictor(table, dims, groups).ratio({"a": 4}) == (4 + 2) / 12  # no measurement: the table alone
    assert Predictor(table, dims, groups, base_ms=10.0, volume=volume).other == 0  # table above it: no share
    for previous in ({}, {"a": 6}):  # the knapsack's expansion is exact here (linear rows): its pick meets it
        keep = solve_knapsack(pred, 0.6, previous)
        assert pred.ratio(keep) <= 0.6 + 1e-9 and pred.ratio({"a": keep["a"] + 1}) > 0.6
    assert halp_widths(pred, 0.6) == {"a": 4}  # ratio(w) = (w + w/2 + (w + 4)) / 24 ≤ 0.6  ⇔  w ≤ 4.16
