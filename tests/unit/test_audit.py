"""study audit's parts against independent references: the problem file's checks, per-sample observation times
against torchdiffeq solving each sample alone, the spectral radius against numpy, the rules on hand-made cells."""
import math
import textwrap

import numpy as np
import pytest
import torch

from study.audit import ProblemError, cells, load, rules
from study.audit.model import model_for
from study.audit.train import nfe_trend
from study.engine.solve import How

HEADER = "import torch\nfrom study.audit import Problem\n"
FIELD = textwrap.dedent("""
    class F(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))

        def forward(self, t, y):
            return self.net(y) * (1 + t)
""")


def _file(tmp_path, body: str, name="p.py"):
    path = tmp_path / name
    path.write_text(HEADER + FIELD + textwrap.dedent(body))
    return path


@pytest.mark.parametrize("body, message", [
    ("x = 1\n", "defines no PROBLEM"),
    ("raise RuntimeError('boom')\n", "p.py:11: RuntimeError: boom"),
    ("PROBLEM = Problem(field=F, inputs=torch.randn(10, 2), times=torch.tensor([1., 0.]), "
     "targets=torch.randn(10, 2, 2))\n", "times must increase"),
    ("PROBLEM = Problem(field=F, inputs=torch.randn(10, 2), times=torch.tensor([0., 1.]), "
     "targets=torch.randn(9, 2, 2))\n", "the same number of samples"),
    ("t = torch.tensor([[0., 1.], [0.5, 1.]]).repeat(5, 1)\n"
     "PROBLEM = Problem(field=F, inputs=torch.randn(10, 2), times=t, targets=torch.randn(10, 2, 2))\n",
     "start at the same time"),
    ("PROBLEM = Problem(field=F, inputs=torch.randn(10, 2), times=torch.tensor([0., 1.]), "
     "targets=torch.randn(10, 2, 2), iterations=0)\n", "iterations must be"),
    ("PROBLEM = Problem(field=F, inputs=torch.full((10, 2), float('nan')), times=torch.tensor([0., 1.]), "
     "targets=torch.randn(10, 2, 2))\n", "non-finite"),
    ("PROBLEM = Problem(field=F, inputs=torch.randn(10, 2), times=torch.tensor([0., 1.]), "
     "targets=torch.randn(10, 2, 2), primary='acc')\n", "primary 'acc'"),
])
def test_a_bad_problem_file_is_one_line_naming_it(tmp_path, body, message):
    with pytest.raises(ProblemError) as exc:
        load(_file(tmp_path, body))
    assert message in str(exc.value) and "\n" not in str(exc.value), str(exc.value)


def test_per_sample_observation_times_match_torchdiffeq_solving_each_sample_alone(tmp_path):
    import torchdiffeq

    g = torch.Generator().manual_seed(0)
    times = torch.sort(torch.rand(6, 4, generator=g), 1).values
    times[:, 0] = 0.0
    path = _file(tmp_path, f"""
        torch.manual_seed(0)
        PROBLEM = Problem(field=F, inputs=torch.randn(6, 2), times=torch.tensor({times.tolist()}),
                          targets=torch.randn(6, 4, 2), test_fraction=0.5)
    """)
    loaded = load(path)
    model = model_for(loaded, 0).to(torch.float64)
    x, t, _ = loaded.train
    x, t = x.double(), t.double()
    with torch.no_grad():
        ours = model.states(x, t, How("hand", "dopri5", None, 1e-10))
        for b in range(x.shape[0]):
            ref = torchdiffeq.odeint(model.field, x[b: b + 1], t[b], rtol=1e-10, atol=1e-10, method="dopri5")
            assert torch.allclose(ours[b], ref[:, 0], rtol=1e-7, atol=1e-8), b


def test_the_spectral_radius_of_a_linear_field_is_numpy_s(tmp_path):
    from study.audit import analyse

    A = np.array([[-3.0, 1.0], [0.5, -0.2]])
    path = _file(tmp_path, f"""
        class Linear(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.A = torch.nn.Parameter(torch.tensor({A.tolist()}))

            def forward(self, t, y):
                return y @ self.A.T

        PROBLEM = Problem(field=Linear, inputs=torch.randn(20, 2), times=torch.linspace(0, 1, 3),
                          targets=torch.randn(20, 3, 2))
    """)
    loaded = load(path)
    radii = analyse.spectral_radii(model_for(loaded, 0), loaded, cells.BUDGETS["quick"])
    assert radii and all(math.isclose(r, max(abs(np.linalg.eigvals(A))), rel_tol=1e-6) for r in radii)
    s = analyse.stiffness(radii, {"method": "euler", "steps": 4}, loaded, None)
    assert math.isclose(s["h"], 1.0 / (2 * 4)) and s["limit"] == 2.0 and s["beyond_limit"] is False


def test_the_nfe_trend_is_the_last_tenth_over_the_first():
    curves = {"iteration": list(range(1, 21)), "nfe_forward": [10] * 2 + [20] * 16 + [30] * 2,
              "nfe_backward": [0] * 20}
    assert nfe_trend(curves) == 3.0
    assert nfe_trend({**curves, "iteration": list(range(9))}) is None


def _cell(name, solver, impl, grad, metric, time, **kw):
    return {"cell": name, "solver": solver, "implementation": impl, "gradient": grad, "method": solver.split()[0],
            "seeds": len(metric), "ok": len(metric), "metric": metric, "median": float(np.median(metric)),
            "time": time, "nfe": 10, "ode_gap": kw.get("gaps", [0.01] * len(metric)),
            "rho_h": kw.get("rho_h", [0.1] * len(metric)), "limit": 2.0, "nfe_trend": kw.get("trend", [None]),
            "field_err": []}


def test_the_recommendation_is_the_cheapest_cell_within_the_best_cell_s_interval():
    c = [_cell("a", "rk4 x2", "hand", "direct", [0.10, 0.12, 0.11], 0.05),
         _cell("b", "euler x2", "hand", "direct", [0.13, 0.135, 0.12], 0.01),  # median 0.13: outside
         _cell("c", "midpoint x2", "hand", "direct", [0.115, 0.13, 0.11], 0.02)]  # 0.115: inside [0.0945, 0.1255]
    r = rules.recommend(c, higher=False)
    assert r["best"] == "a" and r["recommended"] == "c" and r["within"] == ["a", "c"]
    r = rules.recommend(c, higher=True)  # accuracy-like: b is best
    assert r["best"] == "b"
    c[2]["ode_gap"] = [0.01, 0.3, 0.02]  # c is its solver's model on one seed: the next cheapest ODE is chosen
    assert rules.recommend(c, higher=False)["recommended"] == "a"


def test_a_gradient_method_is_avoided_by_its_error_or_its_cost():
    rows = [{"implementation": "hand", "gradient": "direct", "model": "m", "seed": 0, "tol": 1e-5, "error": 1e-5},
            {"implementation": "hand", "gradient": "adjoint", "model": "m", "seed": 0, "tol": 1e-5, "error": 0.3},
            {"implementation": "torchdiffeq", "gradient": "adjoint", "model": "m", "seed": 0, "tol": 1e-5,
             "error": 1e-5}]
    cells_ = [_cell("h", "dopri5 1e-05", "hand", "direct", [1.0], 1.0),
              _cell("t", "dopri5 1e-05", "torchdiffeq", "direct", [1.0], 1.0),
              _cell("ta", "dopri5 1e-05", "torchdiffeq", "adjoint", [1.0], 3.0)]
    v = {g["method"]: g["verdict"] for g in rules.gradients(rows, cells_)}
    assert v["hand adjoint"].startswith("avoid: relative gradient error up to 0.3")
    assert v["torchdiffeq adjoint"].startswith("avoid: trains 3x slower")
    assert v["hand direct"].startswith("fine")


def test_the_ode_and_stiffness_verdicts_follow_their_rules():
    c = [_cell("a", "euler x2", "hand", "direct", [1.0, 1.0], 1.0, gaps=[0.05, 0.2], rho_h=[1.0, 2.5]),
         _cell("b", "rk4 x2", "hand", "direct", [1.0], 1.0, gaps=[0.01], trend=[1.8])]
    assert rules.is_ode(c, "a")["verdict"].startswith("its solver's model")
    assert rules.is_ode(c, "b")["verdict"].startswith("an ODE")
    s = rules.stiffness(c)
    assert s["warn"] and "a: rho h 2.5 > 2" in s["verdict"] and "b: evaluations per iteration x1.8" in s["verdict"]


def test_the_minimal_problem_file_of_the_docs_loads_and_runs(tmp_path):
    import re

    from study.audit.run import smoke
    from tests.helpers import ROOT

    doc = (ROOT / "docs" / "audit.md").read_text()
    block = re.search(r"A minimal file:\n\n```python\n(.*?)```", doc, re.S).group(1)
    path = tmp_path / "minimal.py"
    path.write_text(block)
    loaded = load(path)
    assert loaded.name == "minimal" and loaded.train[0].shape == (160, 2) and loaded.test[2].shape == (40, 11, 2)
    smoke(loaded)


def test_a_given_trained_model_is_measured_as_it_is(tmp_path):
    from study.audit.run import plan, run_one

    torch.manual_seed(5)
    exec_ns: dict = {}
    exec(HEADER + FIELD, exec_ns)
    trained = exec_ns["F"]()
    with torch.no_grad():
        trained.net[2].weight.mul_(3.0)
    torch.save(trained.state_dict(), tmp_path / "field.pt")
    path = _file(tmp_path, f"""
        PROBLEM = Problem(field=F, inputs=torch.randn(12, 2), times=torch.linspace(0, 1, 3),
                          targets=torch.randn(12, 3, 2), state_dict={str(tmp_path / "field.pt")!r})
    """)
    loaded = load(path)
    budget = cells.BUDGETS["quick"]
    (given,) = [c for c in plan(loaded, budget, 1) if c["cell"] is None]
    rec = run_one(loaded, budget, given)
    assert rec["status"] == "ok" and rec["metrics"]["given"] is True
    assert rec["transfer"][-1]["solver"] == "reference (float64)" and rec["transfer"][-1]["loss"] is not None
    model = model_for(loaded, 0, {"field": trained, "lift": None, "head": None})
    x, t, y = loaded.test
    with torch.no_grad():
        expected = float(((model.predict(x, t, How("hand", "rk4-38", 4)) - y) ** 2).mean())
    row = next(r for r in rec["transfer"] if r["solver"] == "rk4-38 x4")
    assert math.isclose(row["loss"], expected, rel_tol=1e-6)  # the given weights, not fresh ones
    assert {s["solver"] for s in rec["metrics"]["stiffness"]} == {"euler x2", "midpoint x2", "rk4-38 x2"}


def test_a_stored_audit_record_is_trusted_only_when_it_is_the_config_its_name_says(tmp_path):
    from study import records, store
    from study.audit.run import _existing, plan

    path = _file(tmp_path, """
        PROBLEM = Problem(field=F, inputs=torch.randn(12, 2), times=torch.linspace(0, 1, 3), targets=torch.randn(12, 3, 2))
    """)
    cfg, other = plan(load(path), cells.BUDGETS["quick"], 1)[:2]
    where = store.record_path(tmp_path / "runs", "audit", cfg)
    rec = records.make(cfg, {"params": 1, "test_loss_ref": 0.5, "rho_end": 1.0}, {}, transfer=[],
                       workprecision={"solution": [], "gradient": []})
    store.write_atomic(where, rec)
    assert _existing(where, cfg) == rec
    store.write_atomic(where, {**rec, "config": other})  # an edited file: another run's numbers under this name
    assert _existing(where, cfg) is None and not where.exists()
    assert where.with_name(where.name + ".corrupt").exists()


def test_every_gradient_method_s_evaluation_takes_the_hand_direct_solve_s_steps(tmp_path):
    """The stiffness indicator reads a hand cell's own evaluation for its step sizes: every gradient method's
    forward pass takes the same accepted steps."""
    from study.audit.train import evaluate

    path = _file(tmp_path, """
        PROBLEM = Problem(field=F, inputs=torch.randn(12, 2), times=torch.linspace(0, 1, 3), targets=torch.randn(12, 3, 2))
    """)
    loaded = load(path)
    model = model_for(loaded, 0)
    runs = [evaluate(model, loaded.test, How("hand", "dopri5", None, 1e-6, g)) for g in ("direct", "checkpoint", "adjoint")]
    assert runs[0]["accepted"] > 0 and len({(r["accepted"], r["nfe"]) for r in runs}) == 1
