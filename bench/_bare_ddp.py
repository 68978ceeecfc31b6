"""The baseline of ddp_throughput.py: a hand-written torchrun DDP training script.

Run as `torchrun --standalone --nproc_per_node 2 bench/_bare_ddp.py STEPS EPOCHS`. gloo on CPU,
ResNet-20 from the same seed, the same synthetic uint8 images, normalised once up front (as one
would by hand); every rank draws the same seeded permutation and trains on its contiguous half
of each global batch of 128; SGD lr 0.01, momentum 0.9 Nesterov, wd 5e-4. Rank 0 prints the
images/s (global) of the last epoch's training loop, timed as prunecli times its own.
"""

from __future__ import annotations

import json
import os
import sys
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from prunecli.data import build_data
from prunecli.data.synthetic import make_tensors, parse_options
from prunecli.models import build_model

BATCH = 128


def main() -> None:
    steps, epochs = int(sys.argv[1]), int(sys.argv[2])
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    spec = f"n={steps * BATCH},val=64"
    x, y = make_tensors(parse_options(spec))["train"]
    data = build_data(f"synthetic:{spec}")
    mean = torch.tensor(data.mean).view(1, -1, 1, 1) * 255
    images = (x.float() - mean) / (torch.tensor(data.std).view(1, -1, 1, 1) * 255)
    torch.manual_seed(0)
    model, _, _ = build_model("resnet20", num_classes=10)
    net = DistributedDataParallel(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4, nesterov=True)
    local = BATCH // world
    ips = 0.0
    for epoch in range(epochs):
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(epoch))
        net.train()
        start = time.perf_counter()
        for i in range(steps):
            idx = order[i * BATCH + rank * local: i * BATCH + (rank + 1) * local]
            loss = F.cross_entropy(net(images[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        ips = steps * BATCH / (time.perf_counter() - start)
    if rank == 0:
        print(json.dumps({"images_per_s": ips, "world": world, "threads": torch.get_num_threads(),
                          "omp": os.environ.get("OMP_NUM_THREADS")}))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
