"""`paper.json`: a paper's results table, drawn beside ours by `prunecli report --paper`.

One small file per recipe, typed in from the paper (or its repository's README), naming its
source so a reader can check every number:

    {
      "source": "Li et al., Pattern Recognition Letters 2023; github.com/lijiang99/graphical-approach-for-filter-pruning README",
      "section": "Table 2",
      "metric": "top1",
      "data": "CIFAR-10 test set",
      "rows": [
        {"setting": "resnet56/base", "method": "base", "base": true, "macs": 125.8e6, "params": 0.86e6},
        {"setting": "resnet56/tau0.8", "method": "graph", "macs": 101.75e6, "params": 0.64e6, "top1": 93.22},
        {"setting": "resnet56/tau0.7", "method": "graph", "macs": 62.95e6, "params": 0.48e6, "top1": 92.42,
         "latency_ms": 3.1, "device": "RTX 3090", "batch": 1, "note": "latency from Table 5"}
      ]
    }

- `source`, `section`: where the numbers come from (shown above the tables and in the plots' legend).
- `metric`: the accuracy key of the rows: `top1`, `top5` (%), `psnr` (dB) or `ssim` — the key
  `report` reads from our `<stem>.eval.json` (or the header's val_<metric>) for the same column.
- `rows[].setting`: matched to our runs: the folder under the report's DIR, seed folders left out
  (`runs/resnet56/tau0.8/seed1/ft.safetensors` → `resnet56/tau0.8`), or its last folders
  (`resnet56/tau0.8` also matches `reference/resnet56/tau0.8` and `improved/resnet56/tau0.8`: the
  paper's number beside each); when that folder holds several checkpoints (base, pruned,
  fine-tuned) the one with the longest lineage is the match, and `resnet56/tau0.8/ft` names one by
  its stem. A row with no run of ours is still drawn and listed.
- `rows[].method`: the pruning method (our `prune --method` name where it is the same method,
  so both get one colour); `base: true` marks the paper's unpruned model.
- `rows[].<metric>`, `macs` (multiply-accumulates per sample, not FLOPs), `params`, `latency_ms`
  (with optional `device` and `batch`): numbers, or null/absent where the paper gives none.
- `note`: free text (e.g. "MACs implied by the reported reduction").
Unknown keys are refused, so a typo is an error, not a silently missing number.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from prunecli.errors import UserError

METRICS = ("top1", "top5", "psnr", "ssim")


class PaperRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    setting: str
    method: str
    base: bool = False
    top1: float | None = None
    top5: float | None = None
    psnr: float | None = None
    ssim: float | None = None
    macs: float | None = Field(None, ge=0)
    params: float | None = Field(None, ge=0)
    latency_ms: float | None = Field(None, ge=0)
    device: str | None = None
    batch: int | None = Field(None, ge=1)
    note: str | None = None

    def value(self, metric: str) -> float | None:
        return getattr(self, metric)


class PaperTable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str
    section: str
    metric: str = "top1"
    data: str | None = None
    rows: list[PaperRow]


def load_paper(path: str | Path) -> PaperTable:
    """Read and validate a paper.json; a bad file is one `error:` line naming the field."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--paper {path}: no such file")
    try:
        table = PaperTable.model_validate(json.loads(path.read_text()))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"--paper {path}: not JSON ({err})") from None
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UserError(f"--paper {path}: {where}: {first['msg']}") from None
    if table.metric not in METRICS:
        raise UserError(f"--paper {path}: metric {table.metric!r}; use one of {', '.join(METRICS)}")
    return table
