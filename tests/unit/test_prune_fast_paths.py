"""The shortcuts that keep `prune` within 1.1× of a hand-written Torch-Pruning script
(bench/prune_speed.py) give exactly what the ordinary paths give, and step aside when they cannot.

- `checkpoint.load_bytes(skip_init=True)`: a meta-device skeleton filled by assignment, the
  caller's own meta build of the unpruned model if it has one (`skeleton=`);
- `verify.checked_bytes`: tries that first, and any failure is decided by the ordinary load;
- `checkpoint.load`: the file's sha256 on a second thread while the model is built;
- `structured.make_pruner(graph=)`: the pruner takes the graph `prune` built for its
  sliced-concat check instead of tracing the model again, where nothing would differ;
- `app.main`: the garbage collector's objects are frozen at exit (Python's shutdown took 1 s);
- `runtime.heavy_imports`: torch & co. imported with the collector paused, then frozen (0.5 s).
"""

from __future__ import annotations

import hashlib

import pytest
import torch

from prunecli.errors import UserError
from prunecli.io import checkpoint as ckpt
from prunecli.pruning import verify
from tests.conftest import untrained

MRI = "phantom:n=4,val=2,size=32,coils=4"


@pytest.mark.parametrize("name", ["resnet_tiny", "swin_tiny_test", "deq-edsr-tiny", "varnet-tiny"])
def test_skip_init_load_equals_ordinary_load(tmp_path, name):
    path = tmp_path / "m.safetensors"
    data = (untrained(name, path, MRI) if "-" in name else untrained(name, path)).read_bytes()
    fast = ckpt.load_bytes(data, skip_init=True)
    slow = ckpt.load_bytes(data)
    a, b = fast.model.state_dict(), slow.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not ckpt.any_meta(fast.model)
    x = verify.probe_input(fast.header.input_shape)
    assert all(torch.equal(p, q) for p, q in zip(verify._run(fast.model, x), verify._run(slow.model, x)))
    assert fast.header == slow.header and fast.sha256 == slow.sha256


def test_skip_init_does_not_draw_from_the_global_rng(tmp_path):
    data = untrained("resnet_tiny", tmp_path / "m.safetensors").read_bytes()
    rng = torch.get_rng_state()
    ckpt.load_bytes(data, skip_init=True)
    assert torch.equal(rng, torch.get_rng_state())


def test_skeleton_steps_aside_for_tensors_the_file_does_not_hold(tmp_path):
    """swin keeps its relative-position index as a non-persistent buffer: the skeleton would leave
    it on the meta device, so the ordinary build is used (and the result is a working model)."""
    data = untrained("swin_tiny_test", tmp_path / "m.safetensors").read_bytes()
    header = ckpt.read_header(data)
    from safetensors.torch import load as st_load

    assert ckpt._skeleton_load(header, st_load(data)) is None
    data = untrained("resnet_tiny", tmp_path / "r.safetensors").read_bytes()
    assert ckpt._skeleton_load(ckpt.read_header(data), st_load(data)) is not None


def test_checked_bytes_falls_back_to_the_ordinary_load(tmp_path, monkeypatch):
    loaded = ckpt.load(untrained("resnet_tiny", tmp_path / "m.safetensors"))
    calls = []
    real = verify._reload_mismatch

    def fast_fails(model, data, x, expected, skip_init, **kwargs):
        calls.append(skip_init)
        return "injected" if skip_init else real(model, data, x, expected, skip_init, **kwargs)

    monkeypatch.setattr(verify, "_reload_mismatch", fast_fails)
    data = verify.checked_bytes(loaded.model, loaded.header, loaded.header.input_shape)
    assert calls == [True, False] and ckpt.load_bytes(data).model is not None

    monkeypatch.setattr(verify, "_reload_mismatch", lambda *a, skip_init, **kwargs: "injected")
    with pytest.raises(UserError, match="would not reload into the same model \\(injected\\)"):
        verify.checked_bytes(loaded.model, loaded.header, loaded.header.input_shape)


def test_skeleton_of_the_caller_gives_the_ordinary_load(tmp_path):
    """A pruned file reloaded on the caller's meta build of the unpruned model (as `prune` does
    with the build it diffed against) equals the ordinary load; the hash is skipped on request."""
    from prunecli.models import build_model
    from tests.conftest import run_cli

    src, out = untrained("resnet_tiny", tmp_path / "m.safetensors"), tmp_path / "p.safetensors"
    assert run_cli("prune", src, "--method", "l1", "--ratio", "0.5", "-o", out).exit_code == 0
    data = out.read_bytes()
    header = ckpt.read_header(data)
    with torch.device("meta"):
        skeleton = build_model(header.model.name, **header.model.kwargs)[0]
    fast = ckpt.load_bytes(data, skip_init=True, digest=False, skeleton=skeleton)
    slow = ckpt.load_bytes(data)
    assert fast.model is skeleton and fast.sha256 is None and slow.sha256 == hashlib.sha256(data).hexdigest()
    a, b = fast.model.state_dict(), slow.model.state_dict()
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a)
    x = verify.probe_input(header.input_shape)
    assert all(torch.equal(p, q) for p, q in zip(verify._run(fast.model, x), verify._run(slow.model, x)))


def test_file_hash_on_a_second_thread(tmp_path, monkeypatch):
    """`load` hashes the file beside the build: the right digest, and its error reaches the caller."""
    import threading

    path = untrained("resnet_tiny", tmp_path / "m.safetensors")
    threads, real = [], ckpt._file_sha256

    def spy(p):
        threads.append(threading.current_thread())
        return real(p)

    monkeypatch.setattr(ckpt, "_file_sha256", spy)
    assert ckpt.load(path).sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert threads and threads[0] is not threading.main_thread()

    def unreadable(p):
        raise PermissionError(13, "Permission denied", str(p))

    monkeypatch.setattr(ckpt, "_file_sha256", unreadable)
    with pytest.raises(PermissionError):
        ckpt.load(path)


def test_main_freezes_the_collector_at_exit_once(monkeypatch):
    import atexit
    import gc

    from tests.conftest import run_main

    handlers = []
    monkeypatch.setattr(atexit, "register", lambda fn, *a, **k: handlers.append(fn))
    monkeypatch.setattr(atexit, "unregister", lambda fn: handlers.remove(fn) if fn in handlers else None)
    assert run_main("--version") == 0 and run_main("--version") == 0
    assert handlers == [gc.freeze]


def test_a_fresh_process_exits_with_everything_written(tmp_path):
    """The real entry point (frozen collector at exit): outputs complete, the JSON result whole."""
    import json

    from tests.conftest import run_proc

    src, out = untrained("resnet_tiny", tmp_path / "m.safetensors"), tmp_path / "p.safetensors"
    r = run_proc("prune", src, "--method", "l1", "--ratio", "0.5", "-o", out, "--json")
    assert r.returncode == 0, r.stderr.decode()
    assert json.loads(r.stdout)["output"] == str(out)
    assert ckpt.load(out).model is not None
    assert json.loads((tmp_path / "p.masks.json").read_text())["layers"]
    assert json.loads((tmp_path / "p.flops.json").read_text())["after"]["macs"] > 0


def test_heavy_imports_pause_then_freeze_in_a_fresh_process():
    import subprocess
    import sys

    code = ("import gc, sys\n"
            "from prunecli.utils.runtime import heavy_imports\n"
            "with heavy_imports():\n"
            "    during = gc.isenabled()\n"
            "    import torch, torch_pruning\n"
            "print(during, gc.isenabled(), gc.get_freeze_count())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[:2] == ["False", "True"] and int(out[2]) > 100_000


def test_heavy_imports_change_nothing_once_torch_is_imported():
    """In this process (torch imported): no pause, nothing frozen (earlier garbage stays collectable)."""
    import gc

    from prunecli.utils.runtime import heavy_imports

    frozen = gc.get_freeze_count()
    with heavy_imports():
        assert gc.isenabled()
    assert gc.isenabled() and gc.get_freeze_count() == frozen
