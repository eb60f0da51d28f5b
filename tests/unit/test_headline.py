"""The practitioner's table on a small synthetic store: each cell follows its rule."""
import math

import pytest

from study import records
from study.config import Protocol, run_config
from study.report.numbers import Numbers
from study.report.results import View
from study.report.tables import headline
from study.store import config_hash
from study.variants import variant_config


def _record(variant, seed, acc, wall, status="ok", losses=(0.7, 0.3), transfer=None):
    config = run_config(variant_config(variant), Protocol(), seed, "cpu", {"variant": variant})
    metrics = {"params": 1, "train_acc": acc, "test_acc": acc, "nfe_forward": 1000, "nfe_backward": 0,
               "wall_time_s": wall, "activation_bytes": 2**20, "epochs_completed": 10}
    if transfer is not None:
        metrics["transfer"] = transfer
    curves = {"epoch": list(range(1, len(losses) + 1)), "loss": list(losses)}
    return records.make(config, metrics, {}, status, "solver failure in epoch 3: underflow in dt" if status != "ok"
                        else None, curves=curves)


SOLVERS = {"euler-20": {"method": "euler", "steps": 20}, "dopri5-1e-08-f64": {"method": "dopri5", "tol": 1e-8,
                                                                            "dtype": "float64"}}


def _transfer_records(rec):
    """The transfer records of a training record given ``metrics.transfer`` rows (which it then loses)."""
    from study.experiments import transfer_config

    train = {k: v for k, v in rec["config"].items() if k != "seed"}
    rows = rec["metrics"].pop("transfer", None) or []
    return [records.make(transfer_config(train, rec["config"]["seed"], [rec["config"]["seed"]], SOLVERS[row["solver"]]),
                         {**row, "trained_status": rec["status"]}, {}) for row in rows]


def _view(recs):
    from study.experiments import build

    recs = recs + [t for r in recs for t in _transfer_records(r)]
    by_hash = {config_hash(r["config"]): r for r in recs}
    train = {h for h, r in by_hash.items() if r["kind"] == "train"}
    return View(by_hash, [], {**{n: set() for n in build("quick")}, "main": train, "transfer": set(by_hash)})


def test_best_use_avoid_and_ode_follow_their_rules():
    tr = lambda own, ref: [{"solver": "euler-20", "test_acc": own, "nfe": 20},  # noqa: E731
                           {"solver": "dopri5-1e-08-f64", "test_acc": ref, "nfe": 90}]
    recs = []
    for s, acc in enumerate((0.860, 0.862, 0.858)):  # euler: as good as the best, the cheapest
        recs.append(_record("euler", s, acc, 10.0, transfer=tr(acc, acc - 0.001)))
    for s, acc in enumerate((0.865, 0.866, 0.864)):  # rk4: the best, dearer
        recs.append(_record("rk4", s, acc, 40.0))
    for s, acc in enumerate((0.70, 0.86, 0.86)):  # midpoint-like cheap variant, far below
        recs.append(_record("rk4-38", s, acc, 5.0))
    recs.append(_record("hand-dopri5", 0, 0.86, 60.0))
    recs.append(_record("hand-dopri5", 1, math.nan, 60.0, status="diverged"))
    recs.append(_record("hand-dopri5", 2, 0.86, 60.0, losses=(0.7, 0.2, 0.9)))  # a spike: failed by the rule
    recs.append(_record("no-flow", 0, 0.99, 1.0))  # a control, never a method
    view = _view(recs)
    stats = headline.variant_stats("spiral", view.runs("main"))
    assert "no-flow" not in set(stats["variant"])
    c = headline.choose("spiral", stats)
    assert c["best"]["variant"] == "rk4"
    # rk4's interval: 86.5 +- 0.25 (t 4.30 x 0.1 / sqrt 3); euler (86.0) lies outside it, so rk4 is also "use"
    assert c["use"]["variant"] == "rk4"
    assert c["avoid"]["variant"] == "hand-dopri5" and c["why"].startswith("2 of 3 seeds failed")
    assert c["why"].endswith("(solver failure in epoch 3; 1 ended in a loss spike)")
    N = Numbers()
    row = headline.headline_row(view, "spiral", N)
    assert row[0] == "spiral" and "RK4 (hand)" in row[2] and "RK4 (hand): 86.5" in row[3]
    assert N.items["HlSpiralAvoid"] == "dopri5 (hand)" and N.items["HlSpiralOde"] == "--"  # rk4 has no transfer rows


def test_a_wide_best_interval_admits_the_cheaper_method_and_transfer_says_ode():
    tr = lambda own, ref: [{"solver": "euler-20", "test_acc": own, "nfe": 20},  # noqa: E731
                           {"solver": "dopri5-1e-08-f64", "test_acc": ref, "nfe": 90}]
    recs = [_record("euler", s, acc, 10.0, transfer=tr(acc, acc)) for s, acc in enumerate((0.85, 0.86, 0.87))]
    recs += [_record("rk4", s, acc, 40.0) for s, acc in enumerate((0.84, 0.87, 0.90))]
    view = _view(recs)
    c = headline.choose("spiral", headline.variant_stats("spiral", view.runs("main")))
    assert c["best"]["variant"] == "rk4" and c["use"]["variant"] == "euler"
    assert c["avoid"] is None and c["why"].startswith("none")  # euler's interval reaches rk4's: nothing to avoid
    kind, own, ref = headline.solver_or_ode("spiral", "euler", view.transfer("transfer"), c["half"])
    assert kind == "ODE" and own == ref == 86.0
    # a model that loses more than the interval under the reference solve learned its solver
    bad = view.transfer("transfer").assign(value=lambda d: d["value"].where(d["solver"] == "euler-20", 0.5))
    assert headline.solver_or_ode("spiral", "euler", bad, c["half"])[0] == "solver"


def test_cross_task_claims_follow_their_rules_on_a_synthetic_store():
    from study.report.tables import cross_claims as X

    recs = [_record("euler", s, acc, 10.0) for s, acc in enumerate((0.85, 0.86, 0.87))]
    recs += [_record("rk4", s, acc, 40.0) for s, acc in enumerate((0.90, 0.91, 0.92))]
    recs += [_record("no-flow", s, acc, 1.0) for s, acc in enumerate((0.855, 0.86, 0.865))]
    runs = _view(recs).runs("main")
    assert X._beats("spiral", runs, "rk4", "euler") == (X.HOLDS, "91.0 vs 86.0")
    assert X._beats("spiral", runs, "euler", "no-flow")[0] == X.FAILS  # overlapping intervals: no contribution shown
    curves = lambda per_it: __import__("pandas").DataFrame(  # noqa: E731 - one run, 10 iterations per point
        {"hash": "h", "iteration": [10, 20, 30], "nfe_forward": [10 * x for x in per_it]})
    assert X._nfe_ratio(curves([14, 30, 44]))[2] == pytest.approx(44 / 14)


def test_ode_cell_falls_back_to_a_transferred_variant_and_names_it():
    tr = lambda own, ref: [{"solver": "euler-20", "test_acc": own, "nfe": 20},  # noqa: E731
                           {"solver": "dopri5-1e-08-f64", "test_acc": ref, "nfe": 90}]
    recs = [_record("euler", s, acc, 10.0, transfer=tr(acc, acc - 0.2)) for s, acc in enumerate((0.85, 0.86, 0.87))]
    recs += [_record("tdq-euler", s, acc, 5.0) for s, acc in enumerate((0.85, 0.86, 0.87))]  # cheapest, untransferred
    N = Numbers()
    row = headline.headline_row(_view(recs), "spiral", N)
    assert "Euler (tdq)" in row[3]  # the recommendation stays the cheapest
    assert row[5].startswith("solver (Euler (hand): 86.0 own, 66.0 ref.") and N.items["HlSpiralOde"] == "solver"


def test_a_loss_spike_fails_a_run_only_where_the_metric_is_an_accuracy():
    import pandas as pd

    d = pd.DataFrame({"status": ["ok", "ok"], "loss_last": [0.9, 2.9], "loss_min": [0.3, 2.8]})
    assert list(headline._failed("spiral", d)) == [True, False]
    assert list(headline._failed("density", d)) == [False, False]  # an NLL near its floor: a ratio means nothing


def test_scratch_hours_share_training_and_count_the_timed_runs_whole():
    recs = [_record("euler", s, 0.86, 3600.0) for s in range(2)]  # two worker-hours of training
    view = _view(recs)
    view.execution_log = [{"job_seconds": {"train": 7200.0, "adjoint": 3600.0, "timing": 1800.0},
                           "exclusive_seconds": 1800.0}]
    hours, train, other, alone = view.scratch_hours(2)
    assert (train, other, alone) == (7200.0, 5400.0, 1800.0)
    assert hours == pytest.approx(((7200 + 3600) / 2 + 1800) / 3600)  # 2 h: the timed half hour runs alone


def test_euler_is_an_ode_when_the_reference_solve_keeps_its_metric():
    from study.report.tables import cross_claims as X

    tr = lambda own, ref: [{"solver": "euler-20", "test_acc": own, "nfe": 20},  # noqa: E731
                           {"solver": "dopri5-1e-08-f64", "test_acc": ref, "nfe": 90}]
    keeps = [_record("euler", s, a, 10.0, transfer=tr(a, a - 0.002)) for s, a in enumerate((0.85, 0.86, 0.87))]
    view = _view(keeps)
    assert X._euler_is_ode(view, "spiral", view.runs("main")) == (X.HOLDS, "86.0 own solver, 85.8 reference")
    loses = [_record("euler", s, a, 10.0, transfer=tr(a, a - 0.1)) for s, a in enumerate((0.85, 0.86, 0.87))]
    view = _view(loses)
    assert X._euler_is_ode(view, "spiral", view.runs("main"))[0] == X.FAILS
    assert X._euler_is_ode(_view(loses[:0] + [_record("euler", 0, 0.86, 10.0)]), "spiral",
                           _view([_record("euler", 0, 0.86, 10.0)]).runs("main"))[0] == X.NA


def test_a_logged_rerun_supersedes_what_earlier_invocations_spent_on_the_same_experiment():
    from study.report.results import View

    recs = {"a": {"kind": "timing"}, "b": {"kind": "timing"}, "c": {"kind": "adjoint"}}
    view = View(recs, [], {"timing": {"a"}, "timing-x": {"b"}, "adjoint": {"c"}})
    view.execution_log = [
        {"experiments": None, "job_seconds": {"timing": 50.0, "adjoint": 300.0}},  # old: per kind only
        {"experiments": ["timing"], "job_seconds": {"timing": 40.0}},  # old: a rerun of one experiment
        {"experiments": ["timing", "timing-x"], "job_seconds": {"timing": 30.0},
         "experiment_seconds": {"timing": {"timing": 20.0}, "timing-x": {"timing": 10.0}}, "alone_kinds": ["timing"]},
    ]
    # the last entry covers every timing experiment: the older timing seconds were reruns; the adjoint's stay
    assert view.job_seconds() == {"timing": 30.0, "adjoint": 300.0}
    view.execution_log[2]["experiment_seconds"].pop("timing-x")  # timing-x not rerun: the entry that ran it counts,
    assert view.job_seconds()["timing"] == 20.0 + 50.0  # the rerun of timing alone (40 s) does not
    assert view.alone_kinds() == {"timing"}


def test_a_separated_worst_variant_is_named_with_those_alike():
    recs = [_record("rk4", s, a, 40.0) for s, a in enumerate((0.90, 0.91, 0.92))]
    recs += [_record("euler", s, a, 10.0) for s, a in enumerate((0.70, 0.71, 0.72))]
    recs += [_record("tdq-euler", s, a, 10.0) for s, a in enumerate((0.705, 0.71, 0.715))]
    c = headline.choose("spiral", headline.variant_stats("spiral", _view(recs).runs("main")))
    assert c["avoid"]["variant"] == "euler"
    assert c["why"] == "the worst metric (1 more alike: Euler (tdq))"
