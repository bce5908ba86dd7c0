"""Helper for tests/test_train.py: one training step under torchrun, gradients saved by rank 0.

Usage: python -m torch.distributed.run --nproc_per_node=2 tests/ddp_worker.py CONFIG OUT [key=value ...]
"""

import sys

import torch
import torch.distributed as dist

from kxnet.train import Trainer, load_config


def main() -> None:
    config, out, *overrides = sys.argv[1:]
    cfg = load_config(config, overrides)
    trainer = Trainer(cfg, progress=False)
    try:
        trainer.fit(stop_at=1)
        if trainer.rank == 0:
            grads = {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
            torch.save({"grads": grads, "history": trainer.history, "world_size": dist.get_world_size(),
                        "backend": dist.get_backend()}, out)
    finally:
        trainer.close()


if __name__ == "__main__":
    main()
