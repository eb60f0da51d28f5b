"""The experiment registry and the executor's plan: shared runs, seeds, cost estimates, job descriptions."""
from study import executor, store
from study import tasks
from study.experiments import applicable, build, plan
from study.tasks import spiral as train_runner


def test_plan_shares_runs_between_experiments():
    jobs = plan("full")
    euler20 = [j for j in jobs if j.kind == "train" and j.config["variant"] == "euler" and j.config["steps"] == 20
               and j.config["lift_dim"] == 6 and j.config["time_input"] and j.config["zero_init"]
               and j.config["lr"] == 0.01 and "head" not in j.config and not j.config.get("probe")
               and "task" not in j.config]
    assert len(euler20) == 1
    assert euler20[0].seeds == [0, 1, 2, 3, 4]
    # main's model carries the transfer evaluation (as the job's transfer runs, outside the training config):
    # one trained model serves five experiments
    assert "transfer" not in euler20[0].config and len(euler20[0].transfer) == 7
    assert len(euler20[0].run_configs()) == 5 * 8
    assert set(euler20[0].experiments) == {"main", "steps", "ablations", "learning-rate", "transfer"}
    configs = [store.config_hash(c) for j in jobs for c in j.run_configs()]
    assert len(configs) == len(set(configs))  # no run planned twice
    full = build("full")
    from study.variants import VARIANTS

    # every variant 5 seeds, but the dopri5 continuous adjoints (3 each) and the seminorm's (cut on the spiral)
    assert sum(len(j.seeds) for j in full["main"]) == 5 * (len(applicable("spiral")) - 3) + 3 + 3
    assert "adjoint-dopri5-seminorm" not in {j.config["variant"] for j in full["main"]}
    # fixed-step seeds train as one batched job, adaptive ones alone (batched, they would wait for the slowest)
    by_variant = {}
    for j in full["main"]:
        by_variant.setdefault(j.config["variant"], []).append(j.seeds)
    assert by_variant["euler"] == by_variant["hand-adjoint-rk4"] == [[0, 1, 2, 3, 4]]
    for v in ("hand-dopri5", "tdq-dopri5", "checkpoint-dopri5"):
        assert by_variant[v] == [[s] for s in range(5)], v
    assert by_variant["hand-adjoint-dopri5"] == by_variant["adjoint-dopri5"] == [[s] for s in range(3)]
    assert {j.config["epochs"] for j in full["main"]} == {500}


def test_cost_of_a_training_job_is_its_dynamics_evaluations():
    """One evaluation at batch 128 is the unit: 500 epochs x 8 batches x 20 Euler steps = the article's 80,000."""
    jobs = {(j.config["variant"], len(j.seeds)): j for j in build("full")["main"]}
    cost = {k: executor.estimated_cost(j) for k, j in jobs.items()}
    assert cost[("euler", 5)] == 80_000 * 0.6 * 5  # five batched seeds cost 3 seeds' worth
    assert cost[("rk4", 5)] == 4 * cost[("euler", 5)]
    assert cost[("adjoint-euler", 5)] == 2 * cost[("euler", 5)]
    assert cost[("hand-adjoint-euler", 5)] == cost[("checkpoint-euler", 5)] == cost[("adjoint-euler", 5)]
    assert cost[("tdq-dopri5", 1)] == 500 * 8 * train_runner.ADAPTIVE_NFE_PER_SOLVE
    assert cost[("adjoint-dopri5", 1)] == 2 * cost[("tdq-dopri5", 1)]
    traj = next(j for j in build("full")["trajectories"] if j.config["variant"] == "rk4")
    assert executor.estimated_cost(traj) == 500 * 8 * 80  # a training run of its variant, one seed


def test_jobs_that_time_things_run_alone():
    kinds = {j.kind: executor.alone(j) for j in plan("quick")}
    assert kinds == {"train": False, "convergence": False, "gradients": False, "adjoint": False, "trajectories": False,
                     "memory": True, "timing": True, "bench": True, "workprecision": True, "taskbench": True}


def test_a_job_describes_what_differs_from_its_variant():
    jobs = plan("full", ["steps"])
    lines = {j.describe() for j in jobs}
    assert "train euler steps=80 seeds 0,1,2" in lines and "train rk4 seeds 0,1,2" in lines


def test_diagnostics_name_the_engines_they_run(monkeypatch):
    """The adjoint and gradient diagnostics' configs name the engines of the variants they run (so a change to
    another engine leaves their records current): every model they build uses one of those engines."""
    from study.engine import models
    from study.runners import adjoint, gradients

    used = []
    init = models.Classifier.__init__

    def recording_init(self, cfg, *args, **kwargs):
        used.append(cfg.engine)
        init(self, cfg, *args, **kwargs)

    monkeypatch.setattr(models.Classifier, "__init__", recording_init)
    quick = build("quick")
    for runner, job in [(adjoint, j) for j in quick["adjoint"]] + [(gradients, quick["gradients"][0])]:
        used.clear()
        (config,) = job.run_configs()
        runner.measure(config)
        assert used and set(used) <= set(config["engines"].split(",")), (job.kind, set(used), config["engines"])


def test_a_new_solver_adds_transfer_runs_and_renames_none(monkeypatch):
    """Heun's method in the method table: every planned run keeps its name; the only new runs are the transfer
    runs of the new solver (its own variant, not registered here, would add its training runs)."""
    from study import config, experiments

    before = {store.config_hash(c): c for j in plan("full") for c in j.run_configs()}
    heun = config.Method("heun", 2, 2, "Heun", "Heun", tableau="heun")
    methods = {**config.METHODS, "heun": heun}
    monkeypatch.setattr(config, "METHODS", methods)
    monkeypatch.setattr(experiments, "METHODS", methods)
    monkeypatch.setattr(experiments, "FIXED_METHODS", tuple(n for n, m in methods.items()
                                                           if not m.adaptive and m.implicit is None))
    after = {store.config_hash(c): c for j in plan("full") for c in j.run_configs()}
    assert set(before) <= set(after)  # nothing renamed
    added = [after[h] for h in set(after) - set(before)]
    transfer = [c for c in added if c["kind"] == "transfer"]
    # a transfer run per trained model of every transfer experiment, work-precision's hand solution on every task,
    # and its convergence on the linear test problem: nothing else
    trained = {store.config_hash({**c["train"], "seed": c["seed"]}) for c in before.values() if c["kind"] == "transfer"}
    assert len(transfer) == len(trained) and all(c["solver"]["method"] == "heun" for c in transfer)
    wp = [c for c in added if c["kind"] == "workprecision"]
    assert len(wp) == len(tasks.TASKS) and all(c["measure"] == {"what": "solution", "backend": "hand", "method": "heun"} for c in wp)
    assert [c["solver"] for c in added if c["kind"] == "convergence"] == ["hand-heun"]
    assert len(added) == len(transfer) + len(wp) + 1


def test_a_narrowed_transfer_job_keeps_the_members_its_models_were_trained_with():
    job = next(j for j in plan("quick", ["dynamics/transfer"]) if j.transfer)
    one = job.narrowed(job.seeds[:1])
    assert one.members == job.members
    assert all(c["members"] == job.members for c in one.run_configs() if c["kind"] == "transfer")
