"""A data spec built for a checkpoint: its class count checked, at the model's input size.

Pruning, profiling, analyses and training all ask for "this data, for this model"; it belongs
with the data registry rather than with the training engine (issue 14: the layering).
"""

from __future__ import annotations

from prunecli.console import err
from prunecli.errors import UserError
from prunecli.io.schema import Header


def check_classes(header: Header, dataset) -> None:
    """The data must be of the model's task, and (classification) of its class count."""
    if header.task != dataset.task:
        raise UserError(f"data {dataset.spec!r} is for {dataset.task} but the checkpoint's model does "
                        f"{header.task}")
    if header.num_classes is not None and header.num_classes != dataset.num_classes:
        raise UserError(
            f"data {dataset.spec!r} has {dataset.num_classes} classes but the checkpoint's model "
            f"predicts {header.num_classes}"
        )


def data_for(header: Header, data_spec: str, preprocess: dict | None = None):
    """Build `data_spec` at the checkpoint's input size (`at_model_size`), refusing data whose
    class count differs from the checkpoint's model."""
    from prunecli.data import build_data

    dataset = build_data(data_spec)
    check_classes(header, dataset)
    return at_model_size(dataset, header.input_shape, preprocess)


def at_model_size(dataset, input_shape, preprocess: dict | None = None):
    """`dataset` at the model's input size where the family lets the model choose (imagefolder,
    ham10000 without `?size=N`), with the resolved size and transforms printed once on stderr;
    `preprocess` (a timm model's data config) becomes the evaluation transform where it applies."""
    sized = dataset.for_input(input_shape)
    sized.preprocess = preprocess
    if sized.transform:
        own = "; evaluation transform: the model's own preprocessing" if preprocess and sized.applies_preprocess else ""
        err.print(f"data: {sized.transform}{own}")
    return sized
