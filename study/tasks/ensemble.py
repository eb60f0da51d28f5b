"""What every task's model shares: ``S`` independent copies of a task's vector field (one per seed, stacked weights) and their solves on
every backend: the hand engine's direct, checkpointed and continuous-adjoint solves and torchdiffeq's
``odeint`` and ``odeint_adjoint``.

A task's model subclasses :class:`Ensemble`: it makes the raw parameters (leaf tensors whose first
dimension is the member), names its hand-engine field (:mod:`study.engine.field`) and writes
``__call__(t, y)``, the right-hand side torchdiffeq calls (plain autograd, the same arithmetic as the
field's evaluation).  Everything else (the solves over observation intervals, the step callbacks, the
counter, a member's weights) is here once, for every task.  Torch is imported where it is used, so
that a task module (and the report layer that reads its metrics) stays torch-free at import.
"""
from __future__ import annotations

from ..config import LATER_DEFAULTS, ModelConfig


class Ensemble:
    """Members' raw parameters (:attr:`params`), their hand-engine field (:attr:`field`) and a counter.

    A plain object, not an ``nn.Module``: its parameters are the leaf tensors of :attr:`params`."""

    field = None  # the hand engine's field (study.engine.field interface); set by the subclass

    def __init__(self, cfg: ModelConfig, seeds, params: list):
        from ..engine.models import Counter

        self.cfg, self.seeds = cfg, [int(s) for s in seeds]
        self.params = params
        self.counter = Counter()

    def param_count(self) -> int:
        return sum(p[0].numel() for p in self.params)

    def __call__(self, t, y):  # torchdiffeq's right-hand side
        raise NotImplementedError

    def callback_accept_step(self, t0, y0, dt):
        if self.counter.phase != "backward":
            self.counter.accepted += 1

    def callback_reject_step(self, t0, y0, dt):
        if self.counter.phase != "backward":
            self.counter.rejected += 1

    def solve(self, y0, t: list[float], cfg: ModelConfig | None = None):
        """The states ``(len(t), S, d, B)`` at times ``t`` from ``y0`` ``(S, d, B)`` at ``t[0]``: one solve of
        ``cfg`` (default: the model's own) per interval."""
        import torch

        cfg = self.cfg if cfg is None else cfg
        out, y = [y0], y0
        for t0, t1 in zip(t[:-1], t[1:]):
            y = self.interval(y, float(t0), float(t1), cfg)
            out.append(y)
        return torch.stack(out)

    def interval(self, y, t0: float, t1: float, cfg: ModelConfig | None = None):
        """The state at ``t1`` of one solve of ``cfg`` (default: the model's own) from ``y`` at ``t0``, through the
        one solve entry (:func:`study.engine.solve.solve`); torchdiffeq calls the model itself (it counts the
        evaluations and, by its step callbacks, the steps)."""
        from ..engine.solve import How, solve

        cfg = self.cfg if cfg is None else cfg
        return solve(self.field, self.params, y, float(t0), float(t1), How.of_model(cfg), self.counter, rhs=self)

    def member_weights(self, s: int, dtype=None) -> list:
        """Member ``s``'s raw parameters as ``(1, ...)`` copies (float64 unless ``dtype``)."""
        import torch

        return [p.detach()[s: s + 1].to(dtype or torch.float64).clone() for p in self.params]


# -- what the flow tasks share besides the model: their model options, configs and training history -----------

MODEL_FIELDS = ("model", "backend", "method", "steps", "rtol", "atol", "adjoint_norm", "max_num_steps")


def model_config(variant: str, overrides: dict | None, default_steps: int) -> ModelConfig:
    """``variant``'s model configuration with ``overrides``; a fixed-step method takes ``default_steps`` unless
    they say otherwise."""
    from ..variants import variant_config

    base = variant_config(variant)
    over = dict(overrides or {})
    if not base.adaptive:
        over.setdefault("steps", default_steps)
    return variant_config(variant, **over)


def model_fields(cfg: ModelConfig) -> dict:
    """The model options that apply to a flow task (steps only for fixed steps, tolerances only for adaptive)."""
    d = {k: getattr(cfg, k) for k in MODEL_FIELDS}
    for k in ("newton_tol", "newton_max_iter"):  # an implicit method's, where not their defaults
        if getattr(cfg, k) != LATER_DEFAULTS[k]:
            d[k] = getattr(cfg, k)
    if cfg.adaptive:
        d.pop("steps")
    else:
        d.pop("rtol"), d.pop("atol"), d.pop("max_num_steps"), d.pop("adjoint_norm")
    return d


def engine_of(cfg: ModelConfig) -> str:
    """The engine a flow model's solves run on: the hand engine's one-node steps (direct and checkpointed), its
    continuous adjoint on one evaluation, or torchdiffeq."""
    from ..config import METHODS, engine_label

    if METHODS[cfg.method].implicit:
        return engine_label("implicit")
    if cfg.backend in ("hand", "hand-checkpoint"):
        return engine_label("step")
    return engine_label("evaluation" if cfg.backend == "hand-adjoint" else "torchdiffeq")


def run_config(task: tuple[str, int], variant: str, model_cfg: ModelConfig, protocol, seed: int, device: str,
               extra: dict | None, engine: str) -> dict:
    """A flow task's training config: ``task`` is its (name, version), ``protocol`` its Protocol (its remedies
    named only where on, :meth:`as_config`)."""
    from . import task_fields

    return {"kind": "train", **task_fields(*task), "variant": variant, **(extra or {}), "seed": int(seed),
            "device": device, **model_fields(model_cfg), **protocol.as_config(), "engine": engine}


def is_solver_failure(exc: BaseException) -> bool:
    """The solve layer's one failure rule (:func:`study.engine.solve.is_solver_failure`), imported when asked (the
    tasks stay torch-free at import)."""
    from ..engine.solve import is_solver_failure as rule

    return rule(exc)
