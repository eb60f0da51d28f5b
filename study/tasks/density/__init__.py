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

The task is this folder: :mod:`.protocol` (its description), :mod:`.data`, :mod:`.field`, :mod:`.hooks`, :mod:`.fit`,
:mod:`.evaluate`, :mod:`.records` and :mod:`.workprecision`; their names are re-exported here.
"""
from __future__ import annotations

from .protocol import (  # noqa: F401
    NAME, VERSION, TITLE, SUMMARY, DENSITIES, DEFAULT_DENSITY, REFERENCE_TOL, REFERENCE_MAX_STEPS, BOX, LOG_2PI,
    METRICS, PRIMARY, BENCH_BATCH, REFERENCE, OPTIONS, Protocol, REMEDIES)
from .data import (  # noqa: F401
    _rng, STREAM_TRAIN, STREAM_VAL, STREAM_TEST, STREAM_ENTROPY, STREAM_BATCHES, STREAM_PROBES, STREAM_PROBLEM,
    STREAM_STEER, SPLITS, _S2, GAUSS_CENTRES, GAUSS_STD, GAUSS_DIV, SPIRAL_TURN, SPIRAL_BOX, SPIRAL_NOISE,
    SPIRAL_DIV, MOONS_NOISE, MOONS_SCALE, MOONS_SHIFT, sample, data, _data, _norm_logpdf, _logmeanexp,
    _box_gauss, log_density, _curve_density, entropy, floor, _floor, reference_value)
from .field import (  # noqa: F401
    CNFField, _add, EXACT, log_normal, Flow, member)
from .hooks import (  # noqa: F401
    DEFAULT_STEPS, not_applicable, model_config, engine_of, run_config, config_model, cost)
from .fit import (  # noqa: F401
    CURVES, _points, _Batches, _iterate, evaluate_nll, log_likelihoods, _finite, fit)
from .evaluate import (  # noqa: F401
    _short, reference_config, lattice, samples, member_metrics, transfer_rows)
from .records import (  # noqa: F401
    SCHEMA, SAME_LENGTH, _member_record, train, summary)
from .workprecision import (  # noqa: F401
    workprecision_models, problem)
