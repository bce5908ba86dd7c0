"""Many processes, one job: the process group ``torchrun`` sets up, and how work is shared.

Under ``torchrun`` (one machine or several; ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` in the
environment) every process joins one group — NCCL on GPUs, Gloo on CPUs — and takes its own
device (``cuda:LOCAL_RANK``). Without it there is one process and nothing to join. Work is
shared by :func:`shard`: whole items (photos, videos, benchmark pairs) dealt to the least
loaded process, largest first, so the processes finish together; every process computes the
same deal, so no messages are needed to agree on it.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist

__all__ = ["Group", "shard"]


def shard(weights: list[float], world_size: int, rank: int) -> list[int]:
    """The indices of the items ``rank`` takes: longest-processing-time-first dealing of the
    items (by ``weights``, e.g. pixel counts) to ``world_size`` processes, in input order."""
    if world_size == 1:
        return list(range(len(weights)))
    loads = [0.0] * world_size
    owner = [0] * len(weights)
    for i in sorted(range(len(weights)), key=lambda i: (-weights[i], i)):
        r = min(range(world_size), key=lambda r: (loads[r], r))
        owner[i] = r
        loads[r] += weights[i]
    return [i for i, r in enumerate(owner) if r == rank]


class Group:
    """This process's place among the processes of a job (one, without ``torchrun``)."""

    def __init__(self, device: str | torch.device = "auto", timeout_minutes: int = 30):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0")) if self.world_size > 1 else 0
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0")) if self.world_size > 1 else 0
        want = str(device)
        if want == "auto":
            want = "cuda" if torch.cuda.is_available() else "cpu"
        if want.startswith("cuda"):
            if not torch.cuda.is_available():
                raise ValueError(f"device {device}: CUDA is not available here")
            index = self.local_rank if self.world_size > 1 or ":" not in want else int(want.split(":", 1)[1])
            self.device = torch.device("cuda", index)
            torch.cuda.set_device(self.device)
        elif want == "cpu":
            self.device = torch.device("cpu")
        else:
            raise ValueError(f"unknown device {device!r} (use auto, cpu or cuda)")
        self._owns = False
        if self.world_size > 1 and not dist.is_initialized():
            # torch.distributed.nn binds `group=group.WORLD` as its functions' defaults when first
            # imported, and DistributedDataParallel imports it (through torch._dynamo) on first
            # use. Imported after the group exists, it keeps the group alive past
            # destroy_process_group, and with it Gloo's worker and I/O threads, into interpreter
            # exit — where a rank aborted with "terminate called without an active exception"
            # (issue #39). Imported now, its defaults are None (the group of the moment).
            from torch.distributed import nn as _  # noqa: F401
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo",
                                    timeout=timedelta(minutes=timeout_minutes))
            self._owns = True
        self.is_main = self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def gather(self, obj) -> list | None:
        """Every process's ``obj`` on rank 0 (in rank order), None elsewhere; pickled, so keep
        it small (results, not images)."""
        if self.world_size == 1:
            return [obj]
        out = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every process."""
        if self.world_size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self, wait: bool = True) -> None:
        """Leave the group this object joined. ``wait``: after a last barrier (a process that
        tears Gloo down while a peer still talks to it can abort the peer); without it (this
        process failed, its peers may be inside another collective, which a barrier would hang
        on) at once, and torchrun stops the others. Anything holding the group (a
        DistributedDataParallel wrapper) must be let go first: Gloo's threads end only when the
        last reference does, and must not live on into interpreter exit."""
        if self._owns and dist.is_initialized():
            try:
                if wait:
                    dist.barrier()
            except RuntimeError:
                pass   # a peer already failed; torchrun reports that one
            finally:
                dist.destroy_process_group()
                self._owns = False

    def __enter__(self) -> "Group":
        return self

    def __exit__(self, exc_type, *_) -> None:
        self.close(wait=exc_type is None)
