"""Issue 14 item 3: options owned by the methods, help panels, real choices, `ls` at 80 columns,
and the import layering (nothing below the CLI imports it)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest

from tests.conftest import run_cli, run_main

ROOT = Path(__file__).resolve().parents[2]


def _proc(*args: str, columns: int = 120, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prunecli", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": str(columns), **env})


def _imports_torch(*argv: str) -> bool:
    """Whether running `prunecli ARGV` in a fresh interpreter imports torch."""
    code = ("import sys; sys.argv = ['prunecli', *sys.argv[1:]]\nfrom prunecli.cli.app import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\nprint('TORCH', 'torch' in sys.modules, file=sys.stderr)")
    res = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    return "TORCH True" in res.stderr


PRUNE_PANELS = ("Budget (structured methods)", "Similarity graph and zero groups", "Isomorphic, ViT heads and blocks",
                "Unstructured schedule", "Fine-tuning between steps (l1-unstructured)", "Data and device")
TRAIN_PANELS = ("Optimisation", "Schedule and checkpoint selection", "Augmentation and regularisation",
                "Speed and averaging", "Distributed (torchrun)", "Data and device")


def test_prune_help_has_a_panel_per_method_group_and_imports_no_torch():
    out = _proc("prune", "--help").stdout
    panels = [line.split("─ ", 1)[1].split(" ─")[0] for line in out.splitlines() if line.startswith("╭─ ")]
    assert panels == ["Arguments", "Options", *PRUNE_PANELS]
    for flag in ("--threshold", "--sparsity", "--head-ratio", "--finetune-epochs", "--calib-batches", "--randaugment",
                 "--grad-accum", "--sync-bn", "--amp", "--fold", "--selection", "--importance"):
        assert flag in out, flag
    assert not _imports_torch("prune", "--help") and not _imports_torch("--help")


@pytest.mark.parametrize(("command", "panels"), [("train", TRAIN_PANELS), ("finetune", TRAIN_PANELS),
                                                 ("analyze", ("Data and device", "Sensitivity", "Similarity", "CKA"))])
def test_train_finetune_and_analyze_help_panels(command, panels):
    out = _proc(command, "--help").stdout
    for panel in panels:
        assert f"╭─ {panel} " in out, panel


@pytest.mark.parametrize(("command", "listed"), [
    ("prune", ["[oneshot|iterative|layerwise]", "[taylor|l1|l2|random]", "[reference|strength]",
               "[reference|exact-1x1]", "[layer|block]", "[constant|cosine|step]", "[sgd|adam|adamw|proxsgd]",
               "[off|auto|bf16|fp16]", "l1-unstructured|l2|random|similarity|taylor|zero-groups]"]),
    ("train", ["[sgd|adam|adamw|proxsgd]", "[cosine|step|constant]", "[off|auto|bf16|fp16]",
               "[last|best|val_dc]", "[auto|smoothl1|ssim|l1|mse]", "[all|keras]", "[div|mul|none]"]),
    ("finetune", ["[soft|hard]", "[supervised|distill|selfsup|supervised+distill|testdc+distill]", "[last|best|val_dc]",
                  "[train|test]"]),
    ("analyze", ["[magnitude|sensitivity|similarity|cka]", "[reference|strength]", "[layers|all]"]),
])
def test_choices_are_listed_in_help(command, listed):
    out = _proc(command, "--help", columns=250).stdout
    for choices in listed:
        assert choices in out, choices


@pytest.mark.parametrize(("words", "offered"), [
    ("prunecli train --amp ", ["off", "auto", "bf16", "fp16"]),
    ("prunecli prune x --schedule ", ["oneshot", "iterative", "layerwise"]),
    ("prunecli prune x --method l", ["l1", "l1-unstructured", "l2"]),
])
def test_shell_completion_offers_the_choices(words, offered):
    res = subprocess.run([sys.executable, "-c", "import sys; sys.argv[0] = 'prunecli'\nfrom prunecli.cli.app import main; main()"], capture_output=True,
                         text=True, timeout=120, env={**os.environ, "_PRUNECLI_COMPLETE": "complete_bash",
                                                      "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()))
                                                      if words.endswith(" ") else str(len(words.split()) - 1)})
    assert res.stdout.split() == offered, res.stderr


FOREIGN = [  # (option given, method that does not take it) → the methods that do
    (["--threshold", "0.5"], "l1", "similarity|zero-groups"),
    (["--sparsity", "0.5"], "taylor", "l1-unstructured"),
    (["--fold", "exact-1x1"], "similarity", "zero-groups"),
    (["--samples", "8"], "isomorphic", "similarity"),
    (["--importance", "l1"], "l2", "halp|isomorphic"),
    (["--ratio", "0.5"], "l1-unstructured", "isomorphic|l1|l2|random|taylor"),
    (["--head-ratio", "0.5"], "zero-groups", "isomorphic|l1|l2|random|taylor"),
    (["--mixup", "0.2"], "random", "l1-unstructured"),
    (["--amp", "bf16"], "isomorphic", "l1-unstructured"),
    (["--no-sync-bn"], "l1", "l1-unstructured"),  # named by the option's name, --sync-bn
    (["--global"], "similarity", "isomorphic|l1|l2|random|taylor"),
    (["--schedule", "iterative"], "zero-groups", "l1-unstructured"),
]


@pytest.mark.parametrize(("option", "method", "owners"), FOREIGN)
def test_an_option_given_to_the_wrong_method_is_one_error_line(option, method, owners, tiny_ckpt, tmp_path, capsys):
    code = run_main("prune", tiny_ckpt, "--method", method, *option, "-o", tmp_path / "o.safetensors")
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and "Traceback" not in err and len(lines) == 1, err
    flag = option[0].replace("--no-", "--")
    assert lines[0].startswith(f"error: {flag} is for --method {owners}; --method {method} takes "), lines[0]
    assert list(tmp_path.iterdir()) == []


def test_every_method_refuses_every_option_it_does_not_declare(tiny_ckpt, tmp_path, capsys):
    """All pairs: each declared option, given with a value it accepts, to each method that lacks it."""
    from prunecli.cli._methods import declared
    from prunecli.methods import get_method

    value = {"optimizer": "adam", "amp": "bf16", "randaugment": "rand-m9", "grad_accum": "2"}
    pairs = 0
    for name, (param, owners) in declared().items():
        types = (param.type, *get_args(param.type))
        if isinstance(param.default, bool) or bool in types:
            args = [param.flag]
        else:
            args = [param.flag, value.get(name) or (param.choices[0] if param.choices else "1" if int in types else "0.5")]
        for method in ("l1", "l2", "taylor", "random", "isomorphic", "similarity", "zero-groups", "l1-unstructured"):
            if method in owners:
                continue
            code = run_main("prune", tiny_ckpt, "--method", method, *args, "-o", tmp_path / "o.safetensors")
            line = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
            ratio_of_decider = name in ("ratio", "target_macs") and get_method(method).decide is not None
            needle = "sets no ratio" if ratio_of_decider else f"{param.flag} is for --method {'|'.join(owners)};"
            assert code == 2 and len(line) == 1 and needle in line[0], (name, method, line)
            pairs += 1
    assert pairs > 150


def test_bad_choice_is_one_error_line_naming_the_choices(tiny_ckpt, capsys):
    assert run_main("prune", tiny_ckpt, "--method", "l1-unstructured", "--schedule", "gradual", "-o", "x") == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert line == "error: --schedule must be oneshot, iterative or layerwise, got 'gradual'"


@pytest.mark.parametrize("what", ["models", "data", "methods"])
def test_ls_is_readable_at_80_columns(what, monkeypatch):
    """Names whole on their line, descriptions wrapped: no "…" beyond those the texts hold (a token
    wider than its column, such as `oneshot|iterative|layerwise`, folds over two lines)."""
    monkeypatch.setenv("COLUMNS", "80")
    table = run_cli("ls", what).stdout
    rows = json.loads(run_cli("ls", what, "--json").stdout)
    assert max(len(line) for line in table.splitlines()) <= 80
    assert table.count("…") == sum(str(v).count("…") for r in rows for v in r.values())
    cells = [line.split("│")[1].strip() for line in table.splitlines() if line.startswith("│")]
    assert {r["name"] for r in rows} <= set(cells)
    words = {w for r in rows for w in r["description"].split()}
    seen = set(table.replace("│", " ").split())
    assert all(len(w) > 20 for w in words - seen), sorted(words - seen)[:5]


LOWER = ("engine", "pruning", "analysis", "profiling", "methods", "data", "io", "models", "mri", "utils")


def _imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_nothing_below_the_cli_imports_it():
    offenders = [f"{p.relative_to(ROOT)}: {m}" for part in LOWER for p in (ROOT / "prunecli" / part).rglob("*.py")
                 for m in _imported(p) if m == "prunecli.cli" or m.startswith("prunecli.cli.")]
    assert offenders == []


def test_similarity_method_and_analysis_import_one_way():
    assert "prunecli.methods.similarity" not in _imported(ROOT / "prunecli/analysis/similarity.py")
