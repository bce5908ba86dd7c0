"""Where and how a training process runs: the device, the process group under ``torchrun``
(NCCL on CUDA, Gloo on CPU), threads and determinism, and the CPU-time clock of budgets.

:class:`Runtime` changes torch's process-wide settings for the run and puts them back in
:meth:`Runtime.close`, so a run inside a notebook or a test leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import warnings

import torch
import torch.distributed as dist

from ..parallel import Group

__all__ = ["CpuClock", "Runtime", "StopSignals"]


class Runtime:
    """Rank, world size and device of this process (:class:`kxnet.parallel.Group`), and the
    torch settings of the run (threads, determinism), put back by :meth:`close`."""

    def __init__(self, device: str = "auto", threads: int = 0, deterministic: bool = False):
        self._restore = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
                         torch.is_deterministic_algorithms_warn_only_enabled(), torch.backends.cudnn.benchmark)
        try:
            self.group = Group(device)
        except ValueError as e:   # name the recipe's key
            raise ValueError(f"train.device={device}: {str(e).split(': ', 1)[-1]}") from None
        self.world_size, self.rank, self.device = self.group.world_size, self.group.rank, self.group.device
        self.is_main = self.group.is_main
        if threads:
            torch.set_num_threads(threads)
        if deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        elif self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

    def autocast_dtype(self, amp: str) -> torch.dtype | None:
        """The autocast dtype of ``train.amp`` on this device (None: float32). bf16 needs no
        gradient scaling and runs on CPUs too; fp16 is CUDA's only. ``auto`` is bf16 on a CPU
        with bf16 arithmetic (a step in about half the time at the same validation curve:
        docs/training.md, "bf16 on the CPU") and float32 everywhere else, CUDA included."""
        from ..hardware import cpu_has_bf16

        if amp == "auto":
            amp = "bf16" if self.device.type == "cpu" and cpu_has_bf16() else "none"
        if amp == "fp16" and self.device.type != "cuda":
            warnings.warn("train.amp=fp16 needs CUDA; training in float32 on the CPU (bf16 works on CPU)")
            return None
        return {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]

    def mean(self, values: list[torch.Tensor]) -> list[float]:
        """The mean over ranks of each scalar."""
        t = torch.stack([v.float().to(self.device) for v in values])
        if self.world_size > 1:
            dist.all_reduce(t)
            t /= self.world_size
        return t.tolist()

    def any(self, flag: bool) -> bool:
        """Whether any rank says ``flag`` (a stop asked of one process stops them all)."""
        if self.world_size == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def barrier(self) -> None:
        self.group.barrier()

    def close(self, wait: bool = True) -> None:
        """Leave the process group we joined (``wait``: after a last barrier, see
        :meth:`kxnet.parallel.Group.close`) and restore torch's global settings."""
        self.group.close(wait)
        threads, det, warn_only, bench = self._restore
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det, warn_only=warn_only)
        torch.backends.cudnn.benchmark = bench


class CpuClock:
    """CPU time spent training, over every segment of a run: this process's user + system time
    (all its threads) less the time spent validating. DataLoader workers are other processes
    and are not counted, so equal-budget runs use ``data.workers=0``."""

    def __init__(self, before: float = 0.0):
        self.before = before
        self.start()

    def start(self) -> None:
        """Count from now (setup — decoding, validation sets — is not training)."""
        self._start, self._excluded = time.process_time(), 0.0

    def seconds(self) -> float:
        return self.before + time.process_time() - self._start - self._excluded

    def exclude(self, seconds: float) -> None:
        self._excluded += seconds


class StopSignals:
    """Ctrl-C and SIGTERM ask for a stop after the current step (with a checkpoint); a second
    one aborts at once. ``requested`` says whether one came; ``say`` reports it."""

    def __init__(self, say):
        self.requested = False
        self._say = say

    def _handle(self, signum, _frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self._say(f"{signal.Signals(signum).name}: stopping after this step with a checkpoint "
                  "(send it again to abort without one)")

    @contextlib.contextmanager
    def installed(self):
        """Handle the signals inside the block (main thread only: Python allows nothing else)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)
