"""The density task's description: its name, metrics, reference, options and training protocol (no torch)."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass


from .. import ITERATIONS_MAX, Metric, Option, Reference, check_fields, lr_option


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
        check_fields(self, ("iterations", "batch_size", "hidden", "n_train", "n_val", "n_test", "eval_every", "grid",
                            "n_samples"))
        if self.batch_size > self.n_train:
            raise ValueError(f"batch_size ({self.batch_size}) must be at most n_train ({self.n_train})")
        check_fields(self, positive_numbers=("lr", "t_end"))
        if self.divergence not in ("exact", "hutchinson"):
            raise ValueError(f"divergence must be exact or hutchinson, got {self.divergence!r}")
        if not isinstance(self.data_seed, int) or self.data_seed < 0:
            raise ValueError(f"data_seed must be a non-negative integer, got {self.data_seed!r}")
        check_fields(self, non_negative=REMEDIES)
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


