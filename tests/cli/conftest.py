"""Fixtures of the CLI tests: real bad input files (tests/cli/bad_inputs.py), written once."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.cli import bad_inputs


@pytest.fixture(scope="session")
def bad_data(tmp_path_factory, tiny_ckpt) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad")
    paths = bad_inputs.build(root)
    paths["copy"] = root / "copy.safetensors"
    shutil.copy(tiny_ckpt, paths["copy"])
    # issue 15 (MBDL protocol): an untrained tiny DEQ, for reconstruction-only option errors
    from tests.conftest import untrained

    paths["mri_ckpt"] = untrained("deq-edsr-tiny", root / "mri.safetensors", "phantom:n=2,val=1,size=16")
    return paths
