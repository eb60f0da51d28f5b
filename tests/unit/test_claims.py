"""Each claim's rule on small synthetic tables: holds, partly, does not hold, and missing evidence."""
import numpy as np
import pandas as pd
import pytest

from study.report.claims import CLAIMS, Evidence

CLAIM = {c.name: c for c in CLAIMS}
BAYES = 87.6


def runs(variant, test, train=None, **cols):
    """Rows of one variant's ok runs with the given accuracies (%)."""
    train = test if train is None else train
    return [{"variant": variant, "status": "ok", "test_acc": te / 100, "train_acc": tr / 100, "seed": i, **cols}
            for i, (te, tr) in enumerate(zip(test, train))]


def main_table(euler=(86, 86.5, 86.2), rk4=(86.1, 86.3, 86.4), resnet=(84.5, 84.7, 84.6),
               train=None, params=(18_906, 364_236)):
    train = train or {"euler": (89.2, 89.4, 89.0), "rk4": (90.9, 90.5, 91.0), "resnet": (93.0, 92.8, 93.1)}
    rows = (runs("euler", euler, train["euler"], params=params[0], nfe_forward=80_000)
            + runs("rk4", rk4, train["rk4"], params=params[0], nfe_forward=320_000)
            + runs("resnet", resnet, train["resnet"], params=params[1], nfe_forward=80_000))
    return pd.DataFrame(rows)


def verdict(name, bayes=BAYES, gradients=None, **tables):
    ev = Evidence({k: pd.DataFrame(v) if isinstance(v, list) else v for k, v in tables.items()}, bayes,
                  gradients if gradients is not None else pd.DataFrame())
    return CLAIM[name].judge(ev)


def test_accuracies_against_the_bayes_ceiling_and_our_training_accuracies():
    assert verdict("accuracies", main=main_table()).verdict == "partly"  # above Bayes, equal to our training acc.
    low = {"euler": (80, 80, 80), "rk4": (80, 80, 80), "resnet": (80, 80, 80)}
    assert verdict("accuracies", main=main_table(train=low)).verdict == "does not hold"
    assert verdict("accuracies", bayes=99.0, main=main_table()).verdict == "holds"


def test_parameters_are_counted_exactly():
    assert verdict("parameters", main=main_table()).verdict == "holds"
    assert verdict("parameters", main=main_table(params=(18_907, 364_236))).verdict == "does not hold"


def test_rk4_cost_needs_four_times_the_nfe_and_a_time_ratio_near_the_articles():
    bench = lambda r: [{"solver": "hand-euler", "mode": "train", "median_us": 100.0},  # noqa: E731
                       {"solver": "hand-rk4", "mode": "train", "median_us": 100.0 * r},
                       {"solver": "hand-rk4", "mode": "forward", "median_us": 1.0}]  # forward rows are not read
    assert verdict("rk4-cost", main=main_table(), bench=bench(3.9)).verdict == "holds"
    assert verdict("rk4-cost", main=main_table(), bench=bench(2.0)).verdict == "partly"
    assert verdict("rk4-cost", main=main_table()).verdict == "cannot tell"  # no bench: NFE alone cannot tell
    isolated = [{"variant": "euler", "status": "ok", "step_time_s": 1.0}, {"variant": "rk4", "status": "ok", "step_time_s": 3.9}]
    assert verdict("rk4-cost", main=main_table(), timing=isolated).verdict == "cannot tell"  # sequential times: not read


def steps_table(euler_minus_rk4: float):
    rows = []
    for ne, nr in ((80, 20), (20, 5), (40, 10)):
        rows += runs("euler", [86 + euler_minus_rk4] * 3, steps=ne) + runs("rk4", [86] * 3, steps=nr)
    return rows


def test_euler_per_flop_and_at_equal_nfe():
    same = main_table()  # RK4 within a point of Euler: Euler wins per FLOP
    assert verdict("euler-per-flop", main=same, steps=steps_table(2.0)).verdict == "holds"
    assert verdict("euler-per-flop", main=same, steps=steps_table(0.0)).verdict == "partly"
    rk4_better = main_table(euler=(80, 80.5, 80.2))
    assert verdict("euler-per-flop", main=rk4_better, steps=steps_table(-2.0)).verdict == "does not hold"
    missing = verdict("euler-per-flop", main=same)
    assert missing.verdict == "cannot tell" and "Needs the steps experiment" in missing.evidence


def memory_table(rk4_ratio, resnet_ratio, adjoint_growth=1.0):
    rows = []
    for n in (5, 20, 160):
        e = 1000.0 * n
        for solver, b in (("hand-euler", e), ("hand-rk4", rk4_ratio * e), ("resnet", resnet_ratio * e),
                          ("tdq-euler", e), ("adjoint-euler", 100.0 * adjoint_growth ** (n / 160))):
            rows.append({"steps": n, "solver": solver, "activation_bytes": b, "step_time_s": 0.01})
    return rows


def test_memory_ratios():
    assert verdict("memory", memory=memory_table(2.6, 0.5)).verdict == "holds"
    assert verdict("memory", memory=memory_table(4.0, 0.5)).verdict == "partly"
    assert verdict("memory", memory=memory_table(4.0, 1.0)).verdict == "does not hold"
    assert verdict("memory").verdict == "cannot tell"


def test_adjoint_memory_is_constant_while_direct_grows():
    assert verdict("adjoint", memory=memory_table(4, 1)).verdict == "holds"
    assert verdict("adjoint", memory=memory_table(4, 1, adjoint_growth=2.0)).verdict == "partly"


def ablations(l2, l6=(86.0, 86.2, 86.1), random_init=(86.0, 86.1, 86.2), diverged=0):
    rows = runs("euler", l2, lift_dim=2, time_input=True, zero_init=True)
    rows += runs("euler", l6, lift_dim=6, time_input=True, zero_init=True)
    rows += runs("euler", random_init, lift_dim=6, time_input=True, zero_init=False)
    rows += [{"variant": "euler", "status": "diverged", "test_acc": np.nan, "train_acc": np.nan, "lift_dim": 6,
              "time_input": True, "zero_init": False}] * diverged
    return rows


def test_lifting_is_refuted_by_a_planar_flow_that_separates():
    assert verdict("lifting", ablations=ablations([70, 71, 72])).verdict == "holds"
    assert verdict("lifting", ablations=ablations([85.8, 86.0, 85.9])).verdict == "does not hold"
    assert verdict("lifting", ablations=ablations([75, 70, 85.5])).verdict == "partly"  # one seed separates


def test_zero_initialisation_has_two_parts_accuracy_and_blow_up():
    both = ablations([80] * 3, random_init=(80, 80, 80), diverged=1)
    assert verdict("zero-init", ablations=both).verdict == "holds"
    assert verdict("zero-init", ablations=ablations([80] * 3, random_init=(80, 80, 80))).verdict == "partly"
    assert verdict("zero-init", ablations=ablations([80] * 3, diverged=1)).verdict == "partly"
    assert verdict("zero-init", ablations=ablations([80] * 3, random_init=(84, 84.1, 84.2))).verdict == "does not hold"


SAME_TRAIN = {"euler": (89.2, 89.4, 89.0), "rk4": (90.9, 90.5, 91.0), "resnet": (89.1, 89.5, 89.2)}


@pytest.mark.parametrize("resnet,train,expected", [((84.5, 84.7, 84.6), None, "partly"),  # training half only
                                                   ((84.5, 84.7, 84.6), SAME_TRAIN, "does not hold"),
                                                   ((90.0, 90.1, 90.2), None, "holds"),
                                                   ((80.0, 94.0, 86.0), SAME_TRAIN, "cannot tell")])
def test_resnet_advantage_has_a_training_and_a_held_out_half(resnet, train, expected):
    assert verdict("resnet-advantage", main=main_table(resnet=resnet, train=train)).verdict == expected


def with_losses(rows, last=0.3, low=0.3):
    return [{**r, "loss_last": last, "loss_min": low} for r in rows]


def test_rk4_gain_needs_a_significant_gain_and_counts_failures():
    gain = pd.DataFrame(with_losses(main_table(rk4=(87.6, 87.8, 87.7)).to_dict("records")))
    assert verdict("rk4-gain", main=gain).verdict == "holds"
    none = pd.DataFrame(with_losses(main_table().to_dict("records")))
    found = verdict("rk4-gain", main=none)
    assert found.verdict == "does not hold" and "Euler 0/3, RK4 0/3" in found.ours
    spiked = pd.DataFrame(with_losses(main_table().to_dict("records"), last=0.5))
    assert "RK4 3/3" in verdict("rk4-gain", main=spiked).ours


def test_rk4_low_steps_advantage():
    def sweep(diffs):
        rows = []
        for n, d in diffs.items():
            rows += runs("euler", [80] * 3, steps=n) + runs("rk4", [80 + d] * 3, steps=n)
        return rows

    assert verdict("rk4-low-steps", steps=sweep({2: 5.0, 5: 1.0, 10: 0.0})).verdict == "holds"
    assert verdict("rk4-low-steps", steps=sweep({2: 2.0, 5: 3.0})).verdict == "partly"
    assert verdict("rk4-low-steps", steps=sweep({2: 0.0, 5: -1.0})).verdict == "does not hold"


def controls(y0, yT, model):
    return [{"variant": "euler", "head": "mlp", "lift_dim": 6, "status": "ok", "test_acc": model / 100,
             "probe.y0_test": y0 / 100, "probe.yT_test": yT / 100, "seed": i} for i in range(3)]


def test_separable_reads_the_probe_on_y_T_against_y_0_and_the_model():
    assert verdict("separable", controls=controls(60, 86.0, 86.5)).verdict == "holds"
    assert verdict("separable", controls=controls(60, 80.0, 86.5)).verdict == "partly"
    assert verdict("separable", controls=controls(60, 62.0, 86.5)).verdict == "does not hold"


def test_resnet_within_three_points():
    assert verdict("resnet-within", main=main_table()).verdict == "holds"
    assert verdict("resnet-within", main=main_table(resnet=(90, 90, 90))).verdict == "does not hold"


def adjoint_rows(err):
    return pd.DataFrame([{"train_variant": "euler", "epoch": 500, "what": "reconstruction", "dtype": "float32",
                          "recon_rel": err}, {"train_variant": "euler", "epoch": 500, "what": "singular_values",
                                              "dtype": "float64", "sv_min_median": 0.01}])


def test_invertibility_in_practice():
    ev = lambda err: Evidence({}, BAYES, adjoint=adjoint_rows(err))  # noqa: E731
    assert CLAIM["invertible"].judge(ev(1e-4)).verdict == "holds"
    assert CLAIM["invertible"].judge(ev(0.3)).verdict == "partly"
    assert CLAIM["invertible"].judge(Evidence({}, BAYES)).verdict == "cannot tell"


def test_verdicts_at_another_learning_rate_read_the_arm_and_say_what_was_not_rerun():
    arm = pd.DataFrame(with_losses(main_table(rk4=(87.6, 87.8, 87.7)).to_dict("records")))
    arm["lr"] = 0.003
    ev = Evidence({"main": main_table(), "learning-rate": arm, "memory": pd.DataFrame(memory_table(2.6, 0.5)),
                   "steps": pd.DataFrame(steps_table(2.0))}, BAYES)
    stable = ev.at_learning_rate(0.003)
    assert CLAIM["rk4-gain"].judge(stable).verdict == "holds"
    assert CLAIM["memory"].judge(stable).verdict == "same"  # no training: the same measurement
    assert CLAIM["euler-per-flop"].judge(stable).verdict == "not rerun"  # the steps sweep was not rerun


def test_the_stable_learning_rate_is_the_largest_without_failures():
    from study.report.claims import stable_learning_rate

    def cell(lr, last):
        return [{"lr": lr, "method": "euler", "status": "ok", "loss_last": last, "loss_min": 0.3}] * 3

    arm = pd.DataFrame(cell(0.01, 0.6) + cell(0.003, 0.3) + cell(0.001, 0.3))
    assert stable_learning_rate(arm) == 0.003
    assert stable_learning_rate(pd.DataFrame(cell(0.01, 0.3) + cell(0.001, 0.3))) == 0.01


def test_every_claim_has_words_and_named_thresholds():
    assert len({c.name for c in CLAIMS}) == len(CLAIMS)
    for c in CLAIMS:
        assert c.article and all(isinstance(k, str) for k in c.thresholds)
