"""The study's vocabulary, torch-free: solver methods, model configs, the training protocol.

Everything here is plain data that the registry (``study.variants``,
``study.experiments``), the engine and the report layer all read; nothing
here imports torch, so the report layer can use it too.

:data:`METHODS` is the one place that says what a method is: its tableau (for
the hand backend), torchdiffeq's name for it, its stages per step, its order
and its display name.  torchdiffeq's ``rk4`` is Kutta's 3/8 rule, our
``rk4-38``: that fact lives only in this table.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

SIGMA = 0.1  # the article's noise N(0, 0.1), read as a standard deviation


@dataclass(frozen=True)
class Method:
    """A solver method: ``tableau`` names the hand backend's Butcher tableau (None: not hand-written),
    ``torchdiffeq`` torchdiffeq's name for the same arithmetic (None: torchdiffeq has none), ``implicit`` the
    diagonally implicit tableau of :mod:`study.engine.implicit` (the hand engine's stiff solvers, reached through
    the solve entry; the training variants and the shipped experiments use the explicit methods)."""

    name: str
    order: int
    stages: int  # function evaluations per step (adaptive: per attempted step, FSAL aside)
    label: str
    macro: str  # its stem in macro names of numbers.tex (letters only)
    tableau: str | None = None
    torchdiffeq: str | None = None
    adaptive: bool = False
    implicit: str | None = None
    stability: str = "explicit"  # its linear stability: "explicit" (a bounded region), "A-stable" or "L-stable"
    real_limit: float | None = None  # an explicit method's stability interval on the negative real axis: h rho
    # beyond it and a mode of eigenvalue -rho grows (Hairer & Wanner IV.2); None: unbounded (implicit)


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("euler", 1, 1, "Euler", "Euler", tableau="euler", torchdiffeq="euler", real_limit=2.0),
    Method("midpoint", 2, 2, "midpoint", "Midpoint", tableau="midpoint", torchdiffeq="midpoint", real_limit=2.0),
    Method("rk4", 4, 4, "RK4", "RKfour", tableau="rk4", real_limit=2.785),  # the classic RK4: torchdiffeq has none
    Method("rk4-38", 4, 4, "RK4 3/8", "RKtte", tableau="rk4-38", torchdiffeq="rk4", real_limit=2.785),  # torchdiffeq's "rk4" is the 3/8 rule
    Method("dopri5", 5, 6, "dopri5", "Dopri", tableau="dopri5", torchdiffeq="dopri5", adaptive=True, real_limit=3.307),
    Method("backward-euler", 1, 1, "backward Euler", "BackEuler", implicit="backward-euler",
           stability="L-stable"),
    Method("trapezoid", 2, 2, "trapezoid", "Trapezoid", implicit="trapezoid", stability="A-stable"),
    Method("kvaerno3", 3, 4, "Kvaerno 3(2)", "Kvaerno", implicit="kvaerno3", adaptive=True,
           stability="L-stable"),
)}
EXPLICIT = tuple(n for n, m in METHODS.items() if m.implicit is None)
FIXED_METHODS = tuple(n for n in EXPLICIT if not METHODS[n].adaptive)  # what training variants and transfer use
ADAPTIVE_METHODS = tuple(n for n in EXPLICIT if METHODS[n].adaptive)
# What a run's numbers depend on beyond its config: the code path that computes them, versioned.  A change of
# a path's numerics bumps its version here; the version is part of every config that uses the path, so
# `run-all` reruns exactly the runs it changed and `study status` shows their old records as stale.  The
# step and evaluation engines share the evaluation (engine/evaluation.py) and the steppers (engine/stepper.py):
# a change to their arithmetic bumps both.
ENGINES = {
    "fused": 1,  # the hand backend's fused fixed-step solve and the ResNet (engine/hand_solve.py)
    "evaluation": 1,  # the hand engine's continuous adjoint on one evaluation (engine/hand_ode.py)
    "step": 1,  # the hand engine's one-node steps: adaptive direct and checkpointed solves (engine/step_node.py)
    "torchdiffeq": 1,  # our dynamics under torchdiffeq's odeint / odeint_adjoint (engine/models.py)
    "implicit": 1,  # the implicit methods: Newton on each stage, gradients by the implicit function theorem
}


def engine_label(name: str) -> str:
    return f"{name}-{ENGINES[name]}"


EXPLICIT_ENGINES = tuple(sorted(n for n in ENGINES if n != "implicit"))  # what the bench and transfer run


def all_engines() -> str:
    """Every engine of the explicit methods with its version: what the bench, which runs them all, and a transfer
    run, which solves with explicit methods alone, depend on (the implicit methods' engine is a training run's)."""
    return ",".join(engine_label(name) for name in EXPLICIT_ENGINES)


MODELS = ("ode", "resnet", "none")
HEADS = ("mlp", "linear")
# Model options added after the first records: stored in a config only when they differ from these.
LATER_DEFAULTS = {"head": "mlp", "in_dim": 2, "classes": 2, "newton_tol": 1e-10, "newton_max_iter": 12}
NEWTON_TOL_RANGE = (1e-14, 1e-2)
NEWTON_MAX_ITER_MAX = 100

BACKENDS = ("hand", "torchdiffeq", "torchdiffeq-adjoint", "hand-adjoint", "hand-checkpoint")
HAND_BACKENDS = ("hand", "hand-adjoint", "hand-checkpoint")  # the hand engine: direct, continuous adjoint, checkpointed
DIRECT_BACKENDS = ("hand", "torchdiffeq")  # backpropagation through the solve: each evaluation has one VJP


def torchdiffeq_method(tdq_name: str) -> Method:
    """Our method for torchdiffeq's name ``tdq_name`` (``rk4`` -> the 3/8 rule)."""
    for m in METHODS.values():
        if m.torchdiffeq == tdq_name:
            return m
    raise ValueError(f"torchdiffeq method {tdq_name!r} is not in the study's method table")


def solver_method(solver: str) -> tuple[str, Method]:
    """``(backend, method)`` of a solver named ``hand-<method>`` (our tableau) or ``tdq-<torchdiffeq's name>``."""
    backend, _, name = solver.partition("-")
    if backend == "tdq":
        return backend, torchdiffeq_method(name)
    if backend == "hand" and name in METHODS:
        return backend, METHODS[name]
    raise ValueError(f"unknown solver {solver!r}: use hand-<method> or tdq-<torchdiffeq method>")


@dataclass
class ModelConfig:
    """Everything that defines a model (plain data; see ``study.variants``)."""

    model: str = "ode"  # "ode" | "resnet" | "none" (lift and head only: the control without a flow)
    backend: str = "hand"  # "hand" | "torchdiffeq" | "torchdiffeq-adjoint"
    method: str = "euler"  # a name in METHODS
    steps: int = 20  # fixed-step solvers; ResNet blocks
    rtol: float | None = None  # adaptive solvers
    atol: float | None = None
    adjoint_norm: str | None = None  # None | "seminorm"
    lift_dim: int = 6
    hidden: int = 128
    head_hidden: int = 64
    time_input: bool = True
    zero_init: bool = True
    max_num_steps: int = 1000  # cap of adaptive steps per solve
    head: str = "mlp"  # "mlp": Linear(d, 64) - ReLU - Linear(64, classes); "linear": Linear(d, classes)
    in_dim: int = 2  # input features (the spiral's points: 2)
    classes: int = 2
    newton_tol: float = 1e-10  # implicit methods: Newton's tolerance (relative; never below 64 ulps of the state)
    newton_max_iter: int = 12  # implicit methods: Newton's iteration cap on a stage

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in names})

    def validate(self) -> None:
        def bad(msg):
            raise ValueError(msg)

        if self.model not in MODELS:
            bad(f"model must be one of {', '.join(MODELS)}, got {self.model!r}")
        if self.head not in HEADS:
            bad(f"head must be one of {', '.join(HEADS)}, got {self.head!r}")
        if self.backend not in BACKENDS:
            bad(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if not isinstance(self.steps, int) or self.steps < 1:
            bad(f"steps must be a positive integer, got {self.steps!r}")
        for name in ("lift_dim", "hidden", "head_hidden", "in_dim"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                bad(f"{name} must be a positive integer, got {v!r}")
        if isinstance(self.classes, bool) or not isinstance(self.classes, int) or self.classes < 2:
            bad(f"classes must be an integer of at least 2, got {self.classes!r}")
        if self.model != "ode":
            return
        method = METHODS.get(self.method)
        if method is None:
            bad(f"unknown method {self.method!r}; choose one of {', '.join(FIXED_METHODS + ADAPTIVE_METHODS)}")
        if method.adaptive and not (self.rtol and self.atol and self.rtol > 0 and self.atol > 0):
            bad(f"{self.method} needs positive rtol and atol")
        if self.backend in HAND_BACKENDS and method.tableau is None and method.implicit is None:
            bad(f"the hand engine has no {self.method!r}")
        if method.implicit and self.backend not in ("hand", "hand-checkpoint"):
            bad(f"{self.method} (implicit) runs on the hand engine with the direct or the checkpointed gradient "
                f"(backend hand or hand-checkpoint), got {self.backend!r}")
        if self.backend not in HAND_BACKENDS and method.torchdiffeq is None:
            bad(f"torchdiffeq has no {self.method!r} (its 'rk4' is our {torchdiffeq_method('rk4').name!r})")
        if not (isinstance(self.newton_tol, float) and NEWTON_TOL_RANGE[0] <= self.newton_tol <= NEWTON_TOL_RANGE[1]):
            bad(f"newton_tol must be a number from {NEWTON_TOL_RANGE[0]:g} to {NEWTON_TOL_RANGE[1]:g}, got {self.newton_tol!r}")
        if (isinstance(self.newton_max_iter, bool) or not isinstance(self.newton_max_iter, int)
                or not 1 <= self.newton_max_iter <= NEWTON_MAX_ITER_MAX):
            bad(f"newton_max_iter must be an integer from 1 to {NEWTON_MAX_ITER_MAX}, got {self.newton_max_iter!r}")
        if not method.implicit and (self.newton_tol, self.newton_max_iter) != (1e-10, 12):
            bad(f"{self.method} is explicit: Newton's tolerance and cap are the implicit methods' options")
        if self.adjoint_norm not in (None, "seminorm"):
            bad(f"adjoint_norm must be null or 'seminorm', got {self.adjoint_norm!r}")

    @property
    def adaptive(self) -> bool:
        return self.model == "ode" and METHODS[self.method].adaptive

    def as_config(self) -> dict:
        """The fields a run's config stores.  Fields added after the first records leave the config
        when they hold their default (:data:`LATER_DEFAULTS`), so adding one renames no record."""
        return {k: v for k, v in asdict(self).items() if not (k in LATER_DEFAULTS and v == LATER_DEFAULTS[k])}

    @property
    def engine(self) -> str:
        """The versioned code path that computes this model's solves (see :data:`ENGINES`); ``plain``
        for the model without a flow, whose lift and head are plain torch layers."""
        if self.model == "none":
            return "plain"
        if METHODS[self.method].implicit:
            return engine_label("implicit")
        if self.model == "resnet" or (self.backend == "hand" and not self.adaptive):
            return engine_label("fused")
        if self.backend in ("hand", "hand-checkpoint"):
            return engine_label("step")
        return engine_label("evaluation" if self.backend in HAND_BACKENDS else "torchdiffeq")

    @property
    def batches_seeds(self) -> bool:
        """Whether several seeds can train as one batched model: fixed steps always; adaptive steps on the hand
        engine's direct backpropagation and continuous adjoint, which control each member's steps (torchdiffeq
        and the checkpointed adjoint, with one step sequence per solve, cannot; nor can an implicit method, whose
        Newton iterations stop on the whole batch's update)."""
        if self.model == "ode" and METHODS[self.method].implicit:
            return False
        return not self.adaptive or self.backend in ("hand", "hand-adjoint")

    @property
    def stages(self) -> int:
        """Evaluations per step (ResNet: one per block)."""
        return METHODS[self.method].stages if self.model == "ode" else 1

    def param_count(self) -> int:
        """Parameters of one model, counted from the architecture (the engine's models are tested against it)."""
        d, H, h = self.lift_dim, self.hidden, self.head_hidden
        resnet = self.model == "resnet"
        time_column = H if self.time_input and not resnet else 0  # ResNet blocks have no time input
        dynamics = (d * H + H + time_column) + (H * H + H) + (H * d + d)
        core = {"ode": 1, "resnet": self.steps, "none": 0}[self.model] * dynamics
        k = self.classes
        head = (d * h + h) + (h * k + k) if self.head == "mlp" else d * k + k
        return (self.in_dim * d + d) + core + head


@dataclass
class Protocol:
    """The training protocol: the article's defaults, every number configurable."""

    epochs: int = 500
    lr: float = 0.01
    batch_size: int = 128
    n_train: int = 1000
    n_test: int = 10_000
    sigma: float = SIGMA
    eval_every: int = 10  # test-accuracy curve every this many epochs (and at the last)
    curve_test_points: int = 2000  # the curve uses the first this many test points; final test_acc uses all
    # the stiffness remedies (each 0: off; a config names only those that are on, so records made before them keep
    # their names): RNODE's penalties (Finlay et al. 2020), STEER's random end time (Ghosh et al. 2020: each
    # batch solves to T ~ U(1 - steer, 1 + steer); evaluation at 1), decoupled weight decay (AdamW)
    kinetic: float = 0.0  # weight of the kinetic energy int |f|^2 dt
    jacobian: float = 0.0  # weight of int |df/dy|_F^2 dt (Hutchinson's estimate, one Gaussian probe per point)
    steer: float = 0.0
    weight_decay: float = 0.0

    @classmethod
    def from_dict(cls, d: dict) -> "Protocol":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    def validate(self) -> None:
        for name in ("epochs", "batch_size", "n_train", "n_test", "eval_every", "curve_test_points"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not (self.lr > 0 and self.sigma >= 0):
            raise ValueError("lr must be positive and sigma non-negative")
        for name in REMEDIES:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a non-negative number, got {v!r}")
        if self.steer >= 1:
            raise ValueError(f"steer must be below 1 (the end time is drawn from [1 - steer, 1 + steer]), got {self.steer!r}")

    @property
    def regularised(self) -> bool:
        """Whether the loss has RNODE's penalties (the solve then carries their integrals)."""
        return self.kinetic > 0 or self.jacobian > 0

    @property
    def remedied(self) -> bool:
        """Whether training solves differently from the plain protocol (RNODE's states or STEER's end times)."""
        return self.regularised or self.steer > 0

    def as_config(self) -> dict:
        """The protocol as a config says it: the remedies only where they are on."""
        return {k: v for k, v in asdict(self).items() if k not in REMEDIES or v}

    @property
    def batches(self) -> int:
        """Mini-batches per epoch."""
        return -(-self.n_train // self.batch_size)


REMEDIES = ("kinetic", "jacobian", "steer", "weight_decay")  # the protocol's remedy weights


def train_engine(model_cfg: ModelConfig, protocol: Protocol) -> str:
    """The engine that trains ``model_cfg`` under ``protocol``: a remedied protocol's solves go through the
    evaluation-based engines (the fused fixed-step solve has no extra states and no end time), RNODE's on
    :mod:`study.engine.rnode`'s field."""
    engine = model_cfg.engine
    if model_cfg.model != "ode" or not protocol.remedied:
        return engine
    if model_cfg.backend == "hand" and not model_cfg.adaptive:
        engine = engine_label("step")
    return engine + (f"+rnode-{RNODE_VERSION}" if protocol.regularised else "")


RNODE_VERSION = 1  # study/engine/rnode.py's VERSION (this module imports no torch)


def run_config(model_cfg: ModelConfig, protocol: Protocol, seed: int, device: str = "cpu", extra: dict | None = None) -> dict:
    """The full config a training record stores (and its store path is hashed from)."""
    return {"kind": "train", **(extra or {}), "seed": int(seed), "device": device, **model_cfg.as_config(),
            **protocol.as_config(), "engine": train_engine(model_cfg, protocol)}


def solver_label(solver: dict) -> str:
    """A solver of the transfer and work-precision kinds by name: ``euler-20``, ``dopri5-1e-03``,
    ``dopri5-1e-08-f64`` (``{"method", "steps"}`` or ``{"method", "tol"}``, ``"dtype": "float64"`` optional)."""
    grid = f"{solver['steps']}" if "steps" in solver else f"{solver['tol']:.0e}"
    return f"{solver['method']}-{grid}" + ("-f64" if solver.get("dtype") == "float64" else "")
