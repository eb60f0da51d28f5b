"""The one training loop (study.tasks.loop): curve points, each member's stop, a solver that raises, and the two
tasks' words for them, on a counter and steps written out by hand."""
from __future__ import annotations

import math

from study.engine.dynamics import Counter
from study.tasks import loop


def _run(losses_by_round, words, curve_every=2, raise_in=None, fail=None):
    """Run ``len(losses_by_round)`` rounds of 2 members; round ``fail[0]`` marks member ``fail[1]``'s own solve
    failed; round ``raise_in`` raises a solver failure."""
    counter, h, seen = Counter(), loop.History(2, ("loss", "extra", "nfe_forward", "nfe_backward", "accepted_steps",
                                                   "rejected_steps")), []
    rounds = iter(range(1, len(losses_by_round) + 1))

    def step():
        r = next(rounds)
        if r == raise_in:
            raise AssertionError("underflow in dt 0.0")
        counter.counts["forward"] += 3
        if fail and r == fail[0]:
            counter.failures[fail[1]] = "its step underflowed"
        return losses_by_round[r - 1]

    loop.run(h, counter, step, len(losses_by_round), curve_every, words, evaluate=lambda: {"extra": [1.0, 2.0]},
             on_stop=seen.append)
    return h, seen


def test_curve_points_hold_the_mean_loss_and_the_evaluations_since_the_last():
    h, _ = _run([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], loop.FLOWS)
    assert h.curves["iteration"] == [2, 3] and h.curves["loss"] == [[2.0, 3.0], [5.0, 6.0]]
    assert h.curves["nfe_forward"] == [[6, 6], [3, 3]] and h.curves["extra"] == [[1.0, 2.0]] * 2
    assert h.done == 3 and not h.diverged


def test_a_member_s_failure_stops_it_where_each_task_s_records_end():
    for words, stop in ((loop.FLOWS, 1), (loop.CLASSIFIERS, 2)):
        h, seen = _run([[1.0, 1.0], [1.0, math.nan], [1.0, 1.0]], words)
        assert h.diverged == {1: f"non-finite training loss in {words.unit} 2"} and h.stopped == {1: stop}
        assert seen == [1] and h.done == 3  # the other member trains on
        h, _ = _run([[1.0, 1.0]] * 3, words, fail=(3, 0))
        assert h.diverged == {0: f"solver failure in {words.unit} 3: its step underflowed"}


def test_a_solver_that_raises_stops_every_member_and_every_member_stopped_ends_the_loop():
    h, _ = _run([[1.0, 1.0]] * 4, loop.FLOWS, raise_in=3)
    assert h.diverged == {s: "solver failure in iteration 3: underflow in dt 0.0" for s in (0, 1)}
    assert h.stopped == {0: 2, 1: 2}
    h, _ = _run([[1.0, 1.0]] * 4, loop.CLASSIFIERS, raise_in=3)
    assert h.diverged[0] == "solver failure after epoch 2: underflow in dt 0.0"
    h, _ = _run([[math.nan, math.nan]] + [[1.0, 1.0]] * 3, loop.FLOWS, curve_every=1)
    assert h.done == 1 and h.curves["iteration"] == [1]  # nobody left to train


def test_a_loss_beyond_the_records_domain_stops_its_member_and_is_no_measurement():
    from study import records

    assert loop.LOSS_LIMIT == records.NLL_BOUND
    h, seen = _run([[1.0, 7.1e6], [1.0, 1.0]], loop.CLASSIFIERS, curve_every=1)
    assert h.diverged[1].startswith("training loss 7.1e+06 in epoch 1") and h.stopped == {1: 1} and seen == [1]
    assert h.curves["loss"][0][0] == 1.0 and math.isnan(h.curves["loss"][0][1])
