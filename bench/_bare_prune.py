"""The hand-written baselines for prune_speed.py: what `prunecli prune` does, in the fewest lines
a Torch-Pruning user would write (build, load, prune, save).

Usage: python bench/_bare_prune.py CASE IN.safetensors OUT.safetensors RATIO
  CASE r56-local: CIFAR ResNet-56, L1 group magnitude, local (= `prune --method l1 --ratio R`)
  CASE r50-global: torchvision ResNet-50 (10 classes) at 64×64, L2 group magnitude, global,
       max ratio 0.9 (= `prune --method l2 --global --ratio R`)
"""

import sys

import torch
import torch_pruning as tp
from safetensors.torch import load_file, save_file


def main(case: str, src: str, dst: str, ratio: float) -> None:
    if case == "r56-local":
        from prunecli.models.cifar_resnet import CifarResNet

        model, example, p, global_pruning = CifarResNet(56, num_classes=10), torch.randn(1, 3, 32, 32), 1, False
    else:
        import torchvision

        model, example, p, global_pruning = torchvision.models.resnet50(num_classes=10), torch.randn(1, 3, 64, 64), 2, True
    model.load_state_dict(load_file(src))
    model.eval()
    importance = tp.importance.GroupMagnitudeImportance(p=p)
    tp.pruner.BasePruner(model, example, importance, pruning_ratio=ratio, global_pruning=global_pruning,
                         max_pruning_ratio=0.9, ignored_layers=[model.fc]).step()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, dst)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]))
