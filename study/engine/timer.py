"""Timing helpers: CUDA-synchronised wall time, medians with their spread."""
from __future__ import annotations

import statistics
import time

import torch


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
