"""The task bench: its problem, its rows and their evaluation counts (no timing is asserted)."""
import pytest
import torch

from study import records, tasks
from study.experiments import taskbench_config
from study.runners import taskbench


@pytest.mark.parametrize("task", ["spiral", "dynamics", "density", "digits"])
def test_the_problem_is_the_task_s_float32_flow_with_no_zero_weight(task):
    if task == "digits":
        pytest.importorskip("sklearn")
    p = taskbench.problem(task)
    assert p.y0.dtype == torch.float32 and p.y0.shape[-1] == tasks.get(task).BENCH_BATCH
    assert all(w is None or (w.dtype == torch.float32 and w.abs().sum() > 0) for w in p.raw)
    f = p.field.forward(p.y0, p.t0, p.field.fold(p.raw))[0]
    assert f.shape == p.y0.shape and f.abs().sum() > 0


def test_a_task_bench_record_has_every_row_with_counts_that_match_the_methods():
    config = taskbench_config("dynamics", rounds=1)
    rec = taskbench.record(config)
    records.validate(rec)
    rows = rec["metrics"]["rows"]
    assert {(r["solver"], r["mode"]) for r in rows} == (
        {(n, "train") for n, *_ in taskbench.ROWS}
        | {(n, "forward") for n, b, *_ in taskbench.ROWS if b in ("hand", "torchdiffeq")})
    by = {(r["solver"], r["mode"]): r for r in rows}
    assert by["hand-euler", "forward"]["nfe_per_call"] == by["tdq-euler", "forward"]["nfe_per_call"] == 20
    assert by["hand-rk4-38", "train"]["nfe_per_call"] == 80
    assert by["hand-dopri5", "forward"]["nfe_per_call"] == by["tdq-dopri5", "forward"]["nfe_per_call"]
    assert by["hand-adjoint-dopri5", "train"]["nfe_per_call"] > by["hand-dopri5", "train"]["nfe_per_call"]
    for r in rows:
        assert r["median_us"] > 0 and r["floor_us"] > 0
        assert (r["ratio_to_tdq"] is None) == r["solver"].startswith("tdq")
