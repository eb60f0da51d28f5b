"""Trajectory fitting, the factory: learn a known vector field from one trajectory of it.

The standard Neural ODE demonstration (torchdiffeq's ``examples/ode_demo.py``), written here from scratch, for any
true field.  A task of this kind is a :class:`System` (its true field ``dy/dt = F(y)`` in numpy, its initial state,
the observation interval and count, the model's width) made a task by :class:`Trajectory`; ``study.tasks.dynamics``
and any task a user adds are instances.  The truth is ``F`` from ``y0`` observed at ``n_points`` equally spaced
times on ``[0, t_end]`` (optionally with Gaussian noise of standard deviation ``noise``), integrated by scipy's
DOP853 in float64 at ``rtol = 1e-10, atol = 1e-12``.

The model is a field ``f(y) = W2 tanh(W1 u(y) + b1) + b2`` (``d -> field_hidden -> d``, weights N(0, 0.1^2), biases
0, as in the demo), ``u`` the identity unless the system's own field says otherwise; its VJP by autograd unless the
system registers a hand-written one (``fields``).  It is trained on random windows (:mod:`.fit`, Adam at ``lr``
with cosine decay), its metrics all against the noise-free truth (lower is better):

* ``traj_err``: the learned field rolled out from ``y(0)`` over ``[0, t_end]`` by a tight reference solve
  (torchdiffeq's dopri5 in float64, ``rtol = 1e-9, atol = 1e-10``), not the training solver: the RMS over the
  observation times of the distance to the truth;
* ``extrap_err``: the same rollout over the held-out time ``(t_end, t_end + t_extrapolate]``;
* ``field_err``: the relative RMS error of the learned field against the true one on the points of a
  ``grid`` x ``grid`` lattice over the trajectory's bounding box within ``band`` of an observed state;
* ``traj_err_own``: the rollout over ``[0, t_end]`` with the training solver itself (what the model "believes"
  it fits).

A perfect field scores 0 on every metric; the field of the wrong sign has ``field_err`` exactly 2.  Torch-free at
import: torch is imported by what trains and evaluates.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from . import data
from .protocol import METRICS, OPTIONS, PRIMARY, REFERENCE, REMEDIES, protocol_class
from .records import SAME_LENGTH, SCHEMA

DEFAULT_STEPS = 1  # fixed-step methods: steps per observation interval (the window's own grid)


@dataclass(frozen=True)
class System:
    """What a trajectory-fitting task is: its name and words, the true field ``true_field(y)`` (numpy, states
    ``(..., d)``), the initial state ``y0``, the protocol's defaults that differ from
    :class:`.protocol.Protocol`'s (``t_end``, ``n_points``, ``field_hidden``, ...), and optionally ``fields``: a
    function returning its model field and that field's RNODE form for the hand engine (default: the tanh MLP by
    autograd, :mod:`.fields`)."""

    name: str
    title: str
    summary: str
    true_field: Callable
    y0: tuple
    version: int = 1
    defaults: tuple = ()  # (field, value) pairs
    fields: Callable | None = field(default=None, compare=False)
    rng_key: int = 21  # the third entry of every random stream's seed
    # A stiff system (:mod:`study.tasks.stiff`): truth and the metrics' reference rollouts by scipy's Radau
    # (implicit, L-stable) in place of DOP853 and dopri5; the implicit methods apply (STIFF).
    stiff: bool = False
    known: "Known | None" = None  # a part of the true field the model is given (the network learns the rest)


@dataclass(frozen=True)
class Known:
    """A known part of a field, in numpy (states ``(..., d)``) and in torch (the engine's layout ``(S, d, B)``):
    a universal differential equation's physics (Rackauckas et al. 2020), the network learning what is left."""

    name: str
    numpy: Callable
    torch: Callable


class Trajectory:
    """A :class:`System` as a task of the registry (:mod:`study.tasks`): its description and its hooks."""

    METRICS, PRIMARY, REFERENCE, OPTIONS, REMEDIES = METRICS, PRIMARY, REFERENCE, OPTIONS, REMEDIES
    SCHEMA, SAME_LENGTH, DEFAULT_STEPS = SCHEMA, SAME_LENGTH, DEFAULT_STEPS

    def __init__(self, system: System):
        if len(system.y0) < 1:
            raise ValueError(f"task {system.name}: y0 must be a state of at least one coordinate")
        if system.fields is not None and system.known is not None:
            raise ValueError(f"task {system.name}: a hand-written field has no known part: write it into the field")
        self.system = system
        self.NAME, self.VERSION, self.TITLE, self.SUMMARY = system.name, system.version, system.title, system.summary
        self.Protocol = protocol_class(dict(system.defaults))
        self.BENCH_BATCH = self.Protocol().batch_size  # the task bench's batch: the training batch

    @property
    def STIFF(self) -> bool:  # noqa: N802 - a task's constant
        """Whether the implicit methods apply (:func:`study.tasks.why_not`)."""
        return self.system.stiff

    @property
    def dim(self) -> int:
        return len(self.system.y0)

    def fields(self) -> tuple:
        """The model field and its RNODE form (imports torch)."""
        if self.system.fields is not None:
            return self.system.fields()
        from .fields import autograd_fields

        return autograd_fields(self.dim, self.system.known)

    # -- which variants apply, and their configs ---------------------------------------------------------------
    def not_applicable(self, variant) -> str | None:
        """Why ``variant`` (a :class:`study.variants.Variant`) does not apply here; None if it does."""
        model = variant.model_config.model
        if model == "resnet":
            return ("a ResNet's blocks are depth-indexed maps with no time: the task needs the state at every "
                    "observation time of a rollout over [0, t_end + t_extrapolate]")
        if model == "none":
            return "the flow is the model: without one there is nothing to fit"
        return None

    def model_config(self, variant: str, overrides: dict | None = None):
        from .. import ensemble

        return ensemble.model_config(variant, overrides, DEFAULT_STEPS)

    def run_config(self, variant: str, model_cfg, protocol, seed: int, device: str = "cpu",
                   extra: dict | None = None) -> dict:
        from .. import ensemble

        return ensemble.run_config((self.NAME, self.VERSION), variant, model_cfg, protocol, seed, device, extra,
                                   ensemble.engine_of(model_cfg))

    @staticmethod
    def config_model(config: dict):
        from ...config import ModelConfig

        return ModelConfig.from_dict(config)

    def cost(self, config: dict, members: int) -> float:
        """Relative cost (units: one evaluation at batch 128 of the spiral's network; this field is ~10x
        cheaper)."""
        from ...config import METHODS

        P = self.Protocol.from_dict(config)
        method = METHODS[config["method"]]
        per_interval = 8 if method.adaptive else config.get("steps", 1) * method.stages
        factor = 2.0 if config["backend"] != "hand" else 1.5
        return 0.1 * P.iterations * (P.batch_time - 1) * per_interval * factor * (1 if members == 1 else 0.6 * members)

    # -- training, records and the other kinds' hooks ----------------------------------------------------------
    def train(self, configs: list[dict], progress=None, transfer: list[dict] | None = None):
        from .records import train

        return train(self, configs, progress, transfer)

    def fit(self, cfg, P, seeds, device: str = "cpu", progress=None):
        from .fit import fit

        return fit(self, cfg, P, seeds, device, progress)

    def Flow(self, cfg, seeds, hidden: int = 50, device="cpu", dtype=None):
        from .model import Flow

        return Flow(self, cfg, seeds, hidden, device, dtype)

    @staticmethod
    def summary(record: dict) -> list[str]:
        from .records import summary

        return summary(record)

    def workprecision_models(self, config: dict) -> dict:
        from .workprecision import workprecision_models

        return workprecision_models(self, config)

    def problem(self, flow, config: dict):
        from .workprecision import problem

        return problem(self, flow, config)

    # -- the data, torch-free (the report's figures read the truth) --------------------------------------------
    def true_field(self, y):
        return self.system.true_field(y)

    def truth(self, t):
        return data.truth(self.system, t)

    times = staticmethod(data.times)
    rms_distance = staticmethod(data.rms_distance)

    def observations(self, P, seed: int):
        return data.observations(self.system, P, seed)

    def field_grid(self, P, resolution: int | None = None, masked: bool = True):
        return data.field_grid(self.system, P, resolution, masked)

    def field_error(self, learned, points) -> float:
        return data.field_error(self.system, learned, points)

    def rollout(self, field, t):
        from .evaluate import rollout

        return rollout(self.system, field, t)


def define(system: System) -> Trajectory:
    """The task of ``system``; a task folder's ``__init__.py`` names it ``TASK`` and delegates its attributes to it
    (``def __getattr__(name): return getattr(TASK, name)``)."""
    return Trajectory(system)
