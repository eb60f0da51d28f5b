"""Task ``stiff``: learn the slow dynamics of a stiff system whose fast relaxation is known.

The system is a limit cycle with a fast radial relaxation: in polar coordinates ``r' = K r (1 - r^2)``,
``theta' = OMEGA``.  Every state is drawn onto the unit circle at the rate ``2 K`` (the Jacobian's fast eigenvalue
on the circle is ``-2 K = -1000``; at ``r = 2`` it is ``K (1 - 3 r^2) = -5500``) and turns round it at the rate 1:
a stiffness ratio of 1,000, the structure of chemical kinetics' fast equilibria and slow reactions.  From
``y(0) = (2, 0)`` the state falls onto the circle within about ``3 / (2 K)`` = 0.003 time units and then turns;
the closed form (:func:`exact`) checks the truth.

The model is a universal differential equation (Rackauckas et al. 2020): the known fast relaxation
``K (1 - |y|^2) y`` plus a tanh network that learns the rest (the rotation ``OMEGA (-v, x)``), so the field is
stiff from the first iteration, as a kinetic model with known fast reactions is, and the solver's stability is
what each training step pays for.  Learning the fast rate from the trajectory too (a black-box field) is the
harder problem of Kim et al. ("Stiff neural ordinary differential equations", Chaos 31, 2021): trained on this
trajectory the network learns the rotation and a relaxation rate near 7 in place of 1,000, and the learned field
is then not stiff at all.

Everything else is the trajectory-fitting factory's (:mod:`study.tasks.trajectory`): 200 observations on
``[0, 2 pi]`` (one turn) and 2 more time units held out; truth and the metrics' reference rollouts by scipy's
Radau (implicit, order 5, L-stable) in float64, not by an explicit method, whose steps a stiff field bounds by
stability; the field error is the learned part's against the unknown part's.  The implicit methods (backward
Euler, the trapezoidal rule, Kvaerno's ESDIRK 3(2): :mod:`study.engine.implicit`) apply to this task alone.
"""
from __future__ import annotations

import math

import numpy as np

from ..trajectory import Known, System, define

K = 500.0  # radial relaxation rate
OMEGA = 1.0  # angular rate
R0 = 2.0


def relaxation(y: np.ndarray) -> np.ndarray:
    """The known part ``K (1 - |y|^2) y`` for states ``(..., 2)``."""
    return K * (1.0 - (y * y).sum(-1, keepdims=True)) * y


def relaxation_torch(y):
    """The known part on the engine's layout ``(S, 2, B)``."""
    return K * (1.0 - (y * y).sum(1, keepdim=True)) * y


def true_field(y: np.ndarray) -> np.ndarray:
    """The known relaxation plus the rotation ``OMEGA (-v, x)``, states ``(..., 2)``."""
    return relaxation(y) + OMEGA * np.stack([-y[..., 1], y[..., 0]], -1)


def exact(t: np.ndarray) -> np.ndarray:
    """The closed-form solution from ``(R0, 0)``: ``r = (1 + (1/R0^2 - 1) e^(-2 K t))^(-1/2)``,
    ``theta = OMEGA t``."""
    t = np.asarray(t, dtype=float)
    r = 1.0 / np.sqrt(1.0 + (1.0 / R0 ** 2 - 1.0) * np.exp(-2.0 * K * t))
    return np.stack([r * np.cos(OMEGA * t), r * np.sin(OMEGA * t)], -1)


TASK = define(System(
    "stiff", "Fitting a stiff system",
    "learn the slow rotation of a limit cycle whose 1,000x faster radial relaxation is known (stiff); "
    "implicit solvers",
    true_field, (R0, 0.0), stiff=True, known=Known("relaxation", relaxation, relaxation_torch),
    defaults=(("iterations", 300), ("n_points", 200), ("t_end", 2 * math.pi), ("t_extrapolate", 2.0)),
    rng_key=23))


def __getattr__(name: str):
    return getattr(TASK, name)
