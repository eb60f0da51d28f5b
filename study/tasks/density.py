"""Task ``density``: a continuous normalising flow (FFJORD) on a 2-D toy density.

Data: one of the standard 2-D densities (:data:`DENSITIES`), generated here from a seeded generator
(``moons`` by scikit-learn's ``make_moons``): training, validation and held-out samples drawn
independently (streams of ``data_seed``, the same for every model seed).

Model: the flow ``dz/dt = f(z, t)`` carries a data point ``x = z(0)`` to ``z(T)``, which should be
standard normal; the change in log-density is the integral of the field's divergence, carried as a
third state ``l' = tr(df/dz)``, so ``log p(x) = log N(z(T)) + l(T)``.  The field is a time-dependent
tanh MLP ``W3 tanh(W2 tanh(W1 z + b1 + t u1) + b2 + t u2) + b3`` (2 -> ``hidden`` -> ``hidden`` -> 2).
The divergence is exact (two Jacobian-vector products in 2-D, by forward-mode propagation through the
network); ``divergence: hutchinson`` replaces it in training by the Hutchinson estimate ``e^T J e``
with one Gaussian probe per sample and solve (evaluation is always exact).  :class:`CNFField` is the
hand engine's field, its VJP (through the divergence's second derivatives) written out by hand.

The stiffness remedies are protocol options, each off by default: RNODE's kinetic-energy and
Jacobian-norm penalties (``kinetic``, ``jacobian``: weights of integrals carried as two more states),
STEER's random end time (``steer``: each iteration integrates to ``t_end + U(-steer, steer)``) and
decoupled weight decay (``weight_decay``, AdamW).

Training minimises the mean negative log-likelihood of a minibatch of 256 (Adam at 5e-3 with cosine decay
over 1,000 iterations; about 20 s a seed with the hand engine's RK4 on one core).

Metrics (nats per sample; lower is better):

* ``nll``: held-out NLL with the reference solve (torchdiffeq's dopri5 in float64 at
  ``rtol = atol =`` :data:`REFERENCE_TOL`), whatever the training solver;
* ``nll_own``: the held-out NLL that the training solver reports, and ``nll_bias = nll_own - nll``;
* ``gap``: ``nll`` minus the data density's differential entropy (the floor no model goes below in
  expectation; by Monte Carlo with its standard error, closed form for the checkerboard).  The two are
  independent samples, so the report reads the paired gap instead, ``nll`` minus :func:`floor` (the held-out
  points' own ``-mean log p``);
* ``mass`` and ``mass_own``: the learned density integrated on a ``grid`` x ``grid`` lattice over the
  box ``[-BOX, BOX]^2`` that holds the data, by the reference solve and by the training solver (a
  valid flow gives 1, less the mass outside the box; a solver whose likelihood is not a density's
  gives something else).

The records keep the training solver's density on the lattice and samples of the flow (drawn by
the reference solve backwards from ``N(0, I)``) for the figures.
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

NAME = "density"
VERSION = 1
TITLE = "Density estimation (continuous normalising flow)"
SUMMARY = "FFJORD on a 2-D toy density; held-out NLL by a reference solve, against the data's entropy"
DENSITIES = ("8gaussians", "checkerboard", "2spirals", "moons")
DEFAULT_DENSITY = "8gaussians"
REFERENCE_TOL = 1e-8  # rtol = atol of the float64 reference solve of every metric
REFERENCE_MAX_STEPS = 100_000
BOX = 4.5  # the mass lattice covers [-BOX, BOX]^2
LOG_2PI = math.log(2.0 * math.pi)

METRICS = (
    Metric("nll", "held-out NLL, reference solve", False, "nats"),
    Metric("nll_own", "held-out NLL, training solver", False, "nats"),
    Metric("nll_bias", "training solver's NLL minus the reference's", False, "nats", target=0.0),
    Metric("gap", "NLL above the data's entropy", False, "nats"),
    Metric("mass", "total mass on the lattice, reference solve", False, target=1.0),
    Metric("mass_own", "total mass on the lattice, training solver", False, target=1.0),
)
PRIMARY = "nll"
BENCH_BATCH = 256  # the task bench's batch: the training batch
REFERENCE = Reference("data entropy", "the data density's differential entropy: the floor of the expected NLL "
                                      "(Monte Carlo, closed form for the checkerboard)")
OPTIONS = (Option("--iterations", "iterations", "int", 1, ITERATIONS_MAX, help="training iterations"),
           lr_option(), Option("--density", "density", "choice", choices=DENSITIES,
                                    help="the data density"))


@dataclass
class Protocol:
    """The training protocol and the data: every number configurable."""

    density: str = DEFAULT_DENSITY
    iterations: int = 1000
    lr: float = 5e-3
    batch_size: int = 256
    hidden: int = 32
    t_end: float = 1.0
    divergence: str = "exact"  # or "hutchinson" (training only)
    n_train: int = 10_000
    n_val: int = 1_000
    n_test: int = 2_000
    data_seed: int = 0
    eval_every: int = 25  # curve points every this many iterations
    grid: int = 48
    n_samples: int = 1_000  # samples of the flow kept for the figures
    # the stiffness remedies (each 0: off; a config names only those that are on)
    kinetic: float = 0.0  # RNODE: weight of the kinetic energy int |f|^2 dt in the loss
    jacobian: float = 0.0  # RNODE: weight of int |df/dz|_F^2 dt
    steer: float = 0.0  # STEER: each iteration's end time uniform on [t_end - steer, t_end + steer]
    weight_decay: float = 0.0  # decoupled weight decay (AdamW) instead of Adam

    @classmethod
    def from_dict(cls, d: dict) -> "Protocol":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    def validate(self) -> None:
        if self.density not in DENSITIES:
            raise ValueError(f"unknown density {self.density!r}; choose one of: {', '.join(DENSITIES)}")
        for name in ("iterations", "batch_size", "hidden", "n_train", "n_val", "n_test", "eval_every", "grid",
                     "n_samples"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.batch_size > self.n_train:
            raise ValueError(f"batch_size ({self.batch_size}) must be at most n_train ({self.n_train})")
        for name in ("lr", "t_end"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive number, got {v!r}")
        if self.divergence not in ("exact", "hutchinson"):
            raise ValueError(f"divergence must be exact or hutchinson, got {self.divergence!r}")
        if not isinstance(self.data_seed, int) or self.data_seed < 0:
            raise ValueError(f"data_seed must be a non-negative integer, got {self.data_seed!r}")
        for name in REMEDIES:
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a non-negative number, got {v!r}")
        if self.steer >= self.t_end:
            raise ValueError(f"steer ({self.steer:g}) must be below t_end ({self.t_end:g}): end times must stay positive")

    @property
    def regularised(self) -> bool:
        return self.kinetic > 0 or self.jacobian > 0

    def as_config(self) -> dict:
        """The protocol as a config says it: every field, the remedies only where they are on (so that adding a
        remedy renamed no record made without one)."""
        return {k: v for k, v in asdict(self).items() if k not in REMEDIES or v}


REMEDIES = ("kinetic", "jacobian", "steer", "weight_decay")  # the protocol's remedy weights


# -- the data and their entropy --------------------------------------------------------------------------------

def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(stream), 22]))


STREAM_TRAIN, STREAM_VAL, STREAM_TEST, STREAM_ENTROPY, STREAM_BATCHES, STREAM_PROBES, STREAM_PROBLEM, STREAM_STEER = range(8)
SPLITS = {"train": STREAM_TRAIN, "val": STREAM_VAL, "test": STREAM_TEST}
_S2 = 1.0 / math.sqrt(2.0)
GAUSS_CENTRES = 4.0 * np.array([(1, 0), (-1, 0), (0, 1), (0, -1), (_S2, _S2), (_S2, -_S2), (-_S2, _S2), (-_S2, -_S2)])
GAUSS_STD, GAUSS_DIV = 0.5, 1.414
SPIRAL_TURN = 540 * 2 * math.pi / 360  # the 2spirals' largest angle (3 pi)
SPIRAL_BOX, SPIRAL_NOISE, SPIRAL_DIV = 0.5, 0.1, 3.0
MOONS_NOISE, MOONS_SCALE, MOONS_SHIFT = 0.1, 2.0, np.array([-1.0, -0.2])


def sample(density: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points ``(n, 2)`` (float64) of ``density``, drawn from ``rng``."""
    if density == "8gaussians":
        idx = rng.integers(0, 8, n)
        return (rng.standard_normal((n, 2)) * GAUSS_STD + GAUSS_CENTRES[idx]) / GAUSS_DIV
    if density == "checkerboard":
        x1 = rng.random(n) * 4 - 2
        x2 = rng.random(n) - rng.integers(0, 2, n) * 2 + np.floor(x1) % 2
        return np.stack([x1, x2], 1) * 2
    if density == "2spirals":
        m = (n + 1) // 2
        t = np.sqrt(rng.random((m, 1))) * SPIRAL_TURN
        d = np.hstack([-np.cos(t) * t, np.sin(t) * t]) + rng.random((m, 2)) * SPIRAL_BOX
        return np.vstack([d, -d])[:n] / SPIRAL_DIV + rng.standard_normal((n, 2)) * SPIRAL_NOISE
    if density == "moons":
        try:
            from sklearn.datasets import make_moons
        except ImportError:
            raise RuntimeError("the moons density needs scikit-learn: pip install 'study[sklearn]'") from None
        x, _ = make_moons(n, noise=MOONS_NOISE, random_state=int(rng.integers(0, 2 ** 31 - 1)))
        return x * MOONS_SCALE + MOONS_SHIFT
    raise ValueError(f"unknown density {density!r}; choose one of: {', '.join(DENSITIES)}")


def data(P: Protocol, split: str) -> np.ndarray:
    """The ``split`` (train, val or test) points of the protocol's data (float64), independent draws."""
    n = {"train": P.n_train, "val": P.n_val, "test": P.n_test}[split]
    return _data(P.density, n, P.data_seed, SPLITS[split]).copy()


@lru_cache(maxsize=16)
def _data(density: str, n: int, seed: int, stream: int) -> np.ndarray:
    return sample(density, n, _rng(seed, stream))


def _norm_logpdf(x: np.ndarray, mean: np.ndarray, std: float) -> np.ndarray:
    return -0.5 * (((x - mean) / std) ** 2).sum(-1) - 2 * math.log(std) - LOG_2PI


def _logmeanexp(a: np.ndarray, axis: int) -> np.ndarray:
    m = a.max(axis, keepdims=True)
    return (m + np.log(np.exp(a - m).mean(axis, keepdims=True))).squeeze(axis)


def _box_gauss(x: np.ndarray, lo: np.ndarray, width: float, std: float) -> np.ndarray:
    """Density of ``U[lo, lo + width] + N(0, std^2)`` at ``x`` (elementwise)."""
    from scipy.special import ndtr

    return (ndtr((x - lo) / std) - ndtr((x - lo - width) / std)) / width


def log_density(density: str, x: np.ndarray, nodes: int = 2000) -> np.ndarray:
    """The data density's log at points ``x`` ``(n, 2)``: exact for the Gaussians and the checkerboard, by the
    midpoint rule over the curve's parameter (``nodes`` points) for the spirals and the moons."""
    if density == "8gaussians":
        c = GAUSS_CENTRES / GAUSS_DIV
        return _logmeanexp(np.stack([_norm_logpdf(x, ci, GAUSS_STD / GAUSS_DIV) for ci in c], 1), 1)
    if density == "checkerboard":
        u = x / 2
        inside = (np.abs(u[:, 0]) <= 2) & ((np.floor(u[:, 0]) + np.floor(u[:, 1])) % 2 == 0) & (np.abs(u[:, 1]) <= 2)
        return np.where(inside, -math.log(32.0), -np.inf)
    u = (np.arange(nodes) + 0.5) / nodes
    out = np.empty(len(x))
    with np.errstate(divide="ignore"):  # far from the data the density underflows: log 0 = -inf
        for i in range(0, len(x), 512):
            out[i: i + 512] = np.log(_curve_density(density, x[i: i + 512], u))
    return out


def _curve_density(density: str, x: np.ndarray, u: np.ndarray) -> np.ndarray:
    if density == "moons":
        th = np.pi * u
        arcs = (np.stack([np.cos(th), np.sin(th)], 1), np.stack([1 - np.cos(th), 0.5 - np.sin(th)], 1))
        s = MOONS_NOISE * MOONS_SCALE
        dens = [np.exp(_norm_logpdf(x[:, None, :], a * MOONS_SCALE + MOONS_SHIFT, s)).mean(1) for a in arcs]
        return 0.5 * (dens[0] + dens[1])
    t = np.sqrt(u) * SPIRAL_TURN  # n = sqrt(U) 3 pi: u's midpoints are equally likely
    base = np.stack([-np.cos(t) * t, np.sin(t) * t], 1) / SPIRAL_DIV  # (K, 2)
    w, s = SPIRAL_BOX / SPIRAL_DIV, SPIRAL_NOISE
    plus = _box_gauss(x[:, None, :], base, w, s).prod(-1).mean(1)
    minus = _box_gauss(x[:, None, :], -base - w, w, s).prod(-1).mean(1)
    return 0.5 * (plus + minus)


@lru_cache(maxsize=8)
def entropy(density: str, n: int = 20_000, seed: int = 0) -> tuple[float, float]:
    """The density's differential entropy in nats and its standard error: ``-E log p(X)`` by Monte Carlo over ``n``
    fresh samples (the checkerboard's is ``log 32``, exactly)."""
    if density == "checkerboard":
        return math.log(32.0), 0.0
    lp = log_density(density, sample(density, n, _rng(seed, STREAM_ENTROPY)))
    return float(-lp.mean()), float(lp.std(ddof=1) / math.sqrt(n))


def floor(P: Protocol) -> tuple[float, float]:
    """The held-out points' own floor: ``-mean log p(x)`` over the test split under the data's density, and its
    standard error.  ``nll`` minus this is a paired estimate of ``KL(p || q)`` on the same points, far less noisy
    than ``nll`` minus :func:`entropy` (two independent samples; 0.02 nats of sampling error at 2,000 points)."""
    return _floor(P.density, P.n_test, P.data_seed)


@lru_cache(maxsize=16)
def _floor(density: str, n: int, seed: int) -> tuple[float, float]:
    lp = log_density(density, _data(density, n, seed, STREAM_TEST))
    if not np.isfinite(lp).all():  # a point outside the support (the checkerboard's edges): no finite floor
        return float("inf"), 0.0
    return float(-lp.mean()), float(lp.std(ddof=1) / math.sqrt(n))


def reference_value(P: Protocol) -> float:
    return entropy(P.density)[0]


# -- the field: a time-dependent MLP with its exact divergence --------------------------------------------------

class CNFField:
    """``F(t, (z, l)) = (f(t, z), div)`` for the hand engine (:mod:`study.engine.field`), with
    ``f = W3 tanh(W2 tanh(W1 z + b1 + t u1) + b2 + t u2) + b3`` and ``div = sum_k p_k^T J p_k`` over the
    probes ``p_k``: the unit vectors (the exact trace) or, with :attr:`probe` set, one probe ``(S, 2, B)``
    (Hutchinson).  Raw parameters ``(W1 (S,H,2), b1 (S,H), u1 (S,H), W2 (S,H,H), b2, u2, W3 (S,2,H), b3 (S,2))``;
    states ``(S, 3, B)``; the field does not depend on ``l``.

    With ``regularise`` (RNODE, Finlay et al. 2020) the state carries two more rows, ``(z, l, E, F)``, integrated
    along the solve: the kinetic energy ``E' = |f|^2`` and the Jacobian's squared Frobenius norm
    ``F' = sum_k |J p_k|^2`` (exact over the unit vectors; Hutchinson's estimate with a probe)."""

    name = "cnf-mlp"

    def __init__(self, probe=None, regularise: bool = False):
        self.probe, self.regularise = probe, regularise

    @property
    def rows(self) -> int:
        """The state's rows: (z, l), and (E, F) with the regularisers."""
        return 5 if self.regularise else 3

    def fold(self, raw):
        W1, b1, u1, W2, b2, u2, W3, b3 = raw
        col = lambda v: v.unsqueeze(-1)  # noqa: E731
        return (W1, col(b1), col(u1), W2, col(b2), col(u2), W3, col(b3))

    def as_weights(self, entries):
        return tuple(entries)

    def _probes(self, z):
        import torch

        if self.probe is not None:
            return (self.probe,)
        S, _, B = z.shape
        eye = torch.eye(2, dtype=z.dtype, device=z.device)
        return tuple(eye[k].view(1, 2, 1).expand(S, 2, B) for k in range(2))

    def forward(self, y, t, w):
        import torch

        from ..engine.rnode import tangent

        W1, c1, u1, W2, c2, u2, W3, c3 = w
        z = y[:, :2]
        h1 = torch.baddbmm(c1 + t * u1, W1, z).tanh_()
        h2 = torch.baddbmm(c2 + t * u2, W2, h1).tanh_()
        f = torch.baddbmm(c3, W3, h2)
        d1, d2 = 1.0 - h1 * h1, 1.0 - h2 * h2
        div = torch.zeros_like(f[:, :1])
        tangents = []  # per probe: p, W1 p, D1 W1 p, W2 D1 W1 p, D2 W2 D1 W1 p, J p
        for p in self._probes(z):
            tan = tangent(W1, W2, W3, d1, d2, p)
            div += (p * tan[5]).sum(1, keepdim=True)
            tangents += tan
        if not self.regularise:
            return torch.cat([f, div], 1), (z, h1, h2, d1, d2, f, *tangents)
        frob = sum((jp * jp).sum(1, keepdim=True) for jp in tangents[5::6])
        return torch.cat([f, div, (f * f).sum(1, keepdim=True), frob], 1), (z, h1, h2, d1, d2, f, *tangents)

    def backward_weights(self, w):
        return (w[0], w[3], w[6]), None

    def _backward(self, g, t, saved, W1, W2, W3, grads: list) -> "torch.Tensor":
        """Accumulate the weight gradients into ``grads`` (a list shaped like the folded weights; entries None
        until set) and return ``g^T dF/dy``."""
        import torch

        from ..engine.rnode import tangent_vjp

        z, h1, h2, d1, d2, f = saved[:6]
        tangents = [saved[i: i + 6] for i in range(6, len(saved), 6)]
        gz, gl = g[:, :2], g[:, 2:3]
        if self.regularise:  # E' = |f|^2 and F' = sum |J p|^2: their cotangents on f and on each J p
            gz = gz + 2.0 * g[:, 3:4] * f
        W1t, W2t, W3t = W1.transpose(1, 2), W2.transpose(1, 2), W3.transpose(1, 2)
        bd1, bd2 = torch.zeros_like(h1), torch.zeros_like(h2)
        for tan in tangents:  # the divergence's terms: div = sum p^T W3 D2 W2 D1 W1 p
            p, jp = tan[0], tan[5]
            q = p * gl if not self.regularise else p * gl + 2.0 * g[:, 4:5] * jp
            tangent_vjp(q, tan, W1t, W2t, W3t, d1, d2, bd1, bd2, grads, (0, 3, 6))
        _add(grads, 6, torch.bmm(gz, h2.transpose(1, 2)))
        _add(grads, 7, gz.sum(-1, keepdim=True))
        bh2 = torch.baddbmm(-2.0 * h2 * bd2, W3t, gz)
        bp2 = bh2 * d2
        _add(grads, 3, torch.bmm(bp2, h1.transpose(1, 2)))
        _add(grads, 4, bp2.sum(-1, keepdim=True))
        _add(grads, 5, (t * bp2).sum(-1, keepdim=True))
        bh1 = torch.baddbmm(-2.0 * h1 * bd1, W2t, bp2)
        bp1 = bh1 * d1
        _add(grads, 0, torch.bmm(bp1, z.transpose(1, 2)))
        _add(grads, 1, bp1.sum(-1, keepdim=True))
        _add(grads, 2, (t * bp1).sum(-1, keepdim=True))
        return torch.cat([torch.bmm(W1t, bp1), torch.zeros_like(g[:, 2:])], 1)

    def vjp(self, g, y, t, saved, tensors, meta):
        grads = [None] * 8
        gy = self._backward(g, t, saved, *tensors, grads)
        return gy, tuple(grads)

    def vjp_into(self, acc, g, y, t, saved, tensors, meta):
        grads = [None] * 8
        gy = self._backward(g, t, saved, *tensors, grads)
        for a, x in zip(acc, grads):
            a.add_(x)
        return gy

    def unfold(self, grads, sign: float = 1.0):
        W1, b1, u1, W2, b2, u2, W3, b3 = grads
        sq = lambda v: v.squeeze(-1)  # noqa: E731
        out = (W1, sq(b1), sq(u1), W2, sq(b2), sq(u2), W3, sq(b3))
        return out if sign == 1.0 else tuple(sign * x for x in out)


def _add(grads: list, i: int, x) -> None:
    grads[i] = x if grads[i] is None else grads[i] + x


EXACT = CNFField()


def log_normal(z):
    """``log N(z; 0, I)`` of states ``(S, 2, B)``: ``(S, B)``."""
    return -0.5 * (z * z).sum(1) - LOG_2PI


class Flow(Ensemble):
    """``S`` independent CNFs (one per seed, stacked weights) and the variant's solves; ``flow(t, y)`` is
    torchdiffeq's right-hand side (plain autograd through the same forward-mode divergence)."""

    def __init__(self, cfg: ModelConfig, seeds, hidden: int = 32, device="cpu", dtype=None):
        import torch

        seeds = [int(s) for s in seeds]
        S, H = len(seeds), hidden
        dtype = dtype or torch.float32
        shapes = ((H, 2), (H,), (H,), (H, H), (H,), (H,), (2, H), (2,))
        fan_in = (2, 2, 2, H, H, H, H, H)
        params = [torch.zeros(S, *shape, dtype=dtype) for shape in shapes]
        for s, seed in enumerate(seeds):  # each member's draws depend on its seed alone (PyTorch's Linear init)
            g = torch.Generator().manual_seed(seed * 7919 + 22)
            for p, n in zip(params, fan_in):
                p[s].uniform_(-1 / math.sqrt(n), 1 / math.sqrt(n), generator=g)
        super().__init__(cfg, seeds, [p.to(device).requires_grad_() for p in params])
        self.hidden = hidden
        self.field = EXACT

    def __call__(self, t, y):  # torchdiffeq's right-hand side
        self.counter.counts[self.counter.phase] += 1
        return self.field.forward(y, t, self.field.fold(self.params))[0]

    def end_state(self, x, cfg: ModelConfig | None = None, t_end: float = 1.0):
        """The state at ``t_end`` ``(S, rows, B)`` from points ``x`` ``(S, 2, B)`` and zeros in the other rows (the
        log-density change and, with the training field's regularisers, their integrals), solved by ``cfg``."""
        import torch

        y0 = torch.cat([x, torch.zeros_like(x[:, :1]).expand(-1, self.field.rows - 2, -1)], 1)
        return self.interval(y0, 0.0, t_end, cfg)

    def log_likelihood(self, x, cfg: ModelConfig | None = None, t_end: float = 1.0):
        """``log p(x)`` ``(S, B)`` of points ``x`` ``(S, 2, B)`` under the flow solved by ``cfg``."""
        y1 = self.end_state(x, cfg, t_end)
        return log_normal(y1[:, :2]) + y1[:, 2]


# -- which variants apply, and their configs ------------------------------------------------------------------

DEFAULT_STEPS = 8  # fixed-step methods: steps over [0, t_end]


def not_applicable(variant) -> str | None:
    """Why ``variant`` (a :class:`study.variants.Variant`) does not apply here; None if it does."""
    model = variant.model_config.model
    if model == "resnet":
        return ("a residual block x + g(x) is invertible, and its log-determinant a density's, only under a "
                "Lipschitz bound (i-ResNet) that the registry's ResNet does not have")
    if model == "none":
        return "the flow is the model: without one there is no density but the base Gaussian"
    return None


def model_config(variant: str, overrides: dict | None = None) -> ModelConfig:
    return ensemble.model_config(variant, overrides, DEFAULT_STEPS)


def engine_of(cfg: ModelConfig) -> str:
    """The engine a model's solves run on (the field's own arithmetic: version 1 of the CNF field)."""
    if cfg.backend in ("hand", "hand-checkpoint"):
        return engine_label("step") + "+cnf-1"
    return engine_label("evaluation" if cfg.backend == "hand-adjoint" else "torchdiffeq") + "+cnf-1"


def run_config(variant: str, model_cfg: ModelConfig, protocol: Protocol, seed: int, device: str = "cpu",
               extra: dict | None = None) -> dict:
    return ensemble.run_config((NAME, VERSION), variant, model_cfg, protocol, seed, device, extra, engine_of(model_cfg))


def config_model(config: dict) -> ModelConfig:
    return ModelConfig.from_dict(config)


def cost(config: dict, members: int) -> float:
    """Relative cost (units: one evaluation at batch 128 of the spiral's network)."""
    P = Protocol.from_dict(config)
    method = METHODS[config["method"]]
    per_solve = 40 if method.adaptive else config.get("steps", DEFAULT_STEPS) * method.stages
    factor = 2.0 if config["backend"] != "hand" else 1.5
    scale = (P.hidden / 32) ** 2 * P.batch_size / 128
    return 0.5 * P.iterations * per_solve * factor * scale * (1 if members == 1 else 0.6 * members)


# -- training --------------------------------------------------------------------------------------------------

def _points(x: np.ndarray, S: int, like):
    """Points ``(n, 2)`` as every member's states ``(S, 2, n)``."""
    import torch

    return torch.as_tensor(x.T, dtype=like.dtype, device=like.device).unsqueeze(0).expand(S, 2, -1).contiguous()


class _Batches:
    """Each member's minibatches (its own generator: the draws depend on its seed alone) and, with Hutchinson's
    estimator, its probes."""

    def __init__(self, train: np.ndarray, seeds, P: Protocol, like):
        import torch

        self.train = torch.as_tensor(train, dtype=like.dtype, device=like.device)
        self.gens = [_rng(s, STREAM_BATCHES) for s in seeds]
        self.probe_gens = [torch.Generator().manual_seed(int(s) * 104729 + 22) for s in seeds]
        self.steer = _rng(P.data_seed, STREAM_STEER)  # one end time per iteration, the same for every seed
        self.P = P

    def end_time(self) -> float:
        """This iteration's end time: ``t_end``, or STEER's draw around it."""
        if self.P.steer == 0:
            return self.P.t_end
        return float(self.P.t_end + self.P.steer * (2.0 * self.steer.random() - 1.0))

    def next(self):
        import torch

        idx = torch.as_tensor(np.stack([g.choice(len(self.train), self.P.batch_size, replace=False)
                                        for g in self.gens]), device=self.train.device)
        x = self.train[idx].transpose(1, 2).contiguous()  # (S, 2, B)
        if self.P.divergence != "hutchinson":
            return x, None
        probe = torch.stack([torch.randn(2, self.P.batch_size, generator=g, dtype=x.dtype) for g in self.probe_gens])
        return x, probe.to(x.device)


def _iterate(flow: Flow, opt, batches: _Batches, P: Protocol) -> list:
    """One iteration: each member's minibatch NLL (what the loss curve shows; the regularisers' terms are in the
    objective, not in it)."""
    x, probe = batches.next()
    counter = flow.counter
    counter.phase = "forward"
    flow.field = EXACT if probe is None and not P.regularised else CNFField(probe, P.regularised)
    y1 = flow.end_state(x, t_end=batches.end_time())
    per_member = -(log_normal(y1[:, :2]) + y1[:, 2]).mean(1)
    objective = per_member
    if P.regularised:
        objective = per_member + P.kinetic * y1[:, 3].mean(1) + P.jacobian * y1[:, 4].mean(1)
    opt.zero_grad(set_to_none=True)
    counter.phase = "backward"
    objective.sum().backward()
    counter.phase = "forward"
    flow.field = EXACT
    opt.step()
    return per_member.detach().tolist()


def evaluate_nll(flow: Flow, x: np.ndarray, cfg: ModelConfig | None = None, t_end: float = 1.0) -> np.ndarray:
    """Every member's mean NLL of the points ``x`` under ``cfg``'s solve (default the training one), no graph, in
    the model's precision (not counted): ``(S,)``, NaN for a member whose solve failed."""
    return -log_likelihoods(flow, x, cfg, t_end)[0].mean(1)


def log_likelihoods(flow: Flow, x: np.ndarray, cfg: ModelConfig | None = None, t_end: float = 1.0,
                    chunk: int = 4096) -> tuple[np.ndarray, list]:
    """``log p`` of every point of ``x`` for every member ``(S, n)`` by ``cfg``'s solve, no graph, and each
    member's evaluations of one solve (the mean over the chunks of ``chunk`` points), counted apart from the
    model's own counter.  A member whose solve failed is NaN."""
    import torch

    from ..engine.models import Counter

    own, flow.counter = flow.counter, Counter()
    S = len(flow.seeds)
    out = np.full((S, len(x)), np.nan)
    flow.counter.phase = "eval"
    solves = 0
    try:
        with torch.no_grad():
            for i in range(0, len(x), chunk):
                solves += 1
                pts = _points(x[i: i + chunk], S, flow.params[0])
                out[:, i: i + chunk] = flow.log_likelihood(pts, cfg, t_end).cpu().double().numpy()
    except AssertionError as exc:
        if not is_solver_failure(exc):
            raise
        out[:] = np.nan
    finally:
        counter, flow.counter = flow.counter, own
    for m in counter.failures:
        out[m] = np.nan
    return out, [n / max(solves, 1) for n in counter.snapshot(S)["eval"]]


def _finite(v) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def fit(cfg: ModelConfig, P: Protocol, seeds, device: str = "cpu", progress=None):
    """Train one CNF per seed (as one ensemble): ``(flow, history)``."""
    import torch

    cfg.validate()
    P.validate()
    if len(seeds) > 1 and not cfg.batches_seeds:
        raise ValueError(f"{cfg.backend} has one step-size controller per solve: train its seeds one at a time")
    flow = Flow(cfg, seeds, P.hidden, device)
    batches = _Batches(data(P, "train"), seeds, P, flow.params[0])
    from ..engine import optim

    opt = (optim.AdamW(flow.params, lr=P.lr, weight_decay=P.weight_decay) if P.weight_decay > 0
           else optim.Adam(flow.params, lr=P.lr))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=P.iterations)
    h = History(len(seeds), CURVES)
    val = data(P, "val")
    ensemble.train(h, flow.counter, lambda: _iterate(flow, opt, batches, P),
                   lambda: {"val_nll": [_finite(evaluate_nll(member(flow, s), val, t_end=P.t_end)[0])
                                        for s in range(h.S)]},
                   P.iterations, P.eval_every, sched, progress)
    flow.field = EXACT
    return flow, h


# -- evaluation ------------------------------------------------------------------------------------------------

def reference_config(cfg: ModelConfig) -> ModelConfig:
    """The reference solve: torchdiffeq's dopri5 at :data:`REFERENCE_TOL` (run in float64)."""
    return ModelConfig.from_dict({**cfg.__dict__, "backend": "torchdiffeq", "method": "dopri5", "rtol": REFERENCE_TOL,
                                  "atol": REFERENCE_TOL, "max_num_steps": REFERENCE_MAX_STEPS})


def member(flow: Flow, s: int, dtype=None) -> Flow:
    """Member ``s`` of ``flow`` alone (a copy of its weights, in ``dtype`` if given, with its own counter): every
    metric is computed member by member, so a seed's record does not depend on the seeds it trained beside."""
    other = Flow(flow.cfg, flow.seeds[s: s + 1], flow.hidden, flow.params[0].device, dtype or flow.params[0].dtype)
    for mine, theirs in zip(other.params, flow.params):
        mine.data.copy_(theirs.detach()[s: s + 1])
    return other


def lattice(P: Protocol, resolution: int | None = None) -> tuple[np.ndarray, float]:
    """The mass lattice's points ``(n*n, 2)`` (cell centres over ``[-BOX, BOX]^2``, x fastest) and a cell's area."""
    n = P.grid if resolution is None else resolution
    h = 2 * BOX / n
    c = -BOX + h * (np.arange(n) + 0.5)
    gx, gy = np.meshgrid(c, c)
    return np.stack([gx.ravel(), gy.ravel()], 1), h * h


def samples(flow64: Flow, P: Protocol) -> np.ndarray:
    """``n_samples`` points of every member's flow ``(S, n, 2)``: ``N(0, I)`` draws carried from ``t_end`` back to 0
    by the reference solve (the same draws for every member)."""
    import torch

    # (this stream is STREAM_STEER's too; they never meet in one computation: to be separated at the next VERSION)
    z = np.random.default_rng(np.random.SeedSequence([P.data_seed, STREAM_PROBLEM + 1, 22])).standard_normal(
        (P.n_samples, 2))
    S = len(flow64.seeds)
    y = _points(z, S, flow64.params[0])
    y = torch.cat([y, torch.zeros_like(y[:, :1])], 1)
    flow64.counter.phase = "eval"
    try:
        with torch.no_grad():
            x = flow64.interval(y, P.t_end, 0.0, reference_config(flow64.cfg))[:, :2]
    except AssertionError as exc:
        if not is_solver_failure(exc):
            raise
        return np.full((S, P.n_samples, 2), np.nan)
    return x.transpose(1, 2).numpy()


def member_metrics(flow: Flow, P: Protocol) -> dict:
    """A one-member flow's metrics, the evaluations of its solves and what the figures draw."""
    import torch

    test = data(P, "test")
    points, area = lattice(P)
    ref = member(flow, 0, torch.float64)
    rcfg = reference_config(flow.cfg)
    lp_ref, nfe_ref = log_likelihoods(ref, test, rcfg, P.t_end)
    lp_own, nfe_own = log_likelihoods(flow, test, t_end=P.t_end)
    grid_ref, _ = log_likelihoods(ref, points, rcfg, P.t_end)
    grid_own, _ = log_likelihoods(flow, points, t_end=P.t_end)
    nll, own = _finite(-lp_ref[0].mean()), _finite(-lp_own[0].mean())
    floor = entropy(P.density)
    metrics = {"nll": nll, "nll_own": own, "nll_bias": None if nll is None or own is None else own - nll,
               "gap": None if nll is None else nll - floor[0], "entropy": floor[0], "entropy_se": floor[1],
               "mass": _finite(np.exp(grid_ref[0]).sum() * area), "mass_own": _finite(np.exp(grid_own[0]).sum() * area),
               "nfe_eval": float(nfe_own[0]), "reference_nfe": float(nfe_ref[0])}
    data_ = {"box": BOX, "grid_log_density": [_short(v) for v in grid_own[0]],
             "samples": [[_short(v) for v in row] for row in samples(ref, P)[0]]}
    return metrics, data_


def transfer_rows(flow: Flow, P: Protocol, solvers: list[dict]) -> list[dict]:
    """A one-member flow's held-out NLL when its trained field is solved by each of ``solvers`` (the hand engine,
    as :func:`study.tasks.spiral.transfer_rows` takes them), and the evaluations of that solve:
    ``[{solver, nll, nfe}, ...]``."""
    import torch

    test = data(P, "test")
    rows = []
    for solver in solvers:
        over = {"backend": "hand", "method": solver["method"]}
        over.update({"steps": solver["steps"]} if "steps" in solver else {"rtol": solver["tol"], "atol": solver["tol"]})
        cfg = ModelConfig.from_dict({**flow.cfg.__dict__, **over})
        other = member(flow, 0, torch.float64 if solver.get("dtype") == "float64" else torch.float32)
        lp, nfe = log_likelihoods(other, test, cfg, P.t_end)
        rows.append({"solver": solver_label(solver), "nll": _finite(-lp[0].mean()), "nfe": nfe[0]})
    return rows


# -- records ---------------------------------------------------------------------------------------------------

CURVES = ("loss", "val_nll", "nfe_forward", "nfe_backward", "accepted_steps", "rejected_steps")
SCHEMA = {
    **{f"config.{k}": t for k, t in {"task": "str", "task_version": "int", "variant": "str", "seed": "int",
                                     "device": "str", "model": "str", "backend": "str", "method": "str",
                                     "engine": "str", "density": "str", "iterations": "int", "lr": "float",
                                     "batch_size": "int", "hidden": "int", "t_end": "float", "divergence": "str",
                                     "n_train": "int", "n_test": "int", "grid": "int"}.items()},
    **{f"metrics.{k}": t for k, t in {"params": "int", "nll": "float?", "nll_own": "float?", "nll_bias": "float?",
                                      "gap": "float?", "entropy": "float", "entropy_se": "float", "mass": "float?",
                                      "mass_own": "float?", "final_loss": "float?", "iterations_completed": "int",
                                      "nfe_forward": "int", "nfe_backward": "int", "nfe_eval": "float?",
                                      "accepted_steps": "int", "rejected_steps": "int", "reference_nfe": "float?",
                                      "wall_time_s": "float"}.items()},
    **{f"curves.{k}": t for k, t in {"iteration": "list[int]", "loss": "list[float?]", "val_nll": "list[float?]",
                                     "nfe_forward": "list[int]", "nfe_backward": "list[int]",
                                     "accepted_steps": "list[int]", "rejected_steps": "list[int]"}.items()},
    "data.box": "float", "data.grid_log_density": "list[float?]", "data.samples": "list[list[float?]]",
}
SAME_LENGTH = [("curves.iteration", "curves.loss", "curves.val_nll", "curves.nfe_forward")]


def _short(x) -> float | None:
    x = float(x)
    return float(f"{x:.5g}") if math.isfinite(x) else None


def _member_record(flow: Flow, h: History, s: int, P: Protocol, config: dict, env: dict, counts,
                   transfer: list[dict] | None = None) -> dict:
    from .. import records

    diverged = s in h.diverged
    c = h.curves
    e = h.stopped.get(s, h.done)
    n_curve = sum(1 for it in c["iteration"] if it <= e)
    mine = {k: [row[s] for row in c[k][:n_curve]] for k in CURVES}
    alone = member(flow, s)
    if diverged:  # its weights are not a model: nothing to evaluate or draw
        H = entropy(P.density)
        metrics = {"nll": None, "nll_own": None, "nll_bias": None, "gap": None, "entropy": H[0], "entropy_se": H[1],
                   "mass": None, "mass_own": None, "nfe_eval": None, "reference_nfe": None}
        data_ = {"box": BOX, "grid_log_density": [], "samples": []}
    else:
        metrics, data_ = member_metrics(alone, P)
    if not diverged and transfer:
        metrics["transfer"] = transfer_rows(alone, P, transfer)
    metrics.update({
        "params": flow.param_count(), "final_loss": mine["loss"][-1] if mine["loss"] else None,
        "iterations_completed": e, "nfe_forward": counts["forward"][s], "nfe_backward": counts["backward"][s],
        "accepted_steps": counts["accepted"][s], "rejected_steps": counts["rejected"][s],
        "wall_time_s": h.wall_s / h.S})
    timing = {"isolated": False, "ensemble_members": h.S, "ensemble_seeds": list(flow.seeds),
              "ensemble_wall_time_s": h.wall_s,
              "note": "wall_time_s is the ensemble's training-loop time divided by its members, measured while other "
                      "runs may share the machine (contended)"}
    return records.make(config, metrics, env, "diverged" if diverged else "ok", h.diverged.get(s), timing=timing,
                        curves={"iteration": c["iteration"][:n_curve], **mine}, data=data_)


def train(configs: list[dict], progress=None, transfer: list[dict] | None = None):
    """The records of one job (configs that differ only in their seed) and the trained flow."""
    from ..provenance import environment

    first = configs[0]
    cfg, P = config_model(first), Protocol.from_dict(first)
    seeds = [c["seed"] for c in configs]
    flow, h = fit(cfg, P, seeds, first.get("device", "cpu"), progress)
    counts = flow.counter.snapshot(len(seeds))
    env = environment(first.get("device", "cpu"))
    return [_member_record(flow, h, s, P, c, env, counts, transfer) for s, c in enumerate(configs)], flow


def summary(record: dict) -> list[str]:
    m = record["metrics"]
    fmt = lambda v: "n/a" if v is None else f"{v:.4g}"  # noqa: E731
    return [f"  held-out NLL {fmt(m['nll'])} nats (reference solve; training solver {fmt(m['nll_own'])}, "
            f"bias {fmt(m['nll_bias'])})   entropy {m['entropy']:.4f} +- {m['entropy_se']:.4f}   gap {fmt(m['gap'])}",
            f"  mass on the lattice {fmt(m['mass'])} (reference solve; training solver {fmt(m['mass_own'])})",
            f"  params {m['params']:,}   final loss {fmt(m['final_loss'])}   iterations {m['iterations_completed']:,}",
            f"  NFE forward {m['nfe_forward']:,}   backward {m['nfe_backward']:,}   wall {m['wall_time_s']:.1f} s"]


# -- the work-precision kind's problem: the flow on a held-out batch -------------------------------------------

def workprecision_models(config: dict) -> dict:
    """``{name: (flow, status)}`` for the names in ``config["fields"]``: ``trained`` (``train_variant`` trained
    alone on ``seed`` with ``protocol``) and ``initial`` (its initial weights)."""
    P = Protocol.from_dict(config["protocol"])
    cfg = model_config(config["train_variant"])
    out = {}
    for name in config["fields"]:
        if name == "initial":
            out[name] = (Flow(cfg, [config["seed"]], P.hidden), "ok")
        else:
            flow, h = fit(cfg, P, [config["seed"]])
            out[name] = (flow, "diverged" if h.diverged else "ok")
    return out


def problem(flow: Flow, config: dict):
    """The flow of member 0 (float64) from ``batch`` held-out points and a zero log-density change over
    ``[0, t_end]``; the loss is their NLL."""
    import torch

    from ..runners.workprecision import Problem

    P = Protocol.from_dict(config["protocol"])
    test = data(P, "test")
    idx = _rng(config["seed"], STREAM_PROBLEM).choice(len(test), config["batch"], replace=False)
    x = torch.as_tensor(test[idx].T, dtype=torch.float64).unsqueeze(0)
    y0 = torch.cat([x, torch.zeros_like(x[:, :1])], 1).contiguous()
    return Problem(EXACT, tuple(flow.member_weights(0)), y0, 0.0, P.t_end,
                   lambda y1: -(log_normal(y1[:, :2]) + y1[:, 2]).mean())
