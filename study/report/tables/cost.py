"""Cost: the memory table (saved-tensor bytes against steps), the bench table and README's bench and
training-cost tables, and the solvers' convergence slopes."""
from __future__ import annotations

import re

from ...config import solver_method
from ..numbers import Numbers, spell
from ..reported import ARTICLE
from ..results import MissingRuns, View
from .common import _num, _table


def memory_numbers(view: View, N: Numbers) -> str:
    mem = view.runs("memory")
    if mem.empty:
        raise MissingRuns("memory")
    piv = mem.pivot_table(index="steps", columns="solver", values="activation_bytes")
    for s in piv.columns:
        name = "Mem" + re.sub(r"[^A-Za-z]", "", s.title().replace("4", "four").replace("5", "five"))
        for n in piv.index:
            if n in (20, 160, 5):
                N.add(f"{name}{spell(n)}KiB", piv.loc[n, s] / 1024, "{:,.0f}")
    if 20 in piv.index:
        N.add("MemRatioRKfourEuler", piv.loc[20, "hand-rk4"] / piv.loc[20, "hand-euler"], "{:.2f}")
        N.add("MemRatioResNetEuler", piv.loc[20, "resnet"] / piv.loc[20, "hand-euler"], "{:.2f}")
        N.add("MemRatioArticleRKfourEuler", ARTICLE["rk4"]["memory_kb"] / ARTICLE["euler"]["memory_kb"], "{:.1f}")
        N.add("MemRatioArticleResNetEuler", ARTICLE["resnet"]["memory_kb"] / ARTICLE["euler"]["memory_kb"], "{:.2f}")
    lo, hi = piv.index.min(), piv.index.max()
    N.add("MemStepsLo", lo, "{:d}")
    N.add("MemStepsHi", hi, "{:d}")
    N.add("MemGrowthDirect", piv.loc[hi, "hand-euler"] / piv.loc[lo, "hand-euler"], "{:.1f}")
    N.add("MemGrowthAdjoint", piv.loc[hi, "adjoint-euler"] / piv.loc[lo, "adjoint-euler"], "{:.2f}")
    N.add("MemAdjointVsDirectHi", piv.loc[hi, "hand-euler"] / piv.loc[hi, "adjoint-euler"], "{:.0f}")
    cols = [c for c in ["hand-euler", "hand-rk4", "resnet", "tdq-euler", "adjoint-euler", "adjoint-rk4", "adjoint-dopri5"] if c in piv]
    rows = [[str(n)] + [_num(piv.loc[n, c] / 1024) for c in cols] for n in piv.index]
    return _table("r" + "r" * len(cols), ["$N$"] + [c.replace("-", "\\mbox{-}") for c in cols], rows,
                  "Saved-tensor KiB of one training step at batch 128.")


def bench_numbers(view: View, N: Numbers) -> str:
    b = view.bench()
    if b.empty:
        raise MissingRuns("bench")
    rows = []
    for r in b.to_dict("records"):
        if r["mode"] == "train":  # the table shows training steps; numbers.tex has both modes
            rows.append([r["solver"].replace("-", "\\mbox{-}"), r.get("per") or "step", f"{r['median_us']:.0f}",
                         f"{r['spread_us']:.0f}", f"{r['ratio_to_bare']:.2f}", r.get("reference") or "",
                         f"{r['floor_us']:.0f}", _kernels(r)])
        words = re.sub(r"[^A-Za-z]", " ", r["solver"].replace("x5", "five").replace("rk4", "rkfour")).split()
        name = "Bench" + "".join(p.title() for p in words) + r["mode"].title()
        N.add(name + "Ratio", r["ratio_to_bare"], "{:.2f}")
        N.add(name + "Us", r["median_us"], "{:.0f}")
        N.add(name + "Floor", r["median_us"] / r["floor_us"], "{:.2f}")
        if _has_kernel_floor(r):
            N.add(name + "Kernels", r["median_us"] / r["kernel_floor_us"], "{:.2f}")
    train = b[b["mode"] == "train"].set_index("solver")["median_us"]
    if {"hand-euler", "hand-rk4"} <= set(train.index):  # a training step's ratio, interleaved in one process
        N.add("BenchRkfourOverEulerTrain", train["hand-rk4"] / train["hand-euler"], "{:.1f}")
    N.add("MatmulGflops", b["matmul_gflops_128"].iloc[0], "{:.0f}")
    if "suite" in b:
        N.add("BenchSuite", int(b["suite"].iloc[0]), "{:d}")
    for row in rows:
        row[5] = row[5].replace("-", "\\mbox{-}")
    return _table("llrrrlrr", ["solver", "per", "\\si{\\micro\\second}", "spread", "ratio", "vs", "floor", "kernels"],
                  rows, "Bench, training steps: per solver step or per NFE, medians over interleaved rounds.")


def _has_kernel_floor(row: dict) -> bool:
    v = row.get("kernel_floor_us")
    return v is not None and v == v  # absent from records before suite 6 (NaN in the frame)


def _kernels(row: dict) -> str:
    """A row's time over its kernel floor (the bench's kernel_floor: what its kernels take at their own sizes)."""
    return f"{row['median_us'] / row['kernel_floor_us']:.2f}" if _has_kernel_floor(row) else ""


def bench_markdown(view: View) -> str:
    """The bench record's rows as README's markdown table (both modes)."""
    b = view.bench()
    if b.empty:
        return "(no bench record: `study run-all --experiments bench`)"
    lines = ["| solver | mode | per | median us | spread | ratio | vs | floor us | kernels |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in b.to_dict("records"):
        lines.append(f"| {r['solver']} | {r['mode']} | {r.get('per') or 'step'} | {r['median_us']:.0f} | "
                     f"{r['spread_us']:.0f} | {r['ratio_to_bare']:.2f} | {r.get('reference') or ''} | {r['floor_us']:.0f} | "
                     f"{_kernels(r)} |")
    return "\n".join(lines) + "\n"


def cost_markdown(view: View) -> str:
    """README's training-cost tables: per experiment (each run counted in the first experiment that plans it), and
    per variant of ``main`` (what one seed costs)."""
    df = view.costs(shared="first")
    if df.empty:
        return "(no training records)"
    lines = ["| experiment | training runs | worker-minutes | costliest variants (worker-minutes) |", "|---|---|---|---|"]
    for name, part in df.groupby("experiment", sort=False):
        top = part.sort_values("worker_seconds", ascending=False).head(3)
        costly = "" if name == "all" else ", ".join(f"{v} {w / 60:.0f}" for v, w in zip(top.variant, top.worker_seconds))
        label = "all (each run once)" if name == "all" else name
        lines.append(f"| {label} | {part.runs.sum()} | {part.worker_seconds.sum() / 60:.0f} | {costly} |")
    other = sorted(view.job_seconds(exclude="train").items(), key=lambda kv: -kv[1])
    if other:
        lines += ["", "Runs that do not train (job seconds summed over the `run-all` log, reruns included): "
                  + ", ".join(f"{kind} {sec / 60:.1f}" for kind, sec in other) + " worker-minutes."]
    main = view.costs(shared="each")
    main = main[main.experiment == "main"].sort_values("per_run", ascending=False)
    lines += ["", "| `main` variant | seeds | trained as | seconds per seed (median) | diverged |", "|---|---|---|---|---|"]
    for r in main.itertuples(index=False):
        how = f"{r.members} seeds batched" if r.members > 1 else "one job per seed"
        lines.append(f"| {r.variant} | {r.runs} | {how} | {r.per_run:.0f} | {r.diverged} |")
    return "\n".join(lines) + "\n"


def convergence_numbers(view: View, N: Numbers) -> None:
    for s, d in view.convergence().groupby("solver"):
        backend, method = solver_method(s)
        N.add(f"Slope{'Hand' if backend == 'hand' else 'Tdq'}{method.macro}", d["slope"].iloc[0], "{:.2f}")
