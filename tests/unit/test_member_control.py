"""Per-member step control (several seeds of an adaptive variant batched): each member is solved as if alone."""
import math

import pytest
import torch

from study.engine import stepper
from study.engine.solvers import EMBEDDED

RATES = (1.0, 3.0, 0.3)


def _rhs(rates):
    r = torch.tensor(rates, dtype=torch.float64).view(-1, 1, 1)

    def F(t, s):
        return (torch.cos(t.view(-1, 1, 1)) * s[0] * r,)

    return F


def test_each_member_takes_the_steps_it_takes_alone_and_meets_the_tolerance():
    """y' = r cos(t) y with a different rate per member: counts equal those of the scalar solver run on each
    member alone, and each solution is as accurate as the tolerance asks."""
    pair, ctl = EMBEDDED["dopri5"], stepper.Control(1e-6, 1e-6)
    y0 = torch.rand(3, 2, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) + 0.5
    trace = stepper.MemberTrace(3)
    (y1,) = stepper.adaptive_members(_rhs(RATES), pair, (y0,), 0.0, 2.0, ctl, trace=trace)
    for k, rate in enumerate(RATES):
        alone, calls = stepper.Trace(), []

        def F(t, s, rate=rate):
            calls.append(t)
            return (math.cos(t) * s[0] * rate,)

        stepper.adaptive(F, pair, (y0[k : k + 1],), 0.0, 2.0, ctl, trace=alone)
        assert (int(trace.accepted[k]), int(trace.rejected[k])) == (len(alone.steps), alone.rejected)
        exact = y0[k] * math.exp(rate * math.sin(2.0))
        assert float((y1[k] - exact).abs().max() / exact.abs().max()) < 2e-5
        # NFE counted per member: the evaluations the scalar solver makes alone (2 to start, 6 per attempt)
        assert int(trace.evaluations[k]) == len(calls) == 2 + 6 * (len(alone.steps) + alone.rejected)
    assert not trace.failures


def test_a_failing_member_stops_alone():
    pair, ctl = EMBEDDED["dopri5"], stepper.Control(1e-6, 1e-6, max_num_steps=30)
    y0 = torch.ones(3, 1, 1, dtype=torch.float64)
    trace = stepper.MemberTrace(3)
    (y1,) = stepper.adaptive_members(_rhs((1.0, 400.0, 0.5)), pair, (y0,), 0.0, 2.0, ctl, trace=trace)
    assert list(trace.failures) == [1] and "max_num_steps exceeded" in trace.failures[1]
    assert torch.isnan(y1[1]).all() and torch.isfinite(y1[[0, 2]]).all()
    assert abs(float(y1[0, 0, 0]) - math.exp(math.sin(2.0))) < 1e-4


@pytest.mark.parametrize("variant", ["hand-dopri5", "hand-adjoint-dopri5"])
def test_a_batched_member_is_the_same_whatever_its_neighbours(variant):
    """The record of seed 0 trained beside seeds 1, 2 equals seed 0 trained beside seeds 5, 6, bit for bit; its
    NFE and step counts are its own (equal to those of seed 0 trained alone)."""
    from study.config import Protocol, run_config
    from study.runners import train as train_runner
    from study.variants import variant_config

    torch.set_num_threads(1)
    base = run_config(variant_config(variant), Protocol(epochs=2, n_test=500), 0, "cpu", {"variant": variant})
    a = train_runner.run([{**base, "seed": s} for s in (0, 1, 2)])
    b = train_runner.run([{**base, "seed": s} for s in (0, 5, 6)])
    alone = train_runner.run([{**base, "seed": 0}])
    strip = lambda r: r["metrics"] | {"wall_time_s": 0}  # noqa: E731
    assert strip(a[0]) == strip(b[0]) and a[0]["curves"] == b[0]["curves"]
    assert a[0]["timing"]["ensemble_seeds"] == [0, 1, 2]
    for key in ("nfe_forward", "nfe_backward", "accepted_steps", "rejected_steps", "nfe_eval"):
        assert a[0]["metrics"][key] == alone[0]["metrics"][key], key
    assert a[1]["metrics"]["nfe_forward"] != a[0]["metrics"]["nfe_forward"]  # members differ: their own counts


def test_seeds_of_a_checkpointed_or_torchdiffeq_adaptive_variant_are_not_batched():
    from study.config import Protocol
    from study.tasks.classification import fit
    from study.variants import variant_config

    for v in ("checkpoint-dopri5", "tdq-dopri5"):
        assert not variant_config(v).batches_seeds
        with pytest.raises(ValueError, match="one step-size controller per solve"):
            fit(variant_config(v), Protocol(epochs=1), [0, 1])
    assert variant_config("hand-dopri5").batches_seeds and variant_config("euler").batches_seeds
