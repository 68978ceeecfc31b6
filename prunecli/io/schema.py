"""Pydantic schemas of the checkpoint header and the JSON sidecars.

These are the published file formats (JSON Schemas in docs/schemas/, kept in sync by a
test). Every model forbids unknown fields so a typo or a hostile file is rejected, not
silently accepted.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt

FORMAT = "prunecli-checkpoint"
FORMAT_VERSION = 1
Scalar = int | float | str | bool | None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelRef(_Strict):
    name: str = Field(description="registry model name, e.g. resnet20 or timm:deit_tiny_patch16_224")
    kwargs: dict[str, Scalar] = Field(default_factory=dict, description="builder arguments")


class DataRef(_Strict):
    spec: str
    num_classes: int | None = None
    mean: list[float] | None = None
    std: list[float] | None = None


class LineageEntry(_Strict):
    command: str
    options: dict[str, Any]
    parent_sha256: str | None = None
    prunecli: str
    torch: str
    time: str


class Header(_Strict):
    format: Literal["prunecli-checkpoint"]
    version: Literal[1]
    model: ModelRef
    task: str = "classification"
    input_shape: list[int]
    num_classes: int | None = None
    data: DataRef | None = None
    structure: dict[str, dict[str, StrictInt | StrictFloat | list[StrictInt]]] = Field(
        default_factory=dict,
        description="module path → whitelisted attributes that differ from a fresh build",
    )
    sparse_params: list[str] = Field(
        default_factory=list,
        description="parameters whose zeros are an unstructured pruning mask: training keeps them zero",
    )
    removed_modules: list[str] = Field(
        default_factory=list,
        description="module paths replaced by nn.Identity (blocks removed by depth pruning)",
    )
    lineage: list[LineageEntry] = Field(default_factory=list)
    metrics: dict[str, float] = Field(default_factory=dict)


class ImportanceSummary(_Strict):
    min: float
    max: float
    mean: float
    kept_mean: float | None = None
    removed_mean: float | None = None


class LayerMask(_Strict):
    name: str
    kind: str = Field(description="module type, e.g. Conv2d")
    channels_before: int
    channels_after: int
    kept: list[int]
    removed: list[int]
    importance: ImportanceSummary | None = None
    details: dict[str, Any] | None = Field(default=None, description="method-specific facts, e.g. graph size")


class RemovedBlock(_Strict):
    name: str = Field(description="module path now an nn.Identity")
    score: float = Field(description="mean over the block's parameters of mean |p·grad|")


class LayerSparsity(_Strict):
    name: str = Field(description="parameter name, e.g. features.0.weight")
    kind: str = Field(description="module type, e.g. Conv2d")
    numel: int
    zeros: int
    sparsity: float


class SparseStep(_Strict):
    step: int
    unit: str = Field(description="what this step pruned: all (global) or a layer/block name")
    target: float = Field(description="sparsity asked of the pruned weights after this step")
    amount_of_alive: float = Field(description="fraction of the still-nonzero weights removed by this step")
    sparsity: float = Field(description="sparsity of all prunable weights after this step")
    finetune_epochs: int
    val_top1: float | None = None
    snapshot: str | None = None


class CalibrationRecord(_Strict):
    """What a data-driven method looked at (Taylor gradients, similarity feature maps)."""

    data: str = Field(description="data spec the images were drawn from")
    seed: int = Field(description="seed of the random draw (without replacement) from the split")
    images: int = Field(description="number of images drawn")
    classes: int | None = Field(description="distinct labels among the drawn images (None: unlabelled data)")
    split: str = Field(default="train", description="the split drawn from")
    transform: str = Field(default="eval", description="eval: the evaluation transform, no augmentation")
    preprocess: dict[str, Any] | None = Field(
        default=None, description="the model's own evaluation preprocessing, when the data family applied it "
        "(timm data config: input_size, interpolation, crop_pct, mean, std)")
    mode: str = Field(default="eval", description="the model's mode while it saw them (BN running stats, no dropout)")


class MasksSidecar(_Strict):
    format: Literal["prunecli-masks"] = "prunecli-masks"
    version: Literal[1] = 1
    checkpoint: str
    parent_sha256: str | None
    method: str
    options: dict[str, Any]
    layers: list[LayerMask]
    removed_blocks: list[RemovedBlock] = Field(default_factory=list)
    sparsity: float | None = Field(default=None, description="unstructured: zeros / numel over the prunable weights")
    sparse_layers: list[LayerSparsity] = Field(default_factory=list)
    steps: list[SparseStep] = Field(default_factory=list)
    calibration: CalibrationRecord | None = Field(
        default=None, description="the training images a data-driven method saw (null: no data, or a "
        "reused report without the record)")


class Counts(_Strict):
    macs: int
    params: int
    macs_conv_dense: int | None = Field(default=None, description="MACs of Conv and Linear layers only "
                                        "(kh·kw·Cin·Cout·Hout·Wout and in·out; Li et al. 2023's count)")
    params_conv_dense: int | None = Field(default=None, description="params of Conv and Linear layers only "
                                          "(BatchNorm excluded)")


class LayerFlops(_Strict):
    name: str
    kind: str
    macs_before: int
    macs_after: int
    params_before: int
    params_after: int


class FlopsSidecar(_Strict):
    format: Literal["prunecli-flops"] = "prunecli-flops"
    version: Literal[1] = 1
    unit: Literal["MACs"] = "MACs"
    checkpoint: str
    input_shape: list[int]
    before: Counts
    after: Counts
    ratio: dict[str, float] = Field(description="before / after, for macs and params")
    layers: list[LayerFlops]
    sparse_after: Counts | None = Field(
        default=None, description="after, counting only nonzero weights: the work a sparse kernel would do "
        "(dense kernels still do `after`)")
    latency: dict[str, Any] | None = Field(default=None, description="measured by `prunecli profile`")


SCHEMAS = {"header": Header, "masks": MasksSidecar, "flops": FlopsSidecar}


def json_schemas() -> dict[str, dict]:
    return {name: model.model_json_schema() for name, model in SCHEMAS.items()}


if __name__ == "__main__":  # python -m prunecli.io.schema docs/schemas  (regenerates the published schemas)
    import json
    import sys
    from pathlib import Path

    folder = Path(sys.argv[1])
    folder.mkdir(parents=True, exist_ok=True)
    for name, schema in json_schemas().items():
        (folder / f"{name}.schema.json").write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
