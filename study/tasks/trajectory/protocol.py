"""A trajectory-fitting task's training protocol (every number configurable, each task its own defaults), its
metrics, reference and command-line options: plain data, no torch."""
from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass

from .. import ITERATIONS_MAX, Metric, Option, Reference, check_fields, lr_option

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
REMEDIES = ("kinetic", "jacobian", "weight_decay")  # the protocol's remedy weights


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
        check_fields(self, ("iterations", "batch_size", "n_points", "field_hidden", "eval_every", "grid"))
        if not isinstance(self.batch_time, int) or self.batch_time < 2:
            raise ValueError(f"batch_time must be an integer of at least 2, got {self.batch_time!r}")
        if self.n_points - self.batch_time < self.batch_size:
            raise ValueError(f"n_points - batch_time ({self.n_points - self.batch_time}) must be at least "
                             f"batch_size ({self.batch_size}): windows are drawn without replacement")
        check_fields(self, positive_numbers=("lr", "t_end", "t_extrapolate", "band"))
        if self.optimizer not in ("rmsprop", "adam"):
            raise ValueError(f"optimizer must be rmsprop or adam, got {self.optimizer!r}")
        check_fields(self, non_negative=("noise", *REMEDIES))

    @property
    def regularised(self) -> bool:
        return self.kinetic > 0 or self.jacobian > 0

    def as_config(self) -> dict:
        """The protocol as a config says it: the remedies only where they are on (records made before them keep
        their names)."""
        return {k: v for k, v in asdict(self).items() if k not in REMEDIES or v}


def protocol_class(defaults: dict) -> type:
    """The protocol of a task whose defaults differ from :class:`Protocol`'s in ``defaults`` (its fields keep their
    order, so its configs read the same); :class:`Protocol` itself when none do."""
    if not defaults:
        return Protocol
    unknown = set(defaults) - set(Protocol.__dataclass_fields__)
    if unknown:
        raise TypeError(f"not fields of a trajectory protocol: {', '.join(sorted(unknown))}")
    fields = [(k, type(v), dataclasses.field(default=v)) for k, v in defaults.items()]
    return dataclasses.make_dataclass("Protocol", fields, bases=(Protocol,))
