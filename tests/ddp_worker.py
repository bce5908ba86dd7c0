"""Helper for tests/test_train.py: one training step under torchrun, gradients saved by rank 0.

Usage: python -m torch.distributed.run --nproc_per_node=2 tests/ddp_worker.py CONFIG OUT [key=value ...]
"""

import os
import sys

import torch
import torch.distributed as dist

from kxnet.train import Trainer, load_config


def gloo_threads() -> list[str]:
    """This process's threads that Gloo started (Linux names them; elsewhere none are seen)."""
    names = []
    for task in os.listdir("/proc/self/task") if os.path.isdir("/proc/self/task") else []:
        try:
            names.append(open(f"/proc/self/task/{task}/comm").read().strip())
        except OSError:     # ended meanwhile
            pass
    return sorted(n for n in names if "gloo" in n)


def main() -> None:
    config, out, *overrides = sys.argv[1:]
    cfg = load_config(config, overrides)
    with Trainer(cfg, progress=False) as trainer:
        trainer.fit(stop_at=1)
        if trainer.rank == 0:
            grads = {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
            torch.save({"grads": grads, "history": trainer.history, "world_size": dist.get_world_size(),
                        "backend": dist.get_backend()}, out)
        rank = trainer.rank
    # Leaving the group ended Gloo's threads (issue #39: kept alive by a reference to the group,
    # they ran on into interpreter exit, where a rank aborted with "terminate called without an
    # active exception").
    left = gloo_threads()
    if left:
        sys.exit(f"rank {rank}: Gloo threads still running after Trainer.close: {left}")


if __name__ == "__main__":
    main()
