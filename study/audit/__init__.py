"""``study audit``: which solver and which gradient suit the user's own Neural ODE, measured on it.

A problem is one Python file defining ``PROBLEM = Problem(...)`` (:class:`Problem`; the contract is
``docs/audit.md``): the field as any ``torch.nn.Module`` ``f(t, y)`` (torchdiffeq's convention), the data, a loss,
and optionally metrics, a readout, the true field and a trained model.  :func:`audit` trains it in every solver x
gradient cell of a budget (:mod:`.cells`), measures each trained model (:mod:`.analyse`), keeps one record per
(cell, seed) in a store (resumable) and writes a report whose verdicts follow stated rules (:mod:`.rules`).
"""
from . import cells, rules  # noqa: F401
from .problem import Problem, ProblemError, load, mse  # noqa: F401
from .run import audit  # noqa: F401
