"""Measurements that do not depend on training: saved-tensor bytes, environment, timing helpers."""
from __future__ import annotations

import functools
import os
import platform
import statistics
import subprocess
import time
import weakref
from pathlib import Path

import torch
import torch.nn.functional as F


def loss_fn(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Sum over ensemble members of each member's mean cross-entropy.

    Members are independent, so the gradient of this sum with respect to
    member ``s``'s weights is exactly that member's own gradient.
    """
    s, b, c = logits.shape
    return F.cross_entropy(logits.reshape(s * b, c), y.reshape(s * b), reduction="none").view(s, b).mean(1).sum()


def activation_bytes(model, x: torch.Tensor, y: torch.Tensor) -> int:
    """Bytes of the tensors autograd saves for backward in one training step.

    Counted exactly with ``saved_tensors_hooks`` during the forward pass: the
    bytes of each saved tensor the finished graph still holds, one count per
    storage however many ops save it.  Parameters, views of them and the
    weights the dynamics prepares from them once per solve are excluded: they
    are model state, not activations.
    Then the step's backward is run to release the graph.  For ``odeint_adjoint`` this is what
    the forward keeps; its backward re-solves the ODE and holds one solver
    step's graph at a time.
    """
    from .models import Dynamics

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    # Weights prepared from the parameters (scaled, transposed copies); held until the end so
    # that their addresses cannot be reused by activations.
    derived: list[torch.Tensor] = []
    dynamics = [m for m in model.modules() if isinstance(m, Dynamics)]
    for m in dynamics:
        m.track_derived = derived
    saved: list = []

    def pack(t: torch.Tensor):
        saved.append(weakref.ref(t))
        return t

    model.zero_grad(set_to_none=True)
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = loss_fn(model(x), y)
    finally:
        for m in dynamics:
            m.track_derived = None
    params |= {d.untyped_storage().data_ptr() for d in derived}
    # Only what the finished graph still holds: graphs of discarded work (dopri5's rejected
    # steps) are freed already, and their addresses may have been reused.
    seen: dict[int, int] = {}  # storage -> bytes of the largest live tensor saved from it
    for ref in saved:
        t = ref()
        if t is None:
            continue
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            seen[ptr] = max(seen.get(ptr, 0), t.numel() * t.element_size())
    del saved, derived
    loss.backward()
    model.zero_grad(set_to_none=True)
    return int(sum(seen.values()))


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


def environment(device: str) -> dict:
    """What a record needs to say about where it ran."""
    from . import __version__

    try:
        import torchdiffeq

        tdq = torchdiffeq.__version__
    except Exception:  # pragma: no cover - torchdiffeq is a core dependency
        tdq = None
    env = {
        "study": __version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchdiffeq": tdq,
        "numpy": __import__("numpy").__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
        env["cuda"] = torch.version.cuda
    return env


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def median_spread(samples: list[float]) -> tuple[float, float]:
    """Median and the half-width of the interquartile range."""
    if len(samples) < 2:
        return samples[0], 0.0
    q = statistics.quantiles(samples, n=4)
    return statistics.median(samples), (q[2] - q[0]) / 2


def time_repeated(fn, device, warmup: int = 3, repeats: int = 15) -> list[float]:
    """Seconds per call of ``fn``, ``repeats`` times after ``warmup`` calls, synchronised on CUDA."""
    for _ in range(warmup):
        fn()
    sync(device)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        out.append(time.perf_counter() - t0)
    return out
