"""Task ``pendulum``: learn a damped pendulum, theta'' = -sin(theta) - 0.2 theta', from one trajectory of it.

An instance of the trajectory-fitting factory (:mod:`study.tasks.trajectory`): the state is (theta, omega),
y(0) = (2, 0), 500 observations on [0, 20], 8 more time units held out.  The model is the factory's tanh MLP,
differentiated by autograd: no hand-written VJP.  Saved as study/tasks/pendulum/__init__.py, with "pendulum" added
to study.tasks.TASKS and its lines in study/profiles.py's TASK_SPEC, it is a task of the study.
"""
import numpy as np

from ..trajectory import System, define


def true_field(y):
    """(omega, -sin(theta) - 0.2 omega) for states (..., 2)."""
    return np.stack([y[..., 1], -np.sin(y[..., 0]) - 0.2 * y[..., 1]], -1)


TASK = define(System("pendulum", "Fitting a damped pendulum", "learn a damped pendulum from one trajectory",
                     true_field, (2.0, 0.0), defaults=(("t_end", 20.0), ("n_points", 500), ("t_extrapolate", 8.0))))


def __getattr__(name):
    return getattr(TASK, name)
