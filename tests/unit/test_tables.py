"""Generated numbers and tables on small synthetic stores: the values numbers.tex gets, the bench's ratios."""
import math

import pandas as pd
import pytest

from study import records
from study.config import Protocol, run_config
from study.report import tables
from study.report.numbers import Numbers, spell
from study.report.results import View
from study.store import config_hash
from study.variants import variant_config


def train_record(variant, seed, test_acc, train_acc, status="ok", nfe=80_000):
    config = run_config(variant_config(variant), Protocol(), seed, "cpu", {"variant": variant})
    metrics = {"params": variant_config(variant).param_count(), "train_acc": train_acc, "test_acc": test_acc,
               "nfe_forward": nfe, "nfe_backward": 0, "wall_time_s": 10.0, "activation_bytes": 2048}
    return records.make(config, metrics, {}, status)


def view_of(experiment: str, recs: list[dict]) -> View:
    from study.experiments import build

    by_hash = {config_hash(r["config"]): r for r in recs}
    return View(by_hash, [], {**{name: set() for name in build("quick")}, experiment: set(by_hash)})


def test_main_numbers_are_means_and_sample_sds_over_the_ok_seeds():
    recs = [train_record("euler", s, acc, acc + 0.02) for s, acc in enumerate((0.86, 0.88, 0.84))]
    recs.append(train_record("euler", 3, float("nan"), float("nan"), status="diverged"))
    N = Numbers()
    tex = tables.main_numbers(view_of("main", recs), N)
    assert N.items["EulerTestAcc"] == "86.0" and N.items["EulerTestAccSd"] == "2.0"  # sd of 84, 86, 88
    assert N.items["EulerTrainAcc"] == "88.0" and N.items["EulerSeeds"] == "4" and N.items["EulerDiverged"] == "1"
    assert N.items["EulerNfeFwd"] == "80{,}000" and N.items["EulerActKiB"] == "2"
    assert "Euler (hand) & 18{,}906 & $88.0 \\pm 2.0$ & $86.0 \\pm 2.0$$^{1\\dagger}$" in tex


def test_a_one_seed_cell_shows_no_spread():
    N = Numbers()
    tables.main_numbers(view_of("main", [train_record("rk4", 0, 0.8, 0.9, nfe=320_000)]), N)
    assert N.items["RKfourTestAcc"] == "80.0" and N.items["RKfourTestAccSd"] == "n/a"


def test_bench_numbers_and_ratios():
    from study.runners.bench import add_ratios_and_floors, step_flops

    rows = [{"solver": s, "mode": "train", "method": m, "median_us": us}
            for s, m, us in (("bare-euler", "euler", 500.0), ("hand-euler", "euler", 250.0),
                             ("bare-rk4", "rk4", 2000.0), ("tdq-rk4", "rk4", 1700.0))]
    rows += [{"solver": s, "mode": "train", "method": "dopri5", "median_us": us, "per": "nfe", "reference": "tdq-dopri5"}
             for s, us in (("tdq-dopri5", 800.0), ("hand-dopri5", 400.0))]
    rows = add_ratios_and_floors(rows, batch=128, gflops=100.0, kernels={"forward": 40.0, "train": 100.0})
    # the kernel floor is per evaluation: an RK4 step has four, a row timed per NFE one
    assert [r["kernel_floor_us"] for r in rows] == [100.0, 100.0, 400.0, 400.0, 100.0, 100.0]
    ratio = {r["solver"]: r["ratio_to_bare"] for r in rows}
    assert ratio == {"bare-euler": 1.0, "hand-euler": 0.5, "bare-rk4": 1.0, "tdq-rk4": 0.85, "tdq-dopri5": 1.0,
                     "hand-dopri5": 0.5}
    assert rows[-1]["floor_us"] == pytest.approx(rows[1]["floor_us"])  # per evaluation: one Euler step's floor
    # floor: 3 x 2 x 128 x (7 x 128 + 128 x 128 + 128 x 6) multiply-adds per train step, at 100 GFLOP/s
    euler_floor = 3 * 2 * 128 * (7 * 128 + 128 * 128 + 128 * 6) / 100e9 * 1e6
    assert rows[1]["floor_us"] == pytest.approx(euler_floor) and rows[3]["floor_us"] == pytest.approx(4 * euler_floor)
    assert step_flops(128, stages=4, mode="forward") * 3 == step_flops(128, stages=4, mode="train")
    rows = rows[:4]
    for r in rows:
        r.update(spread_us=1.0)
    bench = records.make({"kind": "bench", "steps": 20}, {"rows": rows, "matmul_gflops_128": 100.0}, {})
    N = Numbers()
    tex = tables.bench_numbers(view_of("bench", [bench]), N)
    assert N.items["BenchHandEulerTrainRatio"] == "0.50" and N.items["BenchTdqRkfourTrainUs"] == "1700"
    assert N.items["MatmulGflops"] == "100" and "hand\\mbox{-}euler & step & 250 & 1 & 0.50 & " in tex
    assert N.items["BenchHandEulerTrainKernels"] == "2.50" and N.items["BenchTdqRkfourTrainKernels"] == "4.25"


def test_numbers_tex_format():
    N = Numbers()
    N.add("Pi", math.pi, "{:.2f}")
    N.add("Missing", float("nan"))
    with pytest.raises(ValueError, match="letters only"):
        N.add("Bad1", 1.0)
    assert N.tex().splitlines()[1:] == ["\\newcommand{\\Missing}{n/a}", "\\newcommand{\\Pi}{3.14}"]
    assert spell(160) == "OneSixty" and spell(7) is None


def test_costs_share_a_batched_jobs_time_among_its_seeds_and_count_shared_runs_once_in_all():
    """Hand count: a 5-seed batched job of 100 s costs 20 worker-seconds a run; a run alone costs its own wall
    time; a run two experiments share counts in each of them and once in ``all``."""
    def rec(variant, seed, timing, status="ok", wall=None):
        r = {"kind": "train", "status": status, "config": {"variant": variant, "seed": seed, "lr": 0.01},
             "metrics": {"wall_time_s": wall}, "timing": timing, "env": {}}
        return r
    batched = [rec("euler", s, {"ensemble_members": 5, "ensemble_wall_time_s": 100.0}, wall=20.0) for s in range(5)]
    alone = [rec("tdq-dopri5", s, {"ensemble_members": 1, "ensemble_wall_time_s": w}, status=st)
             for s, (w, st) in enumerate([(30.0, "ok"), (50.0, "diverged")])]
    by_hash = {f"h{i}": r for i, r in enumerate(batched + alone)}
    view = View(by_hash, [], {"main": set(by_hash), "learning-rate": {"h0", "h1", "h5"}})
    c = view.costs().set_index(["experiment", "variant"])
    assert c.loc[("main", "euler"), ["runs", "members", "worker_seconds", "per_run"]].tolist() == [5, 5, 100.0, 20.0]
    assert c.loc[("main", "tdq-dopri5"), ["runs", "diverged", "worker_seconds", "per_run"]].tolist() == [2, 1, 80.0, 40.0]
    assert c.loc[("learning-rate", "euler"), "worker_seconds"] == 40.0
    assert c.loc[("learning-rate", "tdq-dopri5"), "worker_seconds"] == 30.0
    assert c.xs("all", level="experiment").worker_seconds.sum() == 180.0  # each run once
    assert list(c.index.get_level_values(0).unique()) == ["main", "learning-rate", "all"]
    first = view.costs(shared="first")
    assert first[first.experiment != "all"].worker_seconds.sum() == 180.0 and "learning-rate" not in set(first.experiment)


def test_isolated_steps_are_ratios_to_the_reference_on_one_scale():
    """Hand count: two jobs timed while the machine ran at different speeds; each alternated with the reference
    step, so their ratios (2 and 4) survive, and both land on the reference's median (10 ms) scale."""
    from study.report.tables import isolated_step_seconds

    timing = pd.DataFrame([
        {"variant": "euler", "step_time_s": 0.010, "ratio_to_reference": 1.0, "reference_step_time_s": 0.010},
        {"variant": "rk4", "step_time_s": 0.030, "ratio_to_reference": 4.0, "reference_step_time_s": 0.0075},  # fast
        {"variant": "resnet", "step_time_s": 0.040, "ratio_to_reference": 2.0, "reference_step_time_s": 0.020},  # slow
    ])
    assert isolated_step_seconds(timing) == pytest.approx({"euler": 0.010, "rk4": 0.040, "resnet": 0.020})
    old = timing.drop(columns=["ratio_to_reference", "reference_step_time_s"])  # records without a reference
    assert isolated_step_seconds(old) == {"euler": 0.010, "rk4": 0.030, "resnet": 0.040}


def test_runs_that_do_not_train_cost_their_logged_job_seconds_summed_over_invocations():
    log = [{"job_seconds": {"train": 500.0, "adjoint": 60.0, "timing": 2.0}}, {"seconds": 3.0},
           {"job_seconds": {"adjoint": 30.0, "timing": 6.0}}]
    assert View({}, [], {}, log).job_seconds(exclude="train") == {"adjoint": 90.0, "timing": 8.0}
    assert View({}, [], {}, log).job_seconds()["train"] == 500.0 and View({}).job_seconds() == {}
