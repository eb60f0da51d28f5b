"""The training protocol: NFE counts, determinism, divergence, batched seeds, the record."""
import math

import pytest
import torch

from study.config import Protocol
from study.variants import variant_config

from tests.helpers import SMALL, strip, train


@pytest.mark.parametrize("variant,per_pass", [("euler", 20), ("rk4", 80), ("tdq-rk4", 80), ("resnet", 20)])
def test_nfe_counts_are_the_articles(variant, per_pass):
    # 1000 points, batch 128 -> 8 batches per epoch, as in the article (500 x 8 x 20 = 80,000 for Euler)
    (rec,) = train(variant_config(variant), Protocol(epochs=2, n_test=200, curve_test_points=100), [0])
    m = rec["metrics"]
    assert m["nfe_forward"] == 2 * 8 * per_pass
    assert rec["curves"]["nfe_forward"] == [8 * per_pass, 8 * per_pass]
    assert m["nfe_backward"] == 0
    assert m["nfe_eval"] == 3 * per_pass  # test curve at the last epoch, then final train and test accuracy
    assert m["params"] == (364_236 if variant == "resnet" else 18_906)


def test_adjoint_counts_backward_evaluations_apart():
    (rec,) = train(variant_config("adjoint-rk4", steps=5), Protocol(epochs=1, **SMALL), [0])
    m = rec["metrics"]
    assert m["nfe_forward"] == 2 * 5 * 4  # 256 points = 2 batches
    assert m["nfe_backward"] == 2 * 5 * 4  # one vjp of the dynamics per stage, per step, per batch
    (rec,) = train(variant_config("tdq-dopri5"), Protocol(epochs=1, **SMALL), [0])
    m = rec["metrics"]
    assert m["accepted_steps"] >= 2 and m["nfe_forward"] >= 6 * (m["accepted_steps"] + m["rejected_steps"])


def test_same_seed_same_record():
    a = train(variant_config("rk4", steps=4), Protocol(epochs=3, **SMALL), [5])[0]
    b = train(variant_config("rk4", steps=4), Protocol(epochs=3, **SMALL), [5])[0]
    assert strip(a) == strip(b)
    c = train(variant_config("rk4", steps=4), Protocol(epochs=3, **SMALL), [6])[0]
    assert a["metrics"]["final_loss"] != c["metrics"]["final_loss"]


@pytest.mark.parametrize("variant", ["euler", "resnet", "adjoint-euler"])
def test_batched_seeds_equal_seeds_trained_alone(variant):
    cfg = variant_config(variant, steps=5)
    together = train(cfg, Protocol(epochs=3, **SMALL), [0, 1, 2])
    for rec in together:
        (alone,) = train(cfg, Protocol(epochs=3, **SMALL), [rec["config"]["seed"]])
        assert rec["config"] == alone["config"]
        for key in ("loss", "train_acc", "test_acc"):
            assert rec["curves"][key] == pytest.approx(alone["curves"][key], abs=1e-5), key
        assert rec["metrics"]["nfe_forward"] == alone["metrics"]["nfe_forward"]
        assert rec["metrics"]["activation_bytes"] == alone["metrics"]["activation_bytes"]
        assert rec["timing"]["ensemble_members"] == 3 and rec["timing"]["ensemble_seeds"] == [0, 1, 2]


def test_non_finite_loss_is_a_diverged_record():
    (rec,) = train(variant_config("euler", steps=3, zero_init=False), Protocol(epochs=4, lr=1e30, **SMALL), [0])
    assert rec["status"] == "diverged"
    assert "non-finite" in rec["reason"]


def test_adaptive_step_cap_is_a_diverged_record_not_a_hang():
    (rec,) = train(variant_config("tdq-dopri5", max_num_steps=1, zero_init=False), Protocol(epochs=2, **SMALL), [0])
    assert rec["status"] == "diverged"
    assert "max_num_steps" in rec["reason"]


def test_record_contents():
    (rec,) = train(variant_config("euler", steps=2), Protocol(epochs=2, **SMALL), [0], extra_config={"variant": "euler"})
    assert rec["config"]["variant"] == "euler" and rec["config"]["epochs"] == 2 and rec["config"]["seed"] == 0
    assert rec["env"]["torch"] == torch.__version__ and rec["env"]["device"] == "cpu"
    m = rec["metrics"]
    for key in ("params", "train_acc", "test_acc", "final_loss", "nfe_forward", "nfe_backward", "nfe_eval",
                "wall_time_s", "activation_bytes"):
        assert key in m
    assert 0 <= m["test_acc"] <= 1 and math.isfinite(m["final_loss"])
    assert len(rec["curves"]["loss"]) == 2 and rec["curves"]["test_epoch"] == [1, 2]
    with pytest.raises(ValueError, match="one step-size controller per solve"):
        train(variant_config("tdq-dopri5"), Protocol(epochs=1), [0, 1])
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        train(variant_config("euler"), Protocol(epochs=0), [0])


def test_a_diverging_member_of_a_batch_records_what_it_would_alone(monkeypatch):
    from study.tasks.spiral import data

    make_split = data.make_split

    def poisoned(seed, *a, **k):  # seed 1's training set holds an infinite point: its loss is NaN at once
        sp = make_split(seed, *a, **k)
        if seed == 1:
            sp.x_train[7] = float("inf")
        return sp

    monkeypatch.setattr(data, "make_split", poisoned)
    cfg = variant_config("euler", steps=3)
    proto = Protocol(epochs=4, **SMALL)
    alone = {s: train(cfg, proto, [s])[0] for s in (0, 1)}
    together = {r["config"]["seed"]: r for r in train(cfg, proto, [0, 1])}
    assert alone[1]["status"] == together[1]["status"] == "diverged"
    assert alone[0]["status"] == together[0]["status"] == "ok"
    for s in (0, 1):
        a, b = alone[s], together[s]
        assert a["metrics"]["epochs_completed"] == b["metrics"]["epochs_completed"] == (1 if s else 4)
        assert a["metrics"]["nfe_forward"] == b["metrics"]["nfe_forward"]
        assert a["curves"]["test_epoch"] == b["curves"]["test_epoch"]
        assert a["curves"]["loss"] == pytest.approx(b["curves"]["loss"], abs=1e-5, nan_ok=True)
    assert math.isnan(together[1]["metrics"]["test_acc"]) and math.isnan(alone[1]["metrics"]["test_acc"])


def test_the_transfer_evaluation_leaves_training_bit_identical():
    """A training job of a transfer variant also solves its models with the transfer solvers (the job's transfer
    runs): the evaluation runs after training, so every other metric, curve and the status equal the run without
    it, which is why the solver list is no part of the training config."""
    from study.config import run_config
    from study.experiments import transfer_solvers
    from study.tasks.spiral import train as train_job

    base = run_config(variant_config("euler", steps=4), Protocol(epochs=2, **SMALL), 0, "cpu", {"variant": "euler"})
    configs = [{**base, "seed": s} for s in (0, 1)]
    plain, _ = train_job(configs)
    carried, _ = train_job(configs, transfer=transfer_solvers(4)[:3])
    for a, b in zip(plain, carried):
        assert "transfer" not in a["metrics"] and len(b["metrics"]["transfer"]) == 3
        b = {**b, "metrics": {k: v for k, v in b["metrics"].items() if k != "transfer"}}
        assert strip(a) == strip(b)


def test_a_training_job_writes_its_transfer_runs_and_a_transfer_only_job_trains_the_same_model():
    """The train runner's mixed job: training records without the rows, one valid transfer record per (seed,
    solver); a job of transfer runs alone (a solver added after training) trains the same members again and
    makes the same transfer records."""
    from study import records as R
    from study.config import run_config
    from study.experiments import Job, transfer_solvers
    from study.runners import train as runner

    base = run_config(variant_config("euler", steps=4), Protocol(epochs=2, **SMALL), 0, "cpu", {"variant": "euler"})
    base.pop("seed")
    job = Job("train", base, [0, 1], transfer=transfer_solvers(4)[:2])
    recs = runner.run(job.run_configs())
    assert [r["config"] for r in recs] == job.run_configs()
    for r in recs:
        R.validate(r)
        assert "transfer" not in r["metrics"]
    transfers = [r for r in recs if r["kind"] == "transfer"]
    assert len(transfers) == 4 and {t["metrics"]["solver"] for t in transfers} == {"euler-4", "midpoint-4"}
    own = {r["config"]["seed"]: r for r in recs if r["kind"] == "train"}
    for t in transfers:
        if t["metrics"]["solver"] == "euler-4":  # the training solver: the record's own accuracy
            assert t["metrics"]["test_acc"] == own[t["config"]["seed"]]["metrics"]["test_acc"]
    again = runner.run([c for c in job.run_configs() if c["kind"] == "transfer"])
    assert [strip_time(a) for a in again] == [strip_time(t) for t in transfers]


def strip_time(rec):
    return {k: v for k, v in rec.items() if k != "env"}
