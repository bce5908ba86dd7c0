"""What the machine offers: the CPU's model and the instruction sets the fast paths depend on.

bf16 pays on a CPU only where it has bf16 arithmetic (AVX-512 BF16, AMX); elsewhere PyTorch and
OpenVINO emulate it, slower than float32. So choices of precision read the CPU's flags here
(Linux ``/proc/cpuinfo``; other systems report none, and the float32 paths are kept).

``KXNET_HIDE_CPU_FLAGS`` (flags separated by commas or spaces; ``bf16`` stands for every bf16
flag, ``amx`` for every AMX flag) makes a CPU look as if it lacked them, so the fallbacks that
laptops without bf16 take can be run and tested on any machine. OpenVINO is then asked for
float32 too (:mod:`kxnet.inference.openvino`), as it compiles on such a CPU.
"""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

__all__ = ["BF16_FLAGS", "HIDE_ENV", "cpu_flags", "cpu_has_bf16", "cpu_name", "hidden_flags"]

BF16_FLAGS = ("avx512_bf16", "amx_bf16")
AMX_FLAGS = ("amx_bf16", "amx_int8", "amx_tile", "amx_fp16", "amx_complex")
HIDE_ENV = "KXNET_HIDE_CPU_FLAGS"
_ALIASES = {"bf16": BF16_FLAGS, "amx": AMX_FLAGS}


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ""


def hidden_flags() -> frozenset[str]:
    """The flags ``$KXNET_HIDE_CPU_FLAGS`` hides (read at every call, so tests can set it)."""
    names = os.environ.get(HIDE_ENV, "").replace(",", " ").split()
    return frozenset(flag for name in names for flag in _ALIASES.get(name.lower(), (name.lower(),)))


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags, less the hidden ones (empty where the system does not say)."""
    for line in _cpuinfo().splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split()) - hidden_flags()
    return frozenset()


def cpu_has_bf16() -> bool:
    """Whether the CPU computes in bf16 natively (AVX-512 BF16 or AMX)."""
    return any(f in cpu_flags() for f in BF16_FLAGS)


def cpu_name() -> str:
    """The CPU's model name and its bf16/AMX flags, for reports: ``AMD EPYC (avx512_bf16)``."""
    name = next((line.split(":", 1)[1].strip() for line in _cpuinfo().splitlines() if line.startswith("model name")),
                platform.processor() or platform.machine())
    extra = [f for f in ("avx512_bf16", "amx_bf16", "amx_int8") if f in cpu_flags()]
    return f"{name} ({', '.join(extra)})" if extra else name
