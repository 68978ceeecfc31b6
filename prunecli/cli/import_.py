"""`prunecli import`: convert a plain state dict (or timm pretrained weights) to a checkpoint."""

from __future__ import annotations

from typing import Annotated

import typer

from prunecli.cli import _options as O


def import_weights(
    weights: Annotated[str | None, typer.Argument(help="a .pth/.pt state dict (read weights-only) or .safetensors", show_default=False)] = None,
    model: Annotated[str, typer.Option("--model", "-m", help="registry name or timm:NAME")] = "",
    output: O.Out = "",
    num_classes: Annotated[int | None, typer.Option(help="classifier size (default: the output width of the classifier in the weights, else the model's)")] = None,
    input_size: Annotated[int | None, typer.Option(help="input resolution to record (default: the model's)")] = None,
    pretrained: Annotated[bool, typer.Option(help="use timm's published weights (needs the model hub)")] = False,
    new_head: Annotated[bool, typer.Option(help="re-initialise the classifier for --num-classes (transfer from ImageNet weights); all other weights must fit exactly")] = False,
    json: O.Json = False,
) -> None:
    """Import weights from elsewhere into a self-describing checkpoint.

    `.pth` files are read with torch.load(weights_only=True): nothing is unpickled.

    Examples:

      prunecli import resnet56_cifar10.pth --model resnet56 -o r56.safetensors

      prunecli import vgg16-397923af.pth --model tv_vgg16 --num-classes 100 --input-size 32 --new-head -o vgg16_c100_init.safetensors

      prunecli import --model timm:deit_tiny_patch16_224 --pretrained -o deit.safetensors
    """
    from prunecli.cli._output import print_result, table
    from prunecli.errors import UserError
    from prunecli.io.importer import import_weights as run_import

    if not model or not output:
        raise UserError("`prunecli import` needs --model and -o/--output")
    if weights is None and not pretrained:
        raise UserError("give a weights file, or --pretrained for timm's published weights")
    from prunecli.io.atomic import check_output

    check_output(output, weights)
    result = run_import(weights, model, output, num_classes, input_size, pretrained, new_head)
    if output != "-":
        print_result(result, json, lambda: table("imported", ["field", "value"], [[k, v] for k, v in result.items()]))
