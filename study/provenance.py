"""Where a record was made: the package's version and git commit, the libraries and the machine.

Torch-free at import (the store and the report layer may import it); the
library versions are read when :func:`environment` is called.
"""
from __future__ import annotations

import functools
import os
import platform
import subprocess
from pathlib import Path


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The package's git commit (with ``+dirty`` when the tree has changes), or None outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "study"], cwd=root,
                               capture_output=True, text=True, timeout=10)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


@functools.lru_cache(maxsize=1)
def cpu_model() -> str | None:
    """The processor's model name (Linux: /proc/cpuinfo), or what the platform says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith(("model name", "Model", "cpu model")) and ":" in line:
                    return line.split(":", 1)[1].strip() or None
    except OSError:
        pass
    return platform.processor() or None


def environment(device: str) -> dict:
    """What a record needs to say about where it ran."""
    import numpy
    import torch

    from . import __version__

    try:  # its version without importing it (a quarter of a second a run that does not solve with it)
        from importlib.metadata import version

        tdq = version("torchdiffeq")
    except Exception:  # pragma: no cover - torchdiffeq is a core dependency
        tdq = None
    env = {
        "study": __version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchdiffeq": tdq,
        "numpy": numpy.__version__,
        "host": platform.node(),  # where its timings come from (a cluster's worker names itself)
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpu": cpu_model(),  # timings and the last bits of float results depend on it
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the vector kernels torch chose (AVX2, AVX512)
        "torch_threads": torch.get_num_threads(),
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
        env["cuda"] = torch.version.cuda
    return env
