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


def time_alternating(fn, reference, device, warmup: int, repeats: int, on_warm=None) -> tuple[list[float], list[float]]:
    """Seconds per call of ``fn`` and of ``reference`` (None: ``fn`` alone), the two called in turn: ``warmup``
    rounds, then ``on_warm()`` (e.g. a counter reset), then ``repeats`` timed rounds.  Drift of the machine hits
    both alike, so their per-round ratios (:func:`reference_ratio`) compare across jobs run at different times."""
    for _ in range(warmup):
        fn()
        if reference is not None:
            reference()
    if on_warm is not None:
        on_warm()
    times, ref_times = [], []
    for _ in range(repeats):
        times += time_repeated(fn, device, warmup=0, repeats=1)
        if reference is not None:
            ref_times += time_repeated(reference, device, warmup=0, repeats=1)
    return times, ref_times


def reference_ratio(times: list[float], ref_times: list[float], key: str = "") -> dict:
    """``reference_step_time_s`` and ``ratio_to_reference`` (medians; ``key`` suffixes the names) of alternating
    samples, or nothing without a reference."""
    if not ref_times:
        return {}
    return {f"reference_step_time_s{key}": median_spread(ref_times)[0],
            f"ratio_to_reference{key}": median_spread([a / b for a, b in zip(times, ref_times)])[0]}
