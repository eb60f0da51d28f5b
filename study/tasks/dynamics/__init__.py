"""Task ``dynamics``: learn ``dy/dt = (y**3) A`` from one trajectory of it (torchdiffeq's ``ode_demo``).

An instance of the trajectory-fitting factory (:mod:`study.tasks.trajectory`, which documents the data, the
training and the metrics): ``A = [[-0.1, 2], [-2, -0.1]]`` (row vectors), ``y(0) = (2, 0)``, 1,000 observations on
``[0, 25]``, 10 more time units held out.  The model is the demo's field ``W2 tanh(W1 y**3 + b1) + b2`` (2 -> 50 -> 2)
with its VJP and its RNODE terms written by hand (:mod:`.cubic`, checked against autograd by the conformance
tests).  Adam at 0.01 with cosine decay over 2,000 iterations: the demo's RMSprop at 1e-3 leaves the field error
still falling at 2,000.
"""
from __future__ import annotations

import numpy as np

from ..trajectory import System, define

A = np.array([[-0.1, 2.0], [-2.0, -0.1]])
Y0 = np.array([2.0, 0.0])


def true_field(y: np.ndarray) -> np.ndarray:
    """``(y**3) A`` for states ``(..., 2)``."""
    return (y ** 3) @ A


def _fields():
    from .cubic import hand_fields

    return hand_fields()


TASK = define(System("dynamics", "Fitting known dynamics",
                     "learn dy/dt = (y**3) A from one trajectory (torchdiffeq's ode_demo); errors on held-out time",
                     true_field, (2.0, 0.0), fields=_fields))


def __getattr__(name: str):
    return getattr(TASK, name)
