"""The task benches' table and numbers: per task, each hand row's time per evaluation against torchdiffeq's and
against the kernel floor of the task's field (training: forward and backward; ``study bench --task``)."""
from __future__ import annotations

from ... import tasks
from ...config import DIRECT_BACKENDS
from ..numbers import Numbers
from ..results import MissingRuns, View
from .common import _solver_macro, _table

BENCHED = tuple(t for t in tasks.TASKS if not getattr(tasks.get(t), "STIFF", False))  # a stiff task has none
EXPERIMENTS = tuple(tasks.experiment(t, "task-bench") for t in BENCHED)
SHOWN = ("hand-euler", "hand-rk4-38", "hand-dopri5", "hand-adjoint-dopri5", "checkpoint-dopri5")
TASK_MACROS = {"spiral": "Spiral", "dynamics": "Dynamics", "density": "Density", "digits": "Digits"}


def taskbench_numbers(view: View, N: Numbers) -> str:
    rows = []
    worst = {"tdq": 0.0, "floor": 0.0}
    for task, name in zip(BENCHED, EXPERIMENTS):
        recs = view.records_of(name, "taskbench")
        if not recs:
            raise MissingRuns(name)
        m = recs[0]["metrics"]
        t = TASK_MACROS.get(task, task.title())
        N.add(f"Tb{t}FloorTrainUs", m["kernel_floor_us"]["train"], "{:.0f}")
        N.add(f"Tb{t}Batch", m["batch"], "{:d}")
        for r in m["rows"]:
            key = f"Tb{t}{_solver_macro(r['backend'], r['method'])}{r['mode'].title()}"
            N.add(key + "Us", r["median_us"], "{:.0f}")
            N.add(key + "Floor", r["ratio_to_floor"], "{:.2f}")
            if r["ratio_to_tdq"] is not None:
                N.add(key + "VsTdq", r["ratio_to_tdq"], "{:.2f}")
        train = {r["solver"]: r for r in m["rows"] if r["mode"] == "train"}
        for s in ("hand-dopri5", "hand-adjoint-dopri5"):
            worst["tdq"] = max(worst["tdq"], train[s]["ratio_to_tdq"])
        for s in ("hand-euler", "hand-rk4-38"):
            worst["floor"] = max(worst["floor"], train[s]["ratio_to_floor"])
        N.add(f"Tb{t}WorstAdaptiveVsTdq", max(train[s]["ratio_to_tdq"] for s in ("hand-dopri5", "hand-adjoint-dopri5")),
              "{:.2f}")
        cells = []
        for s in SHOWN:
            r = train[s]
            vs = "--" if r["ratio_to_tdq"] is None else f"{r['ratio_to_tdq']:.2f}"
            # the adjoints' evaluations mix forward evaluations with backward ones (augmented, or recomputed before
            # a VJP): a floor of forward + VJP per evaluation does not describe them
            floor = f"; {r['ratio_to_floor']:.1f}" if r["backend"] in DIRECT_BACKENDS else ""
            cells.append(f"{r['median_us']:.0f} ({vs}{floor})")
        rows.append([task, str(m["batch"]), f"{m['kernel_floor_us']['train']:.0f}"] + cells)
    N.add("TbWorstAdaptiveVsTdq", worst["tdq"], "{:.2f}")
    N.add("TbWorstFixedVsFloor", worst["floor"], "{:.2f}")
    return _table("l r r l l l l l", ["task", "batch", "floor", "Euler", "RK4 3/8", "dopri5", "dopri5 adjoint",
                                      "dopri5 checkpointed"], rows,
                  "Task benches, training: us per evaluation (ratio to torchdiffeq's counterpart; for direct "
                  "backpropagation, ratio to the kernel floor of forward + VJP).")
