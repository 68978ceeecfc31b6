"""The hand-written baseline for prune_speed.py: what `prunecli prune --method l1 --ratio R` does,
in the fewest lines a Torch-Pruning user would write (build, load, prune, save).

Usage: python bench/_bare_prune.py IN.safetensors OUT.safetensors RATIO
"""

import sys

import torch
import torch_pruning as tp
from safetensors.torch import load_file, save_file

from prunecli.models.cifar_resnet import CifarResNet


def main(src: str, dst: str, ratio: float) -> None:
    model = CifarResNet(56, num_classes=10)
    model.load_state_dict(load_file(src))
    model.eval()
    example = torch.randn(1, 3, 32, 32)
    importance = tp.importance.GroupMagnitudeImportance(p=1)
    tp.pruner.BasePruner(model, example, importance, pruning_ratio=ratio, ignored_layers=[model.fc]).step()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, dst)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]))
