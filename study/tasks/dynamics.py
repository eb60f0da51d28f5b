"""Task ``dynamics``: learn a known vector field from one trajectory of it.

The standard Neural ODE demonstration (torchdiffeq's ``examples/ode_demo.py``), written here from
scratch.  The truth is ``dy/dt = (y**3) A`` with ``A = [[-0.1, 2], [-2, -0.1]]`` (row vectors),
``y(0) = (2, 0)``, observed at ``n_points`` equally spaced times on ``[0, t_end]`` (optionally with
Gaussian noise of standard deviation ``noise``), integrated by scipy's DOP853 in float64 at
``rtol = 1e-10, atol = 1e-12`` (the tests check it against torchdiffeq's dopri5 and our own).

The model is a vector field ``f(y) = W2 tanh(W1 y**3 + b1) + b2`` (2 -> ``field_hidden`` -> 2,
weights N(0, 0.1^2), biases 0, as in the demo).  It is trained on random windows: each iteration
draws ``batch_size`` start indices, solves from the observed state there over the window's
``batch_time`` observation times with the variant's solver and gradient method, and minimises the
mean absolute error against the observations (Adam at 0.01 with cosine decay over 2,000
iterations: the demo's RMSprop at 1e-3 leaves the field error still falling at 2,000).  Each window is a chain of one
solve per observation interval (fixed-step methods: ``steps`` steps per interval; adaptive ones
restart their step control at each observation), on every backend alike.

Metrics (all against the noise-free truth; lower is better):

* ``traj_err``: the learned field rolled out from ``y(0)`` over ``[0, t_end]`` by a tight reference
  solve (torchdiffeq's dopri5 in float64, ``rtol = 1e-9, atol = 1e-10``), not the training solver:
  the RMS over the observation times of the distance to the truth.  The model only ever saw
  ``batch_time``-point windows, so this is its long-horizon prediction;
* ``extrap_err``: the same rollout over the held-out time ``(t_end, t_end + t_extrapolate]``;
* ``field_err``: the relative RMS error of the learned field against the true one on a grid over
  the data's region (the points of a ``grid`` x ``grid`` lattice over the trajectory's bounding box
  within ``band`` of an observed state);
* ``traj_err_own``: the rollout over ``[0, t_end]`` with the training solver itself (what the model
  "believes" it fits).  A model that learned its solver's errors has a small ``traj_err_own`` and a
  large ``traj_err``.

A perfect field scores 0 on every metric; the field of the wrong sign has ``field_err`` exactly 2.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from . import ITERATIONS_MAX, Metric, Option, Reference, lr_option
from . import ensemble
from .ensemble import Ensemble, History, is_solver_failure
from ..config import METHODS, ModelConfig, engine_label, solver_label

NAME = "dynamics"
VERSION = 1
TITLE = "Fitting known dynamics"
SUMMARY = "learn dy/dt = (y**3) A from one trajectory (torchdiffeq's ode_demo); errors on held-out time"
A = np.array([[-0.1, 2.0], [-2.0, -0.1]])
Y0 = np.array([2.0, 0.0])
TRUTH_TOL = (1e-10, 1e-12)  # rtol, atol of the truth's solve
ROLLOUT_TOL = (1e-9, 1e-10)  # the reference rollout of a learned field (float64)
ROLLOUT_MAX_STEPS = 200_000

METRICS = (
    Metric("traj_err", "trajectory error, reference solve", False, "RMS"),
    Metric("extrap_err", "extrapolation error", False, "RMS"),
    Metric("field_err", "vector-field error", False, "relative RMS"),
    Metric("traj_err_own", "trajectory error, training solver", False, "RMS"),
)
PRIMARY = "traj_err"
REFERENCE = Reference("true dynamics", "the true field: every error is 0", 0.0)
OPTIONS = (Option("--iterations", "iterations", "int", 1, ITERATIONS_MAX, help="training iterations"),
           lr_option(),
           Option("--noise", "noise", "float", 0.0, 1.0, help="observation noise std (the trajectory's radius is 2 at "
                                                               "most)"))


@dataclass
class Protocol:
    """The training protocol and the data: every number configurable."""

    iterations: int = 2000
    lr: float = 0.01
    optimizer: str = "adam"  # with cosine decay of the learning rate; or "rmsprop" (constant, as the demo)
    batch_time: int = 10  # observation times per window
    batch_size: int = 20  # windows per iteration
    n_points: int = 1000
    t_end: float = 25.0
    t_extrapolate: float = 10.0
    noise: float = 0.0
    field_hidden: int = 50
    eval_every: int = 50  # curve points every this many iterations
    grid: int = 40
    band: float = 0.2
    # the stiffness remedies (each 0: off; a config names only those that are on).  STEER's random end time does
    # not apply: the loss compares the solution with observations at fixed times
    kinetic: float = 0.0  # RNODE: weight of the kinetic energy int |f|^2 dt over each window
    jacobian: float = 0.0  # RNODE: weight of int |df/dy|_F^2 dt over each window
    weight_decay: float = 0.0  # decoupled weight decay (AdamW; RMSprop's own weight decay with rmsprop)

    @classmethod
    def from_dict(cls, d: dict) -> "Protocol":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    def validate(self) -> None:
        for name in ("iterations", "batch_size", "n_points", "field_hidden", "eval_every", "grid"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not isinstance(self.batch_time, int) or self.batch_time < 2:
            raise ValueError(f"batch_time must be an integer of at least 2, got {self.batch_time!r}")
        if self.n_points - self.batch_time < self.batch_size:
            raise ValueError(f"n_points - batch_time ({self.n_points - self.batch_time}) must be at least "
                             f"batch_size ({self.batch_size}): windows are drawn without replacement")
        for name in ("lr", "t_end", "t_extrapolate", "band"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive number, got {v!r}")
        if self.optimizer not in ("rmsprop", "adam"):
            raise ValueError(f"optimizer must be rmsprop or adam, got {self.optimizer!r}")
        if not (math.isfinite(self.noise) and self.noise >= 0):
            raise ValueError(f"noise must be a non-negative number, got {self.noise!r}")
        for name in REMEDIES:
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a non-negative number, got {v!r}")

    @property
    def regularised(self) -> bool:
        return self.kinetic > 0 or self.jacobian > 0

    def as_config(self) -> dict:
        """The protocol as a config says it: the remedies only where they are on (records made before them keep
        their names)."""
        return {k: v for k, v in asdict(self).items() if k not in REMEDIES or v}


REMEDIES = ("kinetic", "jacobian", "weight_decay")  # the protocol's remedy weights


# -- which variants apply, and their configs ------------------------------------------------------------------

DEFAULT_STEPS = 1  # fixed-step methods: steps per observation interval (the window's own grid)


def not_applicable(variant) -> str | None:
    """Why ``variant`` (a :class:`study.variants.Variant`) does not apply here; None if it does."""
    model = variant.model_config.model
    if model == "resnet":
        return ("a ResNet's blocks are depth-indexed maps with no time: the task needs the state at every "
                "observation time of a rollout over [0, t_end + t_extrapolate]")
    if model == "none":
        return "the flow is the model: without one there is nothing to fit"
    return None


def model_config(variant: str, overrides: dict | None = None) -> ModelConfig:
    return ensemble.model_config(variant, overrides, DEFAULT_STEPS)


def engine_of(cfg: ModelConfig) -> str:
    """The engine a model's solves run on: the hand engine's one-node steps (direct and checkpointed), its
    continuous adjoint on one evaluation, or torchdiffeq."""
    if cfg.backend in ("hand", "hand-checkpoint"):
        return engine_label("step")
    return engine_label("evaluation" if cfg.backend == "hand-adjoint" else "torchdiffeq")


def run_config(variant: str, model_cfg: ModelConfig, protocol: Protocol, seed: int, device: str = "cpu",
               extra: dict | None = None) -> dict:
    return ensemble.run_config((NAME, VERSION), variant, model_cfg, protocol, seed, device, extra, engine_of(model_cfg))


def config_model(config: dict) -> ModelConfig:
    return ModelConfig.from_dict(config)


def cost(config: dict, members: int) -> float:
    """Relative cost (units: one evaluation at batch 128 of the spiral's network; this field is ~10x cheaper)."""
    P = Protocol.from_dict(config)
    method = METHODS[config["method"]]
    per_interval = 8 if method.adaptive else config.get("steps", 1) * method.stages
    factor = 2.0 if config["backend"] != "hand" else 1.5
    return 0.1 * P.iterations * (P.batch_time - 1) * per_interval * factor * (1 if members == 1 else 0.6 * members)


# -- the truth and the data ------------------------------------------------------------------------------------

def true_field(y: np.ndarray) -> np.ndarray:
    """``(y**3) A`` for states ``(..., 2)``."""
    return (y ** 3) @ A


@lru_cache(maxsize=8)
def _truth(times: tuple) -> np.ndarray:
    from scipy.integrate import solve_ivp

    sol = solve_ivp(lambda t, y: true_field(y), (times[0], times[-1]), Y0, method="DOP853", t_eval=np.array(times),
                    rtol=TRUTH_TOL[0], atol=TRUTH_TOL[1])
    if not sol.success:
        raise RuntimeError(f"the truth's solve failed: {sol.message}")
    return sol.y.T.copy()


def times(P: Protocol) -> tuple[np.ndarray, np.ndarray]:
    """The observation times on ``[0, t_end]`` and the held-out times of the extrapolation, at the same spacing
    as far as ``t_end + t_extrapolate``."""
    obs = np.linspace(0.0, P.t_end, P.n_points)
    h = obs[1] - obs[0]
    n_ext = max(1, int(round(P.t_extrapolate / h)))
    return obs, P.t_end + h * np.arange(1, n_ext + 1)


def truth(t: np.ndarray) -> np.ndarray:
    """The true states ``(len(t), 2)`` at increasing times ``t`` from 0 (float64)."""
    t = np.asarray(t, dtype=float)
    full = np.concatenate([[0.0], t]) if t[0] != 0.0 else t
    out = _truth(tuple(full.tolist()))
    return out[1:] if t[0] != 0.0 else out


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(stream), 21]))


STREAM_NOISE, STREAM_WINDOWS = 0, 1


def observations(P: Protocol, seed: int) -> np.ndarray:
    """What member ``seed`` trains on: the truth at the observation times plus its own noise (float32)."""
    t_obs, _ = times(P)
    y = truth(t_obs)
    if P.noise > 0:
        y = y + P.noise * _rng(seed, STREAM_NOISE).standard_normal(y.shape)
    return y.astype(np.float32)


def field_grid(P: Protocol, resolution: int | None = None, masked: bool = True) -> np.ndarray:
    """The points ``(M, 2)`` where the field error is measured: a lattice over the true trajectory's bounding box
    (on ``[0, t_end]``, widened by ``band``), those within ``band`` of an observed true state (all of them with
    ``masked=False``)."""
    return _grid(P.t_end, P.n_points, P.band, P.grid if resolution is None else resolution, masked).copy()


@lru_cache(maxsize=16)
def _grid(t_end: float, n_points: int, band: float, n: int, masked: bool) -> np.ndarray:
    y = truth(np.linspace(0.0, t_end, n_points))
    lo, hi = y.min(0) - band, y.max(0) + band
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n))
    pts = np.stack([gx.ravel(), gy.ravel()], 1)
    if not masked:
        return pts
    d2 = ((pts[:, None, :] - y[None, :, :]) ** 2).sum(-1).min(1)
    return pts[d2 <= band ** 2]


def field_error(learned: np.ndarray, points: np.ndarray) -> float:
    """Relative RMS error of ``learned`` (the field's values ``(M, 2)`` at ``points``) against the truth's."""
    ref = true_field(points)
    return float(np.sqrt(((learned - ref) ** 2).sum(1).mean() / (ref ** 2).sum(1).mean()))


def rms_distance(states: np.ndarray, ref: np.ndarray) -> float:
    """RMS over time of the distance between two trajectories ``(T, 2)`` (NaN for a non-finite one)."""
    d = np.sqrt(((states - ref) ** 2).sum(-1).mean())
    return float(d) if np.isfinite(d) else float("nan")


# -- the field and the model -----------------------------------------------------------------------------------

class CubicField:
    """``f(y) = W2 tanh(W1 y**3 + b1) + b2`` for the hand engine (:mod:`study.engine.field`): raw parameters
    ``(W1 (S, H, 2), b1 (S, H), W2 (S, 2, H), b2 (S, 2))``; no time input; states ``(S, 2, B)``."""

    name = "cubic-mlp"

    def fold(self, raw):
        W1, b1, W2, b2 = raw
        return (W1, b1.unsqueeze(-1), W2, b2.unsqueeze(-1))

    def as_weights(self, entries):
        return tuple(entries)

    def forward(self, y, t, w):
        import torch

        W1, c1, W2, c2 = w
        u = y * y * y
        h = torch.baddbmm(c1, W1, u).tanh_()
        return torch.baddbmm(c2, W2, h), (u, h)

    def backward_weights(self, w):
        return (w[0], w[2]), None

    @staticmethod
    def _back(g, y, saved, W1, W2):
        import torch

        u, h = saved
        gz = torch.bmm(W2.transpose(1, 2), g).mul_(1.0 - h * h)
        gy = torch.bmm(W1.transpose(1, 2), gz).mul_(3.0 * y * y)
        return gz, gy

    def vjp(self, g, y, t, saved, tensors, meta):
        import torch

        gz, gy = self._back(g, y, saved, *tensors)
        u, h = saved
        return gy, (torch.bmm(gz, u.transpose(1, 2)), gz.sum(-1, keepdim=True), torch.bmm(g, h.transpose(1, 2)),
                    g.sum(-1, keepdim=True))

    def vjp_into(self, acc, g, y, t, saved, tensors, meta):
        gz, gy = self._back(g, y, saved, *tensors)
        u, h = saved
        acc[0].baddbmm_(gz, u.transpose(1, 2))
        acc[1].add_(gz.sum(-1, keepdim=True))
        acc[2].baddbmm_(g, h.transpose(1, 2))
        acc[3].add_(g.sum(-1, keepdim=True))
        return gy

    def unfold(self, grads, sign: float = 1.0):
        g0, g1, g2, g3 = grads
        if sign == 1.0:
            return (g0, g1.squeeze(-1), g2, g3.squeeze(-1))
        return (sign * g0, sign * g1.squeeze(-1), sign * g2, sign * g3.squeeze(-1))


CUBIC = CubicField()


class RegularisedCubic(CubicField):
    """The cubic field with RNODE's integrands as two more rows of the state, ``(y, E, F)``: ``E' = |f|^2`` and
    ``F' = |df/dy|_F^2 = sum_k |J e_k|^2`` (``J = W2 D W1 diag(3 y^2)``, its columns by forward-mode); the VJP
    through both, by hand (second derivatives of the tanh layer and of ``y**3``)."""

    name = "cubic-mlp-rnode"
    rows = 4

    def forward(self, y, t, w):
        import torch

        W1, c1, W2, c2 = w
        z = y[:, :2]
        u = z * z * z
        h = torch.baddbmm(c1, W1, u).tanh_()
        f = torch.baddbmm(c2, W2, h)
        d = 1.0 - h * h
        cols = []  # per input k: s_k = 3 y_k^2, a_k = W1[:, k] s_k, v_k = D a_k, J e_k = W2 v_k
        for k in range(2):
            s = 3.0 * z[:, k: k + 1] ** 2
            a = W1[:, :, k: k + 1] * s
            v = d * a
            cols += (s, a, v, torch.bmm(W2, v))
        frob = sum((jk * jk).sum(1, keepdim=True) for jk in cols[3::4])
        return torch.cat([f, (f * f).sum(1, keepdim=True), frob], 1), (z, u, h, d, f, *cols)

    def _back_reg(self, g, saved, W1, W2, grads: list):
        import torch

        z, u, h, d, f = saved[:5]
        gf = g[:, :2] + 2.0 * g[:, 2:3] * f
        W2t = W2.transpose(1, 2)
        bd, gy = torch.zeros_like(h), torch.zeros_like(z)
        gW1, gW2 = torch.zeros_like(W1), torch.bmm(gf, h.transpose(1, 2))
        for k in range(2):
            s, a, v, jk = saved[5 + 4 * k: 9 + 4 * k]
            q = 2.0 * g[:, 3:4] * jk
            gW2.baddbmm_(q, v.transpose(1, 2))
            bv = torch.bmm(W2t, q)
            bd += bv * a
            ba = bv * d
            gW1[:, :, k] += (ba * s).sum(-1)
            gy[:, k] += (ba * W1[:, :, k: k + 1]).sum(1) * 6.0 * z[:, k]
        gp = torch.bmm(W2t, gf).sub_(2.0 * h * bd).mul_(d)
        gW1.baddbmm_(gp, u.transpose(1, 2))
        gy += torch.bmm(W1.transpose(1, 2), gp) * (3.0 * z * z)
        grads[:] = [gW1, gp.sum(-1, keepdim=True), gW2, gf.sum(-1, keepdim=True)]
        return torch.cat([gy, torch.zeros_like(g[:, 2:])], 1)

    def vjp(self, g, y, t, saved, tensors, meta):
        grads: list = []
        gy = self._back_reg(g, saved, *tensors, grads)
        return gy, tuple(grads)

    def vjp_into(self, acc, g, y, t, saved, tensors, meta):
        grads: list = []
        gy = self._back_reg(g, saved, *tensors, grads)
        for a, x in zip(acc, grads):
            a.add_(x)
        return gy


CUBIC_RNODE = RegularisedCubic()


class Flow(Ensemble):
    """``S`` independent copies of the cubic field (one per seed, stacked weights) and the variant's solves
    (:class:`study.tasks.ensemble.Ensemble`); ``flow(t, y)`` is torchdiffeq's right-hand side."""

    field = CUBIC

    def __init__(self, cfg: ModelConfig, seeds, hidden: int = 50, device="cpu", dtype=None):
        import torch

        seeds = [int(s) for s in seeds]
        S, H = len(seeds), hidden
        dtype = dtype or torch.float32
        W1, b1 = torch.zeros(S, H, 2, dtype=dtype), torch.zeros(S, H, dtype=dtype)
        W2, b2 = torch.zeros(S, 2, H, dtype=dtype), torch.zeros(S, 2, dtype=dtype)
        for s, seed in enumerate(seeds):  # each member's draws depend on its seed alone
            g = torch.Generator().manual_seed(seed * 7919 + 17)
            W1[s].normal_(0.0, 0.1, generator=g)
            W2[s].normal_(0.0, 0.1, generator=g)
        super().__init__(cfg, seeds, [p.to(device).requires_grad_() for p in (W1, b1, W2, b2)])
        self.hidden = hidden

    def __call__(self, t, y):  # torchdiffeq's right-hand side
        import torch

        self.counter.counts[self.counter.phase] += 1
        if self.field is not CUBIC:  # the regularised field: its own forward (plain autograd differentiates it)
            return self.field.forward(y, t, self.field.fold(self.params))[0]
        W1, b1, W2, b2 = self.params
        h = torch.baddbmm(b1.unsqueeze(-1), W1, y * y * y).tanh()
        return torch.baddbmm(b2.unsqueeze(-1), W2, h)

    def values(self, points: np.ndarray):
        """The field of every member at ``points`` ``(M, 2)``: ``(S, M, 2)`` (not counted)."""
        import torch

        with torch.no_grad():
            y = torch.as_tensor(points, dtype=self.params[0].dtype, device=self.params[0].device)
            y = y.T.unsqueeze(0).expand(len(self.seeds), 2, -1)
            f, _ = CUBIC.forward(y, 0.0, CUBIC.fold(self.params))
        return f.transpose(1, 2).cpu().double().numpy()


# -- training --------------------------------------------------------------------------------------------------

def _batch(obs, gens, P: Protocol):
    """Each member's windows: starts ``(S, B)`` without replacement, ``y0 (S, 2, B)``, targets ``(T, S, 2, B)``."""
    import torch

    starts = torch.as_tensor(np.stack([g.choice(P.n_points - P.batch_time, P.batch_size, replace=False)
                                       for g in gens]), device=obs.device)
    member = torch.arange(obs.shape[0], device=obs.device).unsqueeze(1)
    target = torch.stack([obs[member, starts + k] for k in range(P.batch_time)])  # (T, S, B, 2)
    target = target.transpose(2, 3)
    return target[0].contiguous(), target


def _iterate(flow: Flow, opt, obs, gens, t_rel, P: Protocol):
    """One iteration: each member's loss (mean absolute error over its windows; with RNODE's penalties in the
    objective, not in the loss returned)."""
    counter = flow.counter
    y0, target = _batch(obs, gens, P)
    counter.phase = "forward"
    if not P.regularised:
        pred = flow.solve(y0, t_rel)
        per_member = objective = (pred - target).abs().mean((0, 2, 3))
    else:
        import torch

        flow.field = CUBIC_RNODE
        try:
            pred = flow.solve(torch.cat([y0, torch.zeros_like(y0)], 1), t_rel)  # (y, E, F), E and F from 0
        finally:
            flow.field = CUBIC
        per_member = (pred[:, :, :2] - target).abs().mean((0, 2, 3))
        objective = per_member + P.kinetic * pred[-1, :, 2].mean(-1) + P.jacobian * pred[-1, :, 3].mean(-1)
    opt.zero_grad(set_to_none=True)
    counter.phase = "backward"
    objective.sum().backward()
    counter.phase = "forward"
    opt.step()
    return per_member.detach().tolist()


def _optimizer(params, P: Protocol):
    """RMSprop (constant, as the demo) or Adam; with weight decay, RMSprop's own or AdamW's decoupled one."""
    from ..engine import optim

    if P.optimizer == "rmsprop":
        return optim.RMSprop(params, lr=P.lr, weight_decay=P.weight_decay)
    if P.weight_decay > 0:
        return optim.AdamW(params, lr=P.lr, weight_decay=P.weight_decay)
    return optim.Adam(params, lr=P.lr)


def fit(cfg: ModelConfig, P: Protocol, seeds, device: str = "cpu", progress=None):
    """Train one field per seed (as one ensemble): ``(flow, history)``."""
    import torch

    cfg.validate()
    P.validate()
    if len(seeds) > 1 and not cfg.batches_seeds:
        raise ValueError(f"{cfg.backend} has one step-size controller per solve: train its seeds one at a time")
    obs = torch.as_tensor(np.stack([observations(P, s) for s in seeds]), device=device)
    gens = [_rng(s, STREAM_WINDOWS) for s in seeds]
    t_rel = [float(x) for x in times(P)[0][: P.batch_time]]
    flow = Flow(cfg, seeds, P.field_hidden, device)
    opt = _optimizer(flow.params, P)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=P.iterations) if P.optimizer == "adam" else None
    h = History(len(seeds), CURVES)
    points = field_grid(P)
    ensemble.train(h, flow.counter, lambda: _iterate(flow, opt, obs, gens, t_rel, P),
                   lambda: {"field_err": [field_error(v, points) for v in flow.values(points)]},
                   P.iterations, P.eval_every, sched, progress)
    return flow, h


# -- evaluation ------------------------------------------------------------------------------------------------

def reference_rollout(weights: list, t: np.ndarray):
    """A member's field (float64 weights ``(1, ...)``) rolled out from ``y(0)`` at times ``t`` by torchdiffeq's
    dopri5 at :data:`ROLLOUT_TOL`: ``(states (len(t), 2), NFE, failure or None)``."""
    w = CUBIC.fold(weights)
    return rollout(lambda y: CUBIC.forward(y, 0.0, w)[0], t)


def rollout(field, t: np.ndarray):
    """Any field ``field(y)`` (``(1, 2, 1)`` float64 tensors) rolled out from ``y(0)`` at times ``t`` by the reference
    solve: ``(states (len(t), 2), NFE, failure or None)``."""
    import torch
    import torchdiffeq

    nfe = [0]

    def f(_, y):
        nfe[0] += 1
        return field(y)

    y0 = torch.tensor(Y0, dtype=torch.float64).view(1, 2, 1)
    tt = torch.as_tensor(t, dtype=torch.float64)
    try:
        with torch.no_grad():
            ys = torchdiffeq.odeint(f, y0, tt, method="dopri5", rtol=ROLLOUT_TOL[0], atol=ROLLOUT_TOL[1],
                                    options={"max_num_steps": ROLLOUT_MAX_STEPS})
    except AssertionError as exc:
        if not is_solver_failure(exc):
            raise
        return np.full((len(t), 2), np.nan), nfe[0], str(exc)
    return ys[:, 0, :, 0].numpy(), nfe[0], None


def own_rollout(flow: Flow, t: np.ndarray, cfg: ModelConfig | None = None):
    """Every member rolled out from ``y(0)`` at times ``t`` by ``cfg``'s solver (default the training one), in the
    model's precision, no graph: ``(states (S, len(t), 2), NFE per member)``.  A member whose solve fails is NaN."""
    import torch

    S = len(flow.seeds)
    y0 = torch.tensor(Y0, dtype=flow.params[0].dtype, device=flow.params[0].device).view(1, 2, 1).expand(S, 2, 1)
    counter = flow.counter
    saved = dict(counter.counts), counter.accepted, counter.rejected, dict(counter.failures)
    counter.phase = "eval"
    before = counter.counts["eval"]
    try:
        with torch.no_grad():
            ys = flow.solve(y0.contiguous(), [float(x) for x in t], cfg)[:, :, :, 0].transpose(0, 1).cpu().double().numpy()
    except AssertionError as exc:
        if not is_solver_failure(exc):
            raise
        ys = np.full((S, len(t), 2), np.nan)
    nfe = counter.counts["eval"] - before
    counter.counts.update(saved[0])
    counter.accepted, counter.rejected, counter.failures = saved[1], saved[2], saved[3]
    counter.phase = "forward"
    return ys, nfe


def as_dtype(flow: Flow, dtype) -> Flow:
    """A copy of ``flow`` with its weights in ``dtype`` (its own counter)."""
    other = Flow(flow.cfg, flow.seeds, flow.hidden, flow.params[0].device, dtype)
    for mine, theirs in zip(other.params, flow.params):
        mine.data.copy_(theirs.detach())
    return other


def transfer_rows(flow: Flow, P: Protocol, solvers: list[dict]) -> list[list]:
    """Each member's trajectory error when its trained field is rolled out over ``[0, t_end]`` by each of
    ``solvers`` (the hand engine, as :func:`study.tasks.spiral.transfer_rows` takes them), and the evaluations
    that took: ``[[{solver, traj_err, nfe}, ...] per member]``."""
    import torch

    t_obs = times(P)[0]
    true = truth(t_obs)
    rows: list[list] = [[] for _ in flow.seeds]
    for solver in solvers:
        over = {"backend": "hand", "method": solver["method"]}
        over.update({"steps": solver["steps"]} if "steps" in solver else {"rtol": solver["tol"], "atol": solver["tol"]})
        cfg = ModelConfig.from_dict({**flow.cfg.__dict__, **over})
        other = as_dtype(flow, torch.float64 if solver.get("dtype") == "float64" else torch.float32)
        ys, nfe = own_rollout(other, t_obs, cfg)
        for s in range(len(flow.seeds)):
            err = rms_distance(ys[s], true)
            rows[s].append({"solver": solver_label(solver), "traj_err": err if math.isfinite(err) else None,
                            "nfe": nfe})
    return rows


def member_metrics(flow: Flow, s: int, P: Protocol, own: np.ndarray | None = None) -> dict:
    """The task's metrics of member ``s``: reference rollout errors, the field error, the own-solver error."""
    t_obs, t_ext = times(P)
    t_all = np.concatenate([t_obs, t_ext])
    ref, nfe, failure = reference_rollout(flow.member_weights(s), t_all)
    points = field_grid(P)
    true = truth(t_all)
    n = len(t_obs)
    out = {"traj_err": rms_distance(ref[:n], true[:n]), "extrap_err": rms_distance(ref[n:], true[n:]),
           "field_err": field_error(flow.values(points)[s], points), "reference_nfe": nfe,
           "reference_failure": failure}
    if own is not None:
        out["traj_err_own"] = rms_distance(own[s], true[: own.shape[1]])
    return out, ref


# -- records ---------------------------------------------------------------------------------------------------

CURVES = ("loss", "field_err", "nfe_forward", "nfe_backward", "accepted_steps", "rejected_steps")
SCHEMA = {
    **{f"config.{k}": t for k, t in {"task": "str", "task_version": "int", "variant": "str", "seed": "int",
                                     "device": "str", "model": "str", "backend": "str", "method": "str",
                                     "engine": "str", "iterations": "int", "lr": "float", "batch_time": "int",
                                     "batch_size": "int", "n_points": "int", "t_end": "float", "noise": "float",
                                     "field_hidden": "int"}.items()},
    **{f"metrics.{k}": t for k, t in {"params": "int", "traj_err": "float?", "extrap_err": "float?",
                                      "field_err": "float?", "traj_err_own": "float?", "final_loss": "float?",
                                      "iterations_completed": "int", "nfe_forward": "int", "nfe_backward": "int",
                                      "nfe_eval": "int", "accepted_steps": "int", "rejected_steps": "int",
                                      "reference_nfe": "int", "wall_time_s": "float"}.items()},
    **{f"curves.{k}": t for k, t in {"iteration": "list[int]", "loss": "list[float?]", "field_err": "list[float?]",
                                     "nfe_forward": "list[int]", "nfe_backward": "list[int]",
                                     "accepted_steps": "list[int]", "rejected_steps": "list[int]"}.items()},
    "data.times": "list[float]", "data.rollout": "list[list[float?]]", "data.rollout_own": "list[list[float?]]",
    "data.quiver": "list[list[float?]]",
}
SAME_LENGTH = [("curves.iteration", "curves.loss", "curves.field_err", "curves.nfe_forward")]
FIGURE_TIMES = 4  # the record's rollout keeps every this many observation times
QUIVER = 15  # the record's field on a QUIVER x QUIVER lattice over the data's box (phase portraits)


def _figure_data(flow: Flow, s: int, P: Protocol, ref: np.ndarray, own) -> dict:
    """What the figures draw: the reference rollout over ``[0, t_end + t_extrapolate]`` and the training solver's
    over ``[0, t_end]`` at every :data:`FIGURE_TIMES`-th observation time, and the field on a lattice."""
    t_obs, t_ext = times(P)
    t_all = np.concatenate([t_obs, t_ext])
    keep = np.arange(0, len(t_all), FIGURE_TIMES)
    lattice = field_grid(P, QUIVER, masked=False)
    f = flow.values(lattice)[s]
    short = lambda a: [[_short(x) for x in row] for row in a]  # noqa: E731 - six digits are plenty for a figure
    return {"times": [_short(x) for x in t_all[keep]], "rollout": short(ref[keep]),
            "rollout_own": short(own[s][keep[keep < len(t_obs)]]), "quiver": short(np.concatenate([lattice, f], 1))}


def _short(x) -> float | None:
    x = float(x)
    return float(f"{x:.6g}") if math.isfinite(x) else None


def _member_record(flow: Flow, h: History, s: int, P: Protocol, config: dict, own, env: dict, counts) -> dict:
    from .. import records

    diverged = s in h.diverged
    c = h.curves
    e = h.stopped.get(s, h.done)
    n_curve = sum(1 for it in c["iteration"] if it <= e)
    mine = {k: [row[s] for row in c[k][:n_curve]] for k in CURVES}
    metrics, ref = member_metrics(flow, s, P, own)
    if diverged:
        metrics.update(traj_err=None, extrap_err=None, field_err=None, traj_err_own=None)
    metrics.update({
        "params": flow.param_count(), "final_loss": mine["loss"][-1] if mine["loss"] else None,
        "iterations_completed": e, "nfe_forward": counts["forward"][s], "nfe_backward": counts["backward"][s],
        "nfe_eval": counts["eval"][s], "accepted_steps": counts["accepted"][s], "rejected_steps": counts["rejected"][s],
        "wall_time_s": h.wall_s / h.S})
    timing = {"isolated": False, "ensemble_members": h.S, "ensemble_seeds": list(flow.seeds),
              "ensemble_wall_time_s": h.wall_s,
              "note": "wall_time_s is the ensemble's training-loop time divided by its members, measured while other "
                      "runs may share the machine (contended)"}
    curves = {"iteration": c["iteration"][:n_curve], **mine}
    data = _figure_data(flow, s, P, ref, own)
    return records.make(config, metrics, env, "diverged" if diverged else "ok", h.diverged.get(s), timing=timing,
                        curves=curves, data=data)


def train(configs: list[dict], progress=None, transfer: list[dict] | None = None):
    """The records of one job (configs that differ only in their seed) and the trained flow."""
    from ..provenance import environment

    first = configs[0]
    cfg, P = config_model(first), Protocol.from_dict(first)
    seeds = [c["seed"] for c in configs]
    flow, h = fit(cfg, P, seeds, first.get("device", "cpu"), progress)
    counts = flow.counter.snapshot(len(seeds))  # training's evaluations; the rollouts below are not counted
    own, own_nfe = own_rollout(flow, times(P)[0])
    counts["eval"] = [own_nfe] * len(seeds)
    env = environment(first.get("device", "cpu"))
    recs = [_member_record(flow, h, s, P, c, own, env, counts) for s, c in enumerate(configs)]
    if transfer:
        for rec, rows in zip(recs, transfer_rows(flow, P, transfer)):
            if rec["status"] == "ok":
                rec["metrics"]["transfer"] = rows
    return recs, flow


def summary(record: dict) -> list[str]:
    m = record["metrics"]
    fmt = lambda v: "n/a" if v is None else f"{v:.4g}"  # noqa: E731
    return [f"  trajectory error {fmt(m['traj_err'])} (reference solve; training solver {fmt(m['traj_err_own'])})   "
            f"extrapolation error {fmt(m['extrap_err'])}   field error {fmt(m['field_err'])} (relative)",
            f"  params {m['params']:,}   final loss {fmt(m['final_loss'])}   iterations {m['iterations_completed']:,}",
            f"  NFE forward {m['nfe_forward']:,}   backward {m['nfe_backward']:,}   wall {m['wall_time_s']:.1f} s"]


# -- the work-precision kind's problem: the field over one window ----------------------------------------------

STREAM_PROBLEM = 2


def workprecision_models(config: dict) -> dict:
    """``{name: (flow, status)}`` for the names in ``config["fields"]``: ``trained`` (``train_variant`` trained
    alone on ``seed`` with ``protocol``) and ``initial`` (its initial weights)."""
    P = Protocol.from_dict(config["protocol"])
    cfg = model_config(config["train_variant"])
    out = {}
    for name in config["fields"]:
        if name == "initial":
            out[name] = (Flow(cfg, [config["seed"]], P.field_hidden), "ok")
        else:
            flow, h = fit(cfg, P, [config["seed"]])
            out[name] = (flow, "diverged" if h.diverged else "ok")
    return out


def problem(flow: Flow, config: dict):
    """The field of ``flow`` (member 0, float64) from ``batch`` true states at random observation times over one
    window (``batch_time - 1`` observation intervals); the loss is the mean absolute error of the end states
    against the truth there."""
    import torch

    from ..runners.workprecision import Problem

    P = Protocol.from_dict(config["protocol"])
    t_obs = times(P)[0]
    true = truth(t_obs)
    starts = _rng(config["seed"], STREAM_PROBLEM).choice(P.n_points - P.batch_time, config["batch"], replace=False)
    y0 = torch.as_tensor(true[starts].T, dtype=torch.float64).unsqueeze(0).contiguous()
    target = torch.as_tensor(true[starts + P.batch_time - 1].T, dtype=torch.float64).unsqueeze(0)
    t1 = float(t_obs[P.batch_time - 1])
    return Problem(CUBIC, tuple(flow.member_weights(0)), y0, 0.0, t1, lambda y1: (y1 - target).abs().mean())
