"""The one solve entry: a field from ``t0`` to ``t1``, with the implementation, method, grid and gradient method
as independent arguments (:class:`How`).

* implementation: ``hand`` (the study's engine: :mod:`study.engine.hand_ode`, the tableaus on the one stage loop)
  or ``torchdiffeq`` (``odeint``, ``odeint_adjoint``);
* method: a row of the method table (:data:`study.config.METHODS`), with ``steps`` (fixed) or ``tol`` (adaptive);
* gradient: ``direct`` (backpropagation through the solve), ``checkpoint`` (the hand engine's checkpointed adjoint:
  the exact gradient of the discretisation, one state a step), ``adjoint`` (the continuous adjoint) or
  ``seminorm`` (the continuous adjoint whose step control leaves the parameters' adjoint out).

The old ``backend`` strings of the records (``hand``, ``hand-checkpoint``, ``hand-adjoint``, ``torchdiffeq``,
``torchdiffeq-adjoint``) are parsed once, by :meth:`How.of_backend`.  The field is any field of
:mod:`study.engine.field` (a hand-written one, or any module through :class:`study.engine.module_field.ModuleField`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import METHODS

IMPLEMENTATIONS = ("hand", "torchdiffeq")
GRADIENTS = ("direct", "checkpoint", "adjoint", "seminorm")
_BACKENDS = {"hand": ("hand", "direct"), "hand-checkpoint": ("hand", "checkpoint"), "hand-adjoint": ("hand", "adjoint"),
             "torchdiffeq": ("torchdiffeq", "direct"), "torchdiffeq-adjoint": ("torchdiffeq", "adjoint")}


@dataclass(frozen=True)
class How:
    """How to solve: see the module's docstring.  ``tol`` is an adaptive solve's relative and absolute tolerance
    (``atol``, where given, its absolute one); ``max_steps`` caps its steps."""

    implementation: str = "hand"
    method: str = "rk4"
    steps: int | None = 20
    tol: float | None = None
    gradient: str = "direct"
    max_steps: int = 100_000
    atol: float | None = None
    newton: tuple = (1e-10, 12)  # an implicit method's Newton tolerance and iteration cap

    def __post_init__(self):
        if self.implementation not in IMPLEMENTATIONS:
            raise ValueError(f"implementation must be one of {', '.join(IMPLEMENTATIONS)}, got {self.implementation!r}")
        if self.gradient not in GRADIENTS:
            raise ValueError(f"gradient must be one of {', '.join(GRADIENTS)}, got {self.gradient!r}")
        m = METHODS.get(self.method)
        if m is None:
            raise ValueError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if (m.tableau or m.implicit if self.implementation == "hand" else m.torchdiffeq) is None:
            raise ValueError(f"{self.implementation} has no {self.method!r}")
        if m.implicit and self.gradient not in ("direct", "checkpoint"):
            raise ValueError(f"{self.method} (implicit) takes the direct or the checkpointed gradient: its steps' "
                             "exact VJPs by the implicit function theorem")
        if self.implementation == "torchdiffeq" and self.gradient == "checkpoint":
            raise ValueError("the checkpointed adjoint is the hand engine's")
        if m.adaptive and not (self.tol and self.tol > 0):
            raise ValueError(f"{self.method} needs a positive tol")
        if not m.adaptive and not (isinstance(self.steps, int) and self.steps >= 1):
            raise ValueError(f"{self.method} needs a positive number of steps")

    @property
    def adaptive(self) -> bool:
        return METHODS[self.method].adaptive

    @classmethod
    def of_backend(cls, backend: str, method: str, grid: dict, max_steps: int = 100_000) -> "How":
        """The ``How`` of a record's ``backend`` string, its method and its grid (``{"steps"}`` or ``{"tol"}``)."""
        if backend not in _BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(_BACKENDS)}")
        implementation, gradient = _BACKENDS[backend]
        return cls(implementation, method, grid.get("steps"), grid.get("tol"), gradient, max_steps)

    @classmethod
    def of_model(cls, cfg) -> "How":
        """The ``How`` of a model's configuration (:class:`study.config.ModelConfig`): its backend parsed, its
        steps or tolerances, the seminorm where its adaptive adjoint takes it."""
        if cfg.backend not in _BACKENDS:
            raise ValueError(f"unknown backend {cfg.backend!r}; choose one of {', '.join(_BACKENDS)}")
        implementation, gradient = _BACKENDS[cfg.backend]
        newton = (cfg.newton_tol, cfg.newton_max_iter)
        if cfg.adaptive:
            if gradient == "adjoint" and cfg.adjoint_norm == "seminorm":
                gradient = "seminorm"
            return cls(implementation, cfg.method, None, cfg.rtol, gradient, cfg.max_num_steps, cfg.atol, newton)
        return cls(implementation, cfg.method, cfg.steps, None, gradient, newton=newton)

    @property
    def abs_tol(self) -> float | None:
        return self.tol if self.atol is None else self.atol


def is_solver_failure(exc: BaseException) -> bool:
    """The one failure rule: a solve that gave up (torchdiffeq's and the hand engine's ``underflow in dt`` and
    ``max_num_steps exceeded`` assertions, the hand engine's ``step size overflow``, an implicit method's Newton
    failure) is a result, recorded as the run's
    failure; any other exception is a bug."""
    from .implicit import NewtonFailure

    msg = str(exc)
    return isinstance(exc, NewtonFailure) or (
        isinstance(exc, AssertionError) and any(m in msg for m in ("underflow in dt", "max_num_steps exceeded",
                                                                    "step size overflow")))


class Count:
    """A counter with the engine's interface (evaluations by phase; steps), for callers that do not count."""

    def __init__(self):
        self.phase, self.counts, self.accepted, self.rejected, self.failures = "forward", {"forward": 0, "backward": 0,
                                                                                         "eval": 0}, 0, 0, {}

    def add_members(self, evaluations, accepted=None, rejected=None):
        self.counts[self.phase] += int(evaluations.max())


def solve(field, raw, y0: torch.Tensor, t0: float, t1: float, how: How, counter=None, rhs=None) -> torch.Tensor:
    """``y(t1)`` of ``y' = field(t, y; raw)`` from ``y0`` (the engine's layout, ``(S, d, B)``), differentiable in
    ``y0`` and ``raw`` by ``how.gradient``; ``counter`` (optional) counts the evaluations by phase.  ``rhs``: the
    right-hand side torchdiffeq calls (default the field's, :func:`torchdiffeq_rhs`); a model that counts its own
    evaluations and steps (torchdiffeq's step callbacks) passes itself."""
    counter = Count() if counter is None else counter
    if how.implementation == "hand":
        return _hand(field, raw, y0, t0, t1, how, counter)
    return _torchdiffeq(field, raw, y0, t0, t1, how, counter, rhs)


def _hand(field, raw, y0, t0, t1, how: How, counter):
    from . import hand_ode
    from .stepper import Control

    if METHODS[how.method].implicit:
        return _implicit(field, raw, y0, t0, t1, how, counter)
    control = Control(how.tol, how.abs_tol, how.max_steps) if how.adaptive else None
    spec = hand_ode.Solve(how.method, how.steps or 1, control, how.gradient == "seminorm", t0, t1)
    run = {"direct": hand_ode.direct, "checkpoint": hand_ode.checkpointed, "adjoint": hand_ode.adjoint,
           "seminorm": hand_ode.adjoint}[how.gradient]
    return run(y0, tuple(raw), spec, counter, field)


def _implicit(field, raw, y0, t0, t1, how: How, counter):
    """An implicit method (:mod:`study.engine.implicit`) on the field's differentiable forward: the engine's
    ``(S, d, B)`` state as ``S B`` independent rows; evaluations counted, and Newton iterations and linear solves
    on ``counter.newton`` and ``counter.linear_solves`` (dicts by the counter's phase)."""
    from . import implicit

    if not hasattr(field, "differentiable"):
        raise ValueError(f"{how.method} needs a field with a differentiable forward (field.differentiable)")
    S, d, B = y0.shape
    w = field.fold(raw)

    def f(t, rows):
        out = field.differentiable(rows.view(S, B, d).transpose(1, 2), t, w)
        return out.transpose(1, 2).reshape(S * B, d)

    stats = implicit.Stats(counter=counter)
    m = METHODS[how.method]
    rows = implicit.solve(f, tuple(x for x in raw if x is not None), y0.transpose(1, 2).reshape(S * B, d), t0, t1,
                          m.implicit, None if m.adaptive else how.steps, rtol=how.tol or 1e-6,
                          atol=how.abs_tol or 1e-8, stats=stats, max_steps=how.max_steps,
                          newton=implicit.Newton(tol=how.newton[0], max_iter=how.newton[1]),
                          checkpoint=how.gradient == "checkpoint")
    counter.counts[counter.phase] += stats.evaluations
    counter.accepted += stats.accepted
    counter.rejected += stats.rejected
    return rows.view(S, B, d).transpose(1, 2)


def torchdiffeq_rhs(field, params, counter):
    """The field as torchdiffeq's right-hand side ``f(t, y)``, counting its evaluations.  A field with a right-hand
    side of its own (a module's) uses it; the study's fields take ``t`` as a number (their records were made so)."""
    from .field import evaluate

    if hasattr(field, "torchdiffeq_rhs"):
        return field.torchdiffeq_rhs(params, counter)

    def f(t, y):
        counter.counts[counter.phase] += 1
        return evaluate(field, y, float(t.detach()) if hasattr(t, "detach") else float(t), field.fold(params))

    return f


def torchdiffeq_options(how: How) -> dict:
    """torchdiffeq's arguments for ``how``: its method's name, and its tolerances or its uniform grid."""
    kw: dict = {"method": METHODS[how.method].torchdiffeq}
    if how.adaptive:
        kw.update(rtol=how.tol, atol=how.abs_tol, options={"max_num_steps": how.max_steps})
        if how.gradient in ("adjoint", "seminorm"):
            kw["adjoint_options"] = {"max_num_steps": how.max_steps}
            if how.gradient == "seminorm":
                kw["adjoint_options"]["norm"] = "seminorm"
    else:
        # The uniform N-step grid, given explicitly: torchdiffeq's step_size option can add a zero-length step when
        # 1/step_size rounds up.  (The adjoint's backward solve calls it on the reversed, negated interval.)
        n = how.steps
        kw["options"] = {"grid_constructor": lambda f, y0, t: torch.linspace(float(t[0]), float(t[-1]), n + 1,
                                                                             dtype=t.dtype, device=t.device)}
    return kw


def _torchdiffeq(field, raw, y0, t0, t1, how: How, counter, rhs=None):
    import torchdiffeq

    kw = torchdiffeq_options(how)
    tt = torch.tensor([t0, t1], dtype=y0.dtype, device=y0.device)
    f = torchdiffeq_rhs(field, raw, counter) if rhs is None else rhs
    if how.gradient == "direct":
        return torchdiffeq.odeint(f, y0, tt, **kw)[-1]
    present = tuple(x for x in raw if x is not None)
    return torchdiffeq.odeint_adjoint(f, y0, tt, adjoint_params=present, **kw)[-1]
