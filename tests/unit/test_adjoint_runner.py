"""The adjoint diagnostics against what is known exactly: the identity flow, and a smooth random flow on
which every gradient converges to the exact one."""
import torch

from study.engine.models import Classifier
from study.runners import adjoint
from study.variants import variant_config


def _weights(zero_init: bool, seed: int = 0) -> adjoint._Weights:
    return adjoint._Weights(Classifier(variant_config("euler", zero_init=zero_init), [seed]).state_dict(), seed)


def _batch():
    from study.tasks.spiral.step import first_batch

    return first_batch(0, 32, "cpu")


def test_identity_flow_has_unit_singular_values_and_exact_reconstruction():
    x, _ = _batch()
    rows = adjoint._flow_rows(_weights(True), x, 50, variant_config("euler"))
    sv = next(r for r in rows if r["what"] == "singular_values")
    assert abs(sv["sv_min_min"] - 1) < 1e-12 and abs(sv["cond_median"] - 1) < 1e-12
    recon = [r for r in rows if r["what"] == "reconstruction"]
    assert {(r["method"], r["dtype"]) for r in recon} >= {("rk4", "float64"), ("euler", "float32"), ("dopri5", "float64")}
    assert all(r["recon_rel"] < 1e-6 for r in recon)


def test_gradients_converge_to_the_exact_gradient_on_a_smooth_flow():
    """Random (untrained) weights: the discretisations' gradients approach the reference, and float64 dopri5 at
    1e-8 agrees with it to about the tolerance.  (Euler's error is not a clean O(h) here: the head's ReLU makes
    the gradient jump where a point's hidden unit changes sign, which a 1e-5 change of y(T) can do.)"""
    x, y = _batch()
    w = _weights(False, 3)
    exact, _ = w.grad("rk4", x, y, torch.float64, steps=400)
    rows = adjoint._gradient_rows(w, x, y, exact, [10, 40], [1e-8], (torch.float64,), lambda tol: (torch.float64,))
    euler = {r["steps"]: r for r in rows if r["method"] == "euler"}
    assert 0 < euler[40]["discrete_vs_exact"] < euler[10]["discrete_vs_exact"] < 0.1
    rk = {r["steps"]: r for r in rows if r["method"] == "rk4-38"}
    assert rk[40]["discrete_vs_exact"] < 1e-7
    dopri = next(r for r in rows if r["method"] == "dopri5")
    assert dopri["adjoint_vs_exact"] < 1e-6 and dopri["discrete_vs_exact"] < 1e-6
