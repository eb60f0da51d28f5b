"""Task digits: the split, the controls, training on the spiral's engine."""
import numpy as np
import pytest

pytest.importorskip("sklearn")

from study import records  # noqa: E402
from study.experiments import TASK_SPEC  # noqa: E402
from study.tasks import digits as D  # noqa: E402


def test_the_split_is_stratified_fixed_and_standardised_on_the_training_part_alone():
    from sklearn.datasets import load_digits

    xtr, ytr, xte, yte = D.split()
    P = D.Protocol()
    assert (len(xtr), len(xte)) == (P.n_train, P.n_test) == (1347, 450)
    assert np.allclose(xtr.mean(0), 0, atol=1e-5)
    live = xtr.std(0) > 0
    assert np.allclose(xtr.std(0)[live], 1, atol=1e-4)
    assert not np.allclose(xte.mean(0), 0, atol=1e-3)  # the held-out part is scaled by the training statistics
    counts_tr, counts_te = np.bincount(ytr, minlength=10), np.bincount(yte, minlength=10)
    full = np.bincount(load_digits().target, minlength=10)
    assert np.all(np.abs(counts_te - full * 0.25) <= 1)  # stratified
    assert (counts_tr + counts_te == full).all()
    again = D.split.__wrapped__(0.25, 0)
    assert all(np.array_equal(a, b) for a, b in zip(again, (xtr, ytr, xte, yte)))
    other = D.split.__wrapped__(0.25, 1)
    assert not np.array_equal(other[1], ytr)


def test_the_controls_are_what_they_say():
    assert TASK_SPEC["full"]["digits"]["controls"] == [["no-flow", {"head": "mlp", "head_hidden": D.matched_head_hidden()}]]
    ode = D.model_config("euler").param_count()
    mlp = D.model_config("no-flow", {"head": "mlp", "head_hidden": D.matched_head_hidden()}).param_count()
    assert abs(mlp - ode) <= (D.WIDTH + 1 + D.CLASSES) / 2  # the nearest width
    acc, se = D.reference_value()
    assert 0.9 < acc < 1 and 0 < se < 0.02


def test_a_digits_run_trains_on_the_hand_engine_and_makes_a_valid_record():
    cfg = D.model_config("rk4", {"steps": 4})
    P = D.Protocol(epochs=3, eval_every=1)
    rc = [D.run_config("rk4", cfg, P, s) for s in (0, 1)]
    recs, model = D.train(rc, transfer=[{"method": "euler", "steps": 4}])
    for rec, c in zip(recs, rc):
        records.validate(rec)
        assert rec["config"] == c and rec["status"] == "ok"
        assert rec["metrics"]["test_acc"] > 0.5  # ten classes: chance is 0.1
        assert rec["metrics"]["params"] == cfg.param_count()
        assert rec["metrics"]["transfer"][0]["solver"] == "euler-4"
    alone, _ = D.train(rc[1:])
    assert alone[0]["metrics"]["test_acc"] == pytest.approx(recs[1]["metrics"]["test_acc"], abs=1e-6)


def test_bad_digits_protocols_are_refused():
    for bad in ({"test_fraction": 0.9}, {"test_fraction": 0}, {"split_seed": -1}, {"epochs": 0}):
        with pytest.raises(ValueError):
            D.Protocol(**bad).validate()
