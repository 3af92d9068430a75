"""What machine this is: the one place that names the processor, its features and the GPU.

Search tables, bench headers and saved EAS profiles all describe the hardware with
`describe()`, so a figure can always be traced to the machine that made it (a leaf module: it
imports nothing of ours; torch is imported only when a description or a card name is asked for).
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache
from typing import FrozenSet, Optional

CPUINFO = "/proc/cpuinfo"


def _cpuinfo_field(name: str) -> Optional[str]:
    try:
        with open(CPUINFO) as f:
            for line in f:
                if line.startswith(name):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


@lru_cache(maxsize=None)
def cpu_name() -> str:
    """The processor's model name, e.g. 'AMD EPYC' (the platform's word for it off Linux)."""
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


@lru_cache(maxsize=None)
def cpu_flags() -> FrozenSet[str]:
    """The CPU feature flags Linux reports (e.g. 'avx2', 'avx512_bf16', 'amx_tile'); empty when
    /proc/cpuinfo cannot be read."""
    return frozenset((_cpuinfo_field("flags") or "").split())


def has_native_bf16() -> bool:
    """True when the CPU computes in bfloat16 natively (AVX-512 BF16 or AMX); elsewhere torch
    emulates bfloat16 on the CPU, which is correct but slow."""
    flags = cpu_flags()
    return "avx512_bf16" in flags or "amx_bf16" in flags or "amx_tile" in flags


def cuda_name(device: str = "cuda") -> Optional[str]:
    """The CUDA card's name for `device` ('cuda', 'cuda:1'), None on CPU or without CUDA."""
    if not str(device).startswith("cuda"):
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_name(torch.device(device))


def describe(device: str = "cpu", threads: Optional[int] = None) -> str:
    """The machine in one line, e.g. 'AMD EPYC, 2 cores, 2 threads, torch 2.13.0+cpu, Python
    3.11.2'; on CUDA the card and the CUDA version come first. `threads`: torch's intra-op threads
    (default: what torch uses now)."""
    import torch

    if threads is None or threads <= 0:
        threads = torch.get_num_threads()
    card = cuda_name(device)
    gpu = f"{card}, CUDA {torch.version.cuda}; " if card else ""
    return (f"{gpu}{cpu_name()}, {os.cpu_count()} cores, {threads} threads, torch {torch.__version__}, "
            f"Python {platform.python_version()}")
