"""The runtime's threads, set before each measurement from ``benchmarking.threads``: torch intra-op and
inter-op (inter-op only while torch still allows it), and OMP/MKL for child processes."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

#: Environment variables that size the thread pools of OpenMP, MKL and OpenBLAS in processes started later
#: (a running runtime has read them already: torch is set through its own calls).
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def set_thread_env(threads: int) -> None:
    for name in THREAD_ENV:
        os.environ[name] = str(threads)


def apply_torch_threads(threads: int) -> dict[str, Any]:
    """Set torch's intra-op threads (and inter-op threads, which torch allows only before its first parallel
    work); what torch runs with afterwards."""
    import torch

    set_thread_env(threads)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    if torch.get_num_interop_threads() != threads:
        with contextlib.suppress(RuntimeError):  # already started in this process: it stays, the run says so
            torch.set_num_interop_threads(threads)
    return torch_threads()


def torch_threads() -> dict[str, Any]:
    """What torch runs with, when torch is loaded in this process (else nothing)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return {}
    return {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()}
