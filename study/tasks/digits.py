"""Task ``digits``: real images.  scikit-learn's bundled handwritten digits (1,797 8x8 images, 10 classes; no
download) classified by an ODE-Net: a linear lift of the 64 pixels to a width of 32, the flow (the study's
network, hidden width 64, over [0, 1]), a linear head to the 10 classes.

The split is fixed (stratified, 25% held out, ``split_seed``) and the pixels are standardised on the training
split alone; a seed sets the initialisation and the shuffling, as on the spiral.  The model and its training
are the spiral's engine (:class:`study.engine.models.Classifier`, :func:`study.tasks.classification.fit`; every variant
and backend), with this task's data.  Its controls, on the same split: the model without a flow (``no-flow``:
lift and linear head, a rank-32 linear classifier), the ResNet, a multinomial logistic regression on the pixels
(scikit-learn; :func:`logistic_regression`, in every record as ``metrics.logistic_regression``) and, in the
``digits/controls`` experiment, an MLP with the ODE-Net's parameter count (the model without a flow and with a
ReLU head of :func:`matched_head_hidden` units).  Needs scikit-learn (a core dependency).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from . import ITERATIONS_MAX, Option, Reference, lr_option
from .. import config as _config
from ..config import REMEDIES, ModelConfig, train_engine  # noqa: F401  (REMEDIES: the protocol's remedy weights)

NAME = "digits"
VERSION = 1
TITLE = "Handwritten digits (real data)"
SUMMARY = "scikit-learn's 1,797 8x8 digits, fixed stratified split: lift 64 -> 32, flow, linear head; held-out accuracy"
from .spiral import METRICS, PRIMARY  # noqa: F401  (a classifier's: held-out and training accuracy)
BENCH_BATCH = 128  # the task bench's batch: the training batch
REFERENCE = Reference("logistic regression", "multinomial logistic regression on the pixels, same split (the linear "
                      "control)")
OPTIONS = (Option("--epochs", "epochs", "int", 1, ITERATIONS_MAX, help="epochs"), lr_option())
IMAGES, PIXELS, CLASSES = 1797, 64, 10
WIDTH, HIDDEN = 32, 64  # the ODE-Net's lift width and its field's hidden width
DEFAULT_STEPS = 20  # fixed-step methods: steps over [0, 1] (the spiral's)


@dataclass
class Protocol(_config.Protocol):
    """The spiral's protocol on the digits: the same fields (and remedies), a fixed stratified split instead of
    sampled data (``n_train`` and ``n_test`` follow from ``test_fraction``; no noise)."""

    epochs: int = 60
    batch_size: int = 128
    n_train: int = 0  # set from test_fraction
    n_test: int = 0
    sigma: float = 0.0
    eval_every: int = 5
    curve_test_points: int = 450
    test_fraction: float = 0.25
    split_seed: int = 0

    def __post_init__(self):
        if isinstance(self.test_fraction, (int, float)) and 0 < self.test_fraction < 1:
            self.n_test = math.ceil(IMAGES * self.test_fraction)  # scikit-learn's rounding
            self.n_train = IMAGES - self.n_test

    def validate(self) -> None:
        f = self.test_fraction
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not (0.05 <= f <= 0.5):
            raise ValueError(f"test_fraction must be between 0.05 and 0.5, got {f!r}")
        if isinstance(self.split_seed, bool) or not isinstance(self.split_seed, int) or self.split_seed < 0:
            raise ValueError(f"split_seed must be a non-negative integer, got {self.split_seed!r}")
        self.curve_test_points = min(self.curve_test_points, self.n_test)
        super().validate()

    def as_config(self) -> dict:
        """The protocol as a config says it: no noise; the remedies only where they are on."""
        return {k: v for k, v in asdict(self).items() if k != "sigma" and (k not in REMEDIES or v)}


def _need_sklearn():
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise RuntimeError("the digits task needs scikit-learn, a dependency of the package: pip install scikit-learn") from None


@lru_cache(maxsize=4)
def split(test_fraction: float = 0.25, split_seed: int = 0):
    """``(x_train, y_train, x_test, y_test)``: float32 pixels standardised by the training split's mean and
    standard deviation (a constant pixel keeps its scale), int64 labels."""
    _need_sklearn()
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(X, y, test_size=test_fraction, stratify=y, random_state=split_seed)
    mean, std = xtr.mean(0), xtr.std(0)
    std[std == 0] = 1.0
    z = lambda a: ((a - mean) / std).astype(np.float32)  # noqa: E731
    return z(xtr), ytr.astype(np.int64), z(xte), yte.astype(np.int64)


@lru_cache(maxsize=4)
def logistic_regression(test_fraction: float = 0.25, split_seed: int = 0) -> float:
    """Held-out accuracy of a multinomial logistic regression (scikit-learn's default L2, C = 1) on the split."""
    from sklearn.linear_model import LogisticRegression

    xtr, ytr, xte, yte = split(test_fraction, split_seed)
    fitted = LogisticRegression(max_iter=5000).fit(xtr.astype(np.float64), ytr)
    return float((fitted.predict(xte.astype(np.float64)) == yte).mean())


def reference_value(P: Protocol | None = None) -> tuple[float, float]:
    """The logistic regression's accuracy and its binomial standard error on the held-out split."""
    P = P or Protocol()
    acc = logistic_regression(P.test_fraction, P.split_seed)
    return acc, math.sqrt(acc * (1 - acc) / P.n_test)


def data_of(seeds, P: Protocol, device: str = "cpu"):
    """Every member's copy of the split and its own shuffling stream (:class:`study.tasks.classification.Data`)."""
    import torch

    from .classification import Data
    from .spiral import data

    xtr, ytr, xte, yte = split(P.test_fraction, P.split_seed)
    S = len(seeds)
    stack = lambda a: torch.from_numpy(a).to(device).unsqueeze(0).expand(S, *a.shape).contiguous()  # noqa: E731
    return Data(stack(xtr), stack(ytr), stack(xte), stack(yte), [data.rng(s, data.STREAM_SHUFFLE) for s in seeds])


# -- which variants apply, and their configs ------------------------------------------------------------------

def not_applicable(variant) -> str | None:
    return None  # a classifier like the spiral's: every variant applies


def model_config(variant: str, overrides: dict | None = None) -> ModelConfig:
    from ..variants import variant_config

    return variant_config(variant, **{"in_dim": PIXELS, "classes": CLASSES, "lift_dim": WIDTH, "hidden": HIDDEN,
                                      "head": "linear", **(overrides or {})})


def matched_head_hidden() -> int:
    """The ReLU head's width that gives the model without a flow the ODE-Net's parameter count (nearest)."""
    target = model_config("euler").param_count()
    per_unit = WIDTH + 1 + CLASSES  # each hidden unit: WIDTH weights and a bias in, CLASSES weights out
    fixed = model_config("no-flow", {"head": "mlp", "head_hidden": 1}).param_count() - per_unit
    return round((target - fixed) / per_unit)


def run_config(variant: str, model_cfg: ModelConfig, protocol: Protocol, seed: int, device: str = "cpu",
               extra: dict | None = None) -> dict:
    from . import task_fields

    return {"kind": "train", **task_fields(NAME, VERSION), "variant": variant, **(extra or {}), "seed": int(seed),
            "device": device, **model_cfg.as_config(), **protocol.as_config(),
            "engine": train_engine(model_cfg, protocol)}


def config_model(config: dict) -> ModelConfig:
    return ModelConfig.from_dict(config)


def cost(config: dict, members: int) -> float:
    """Relative cost (units: one evaluation at batch 128 of the spiral's network)."""
    from . import spiral

    scale = (config.get("hidden", HIDDEN) / 128) ** 2 + config.get("lift_dim", WIDTH) * config.get("hidden", HIDDEN) / 128 ** 2
    return spiral.cost(config, members) * scale


# -- training --------------------------------------------------------------------------------------------------

def train(configs: list[dict], progress=None, transfer: list[dict] | None = None):
    """The records of one job (``configs`` differ only in their seed) and the trained ensemble."""
    from . import spiral

    _need_sklearn()
    first = configs[0]
    P, seeds, device = Protocol.from_dict(first), [c["seed"] for c in configs], first.get("device", "cpu")
    P.validate()
    by_seed = {c["seed"]: c for c in configs}
    d = data_of(seeds, P, device)
    recs, model = spiral.train_models(ModelConfig.from_dict(first), P, seeds, device, progress, data_=d,
                                      config_of=lambda seed: by_seed[seed])
    lr_acc = logistic_regression(P.test_fraction, P.split_seed)
    for rec in recs:
        rec["metrics"]["logistic_regression"] = lr_acc
    if transfer:
        for rec, rows in zip(recs, spiral.transfer_rows(model, seeds, P, transfer, device, data_=d)):
            if rec["status"] == "ok":
                rec["metrics"]["transfer"] = rows
    return recs, model


def summary(record: dict) -> list[str]:
    from . import spiral

    return spiral.summary(record) + [f"  logistic regression (control) {100 * record['metrics']['logistic_regression']:.2f}%"]


# -- the work-precision kind's problem: the trained flow on a held-out batch -----------------------------------

def workprecision_models(config: dict) -> dict:
    """``{name: (model, status)}`` for ``config["fields"]``: ``trained`` (``train_variant`` trained alone on
    ``seed``) and ``initial`` (its initial weights)."""
    from ..engine.models import Classifier

    cfg = model_config(config["train_variant"])
    P = Protocol.from_dict(config["protocol"])
    out = {}
    for name in config["fields"]:
        if name == "initial":
            out[name] = (Classifier(cfg, [config["seed"]]), "ok")
        else:
            rc = run_config(config["train_variant"], cfg, P, config["seed"])
            (rec,), model = train([rc])
            out[name] = (model, rec["status"])
    return out


def problem(model, config: dict):
    """The flow of ``model`` (float64) from the lifted first ``batch`` held-out images over [0, 1]; the loss is the
    head's cross-entropy on their labels."""
    from .spiral import flow_problem

    P = Protocol.from_dict(config["protocol"])
    _, _, xte, yte = split(P.test_fraction, P.split_seed)
    return flow_problem(model.double(), xte[: config["batch"]], yte[: config["batch"]])


def _schema():
    from .. import records

    schema = {k: v for k, v in records.SCHEMA["train"].items() if k != "config.sigma"}  # no noise here
    return ({**schema, "config.task": "str", "config.task_version": "int", "config.test_fraction": "float",
             "config.split_seed": "int", "metrics.logistic_regression": "float"}, records.SAME_LENGTH.get("train", []))


SCHEMA, SAME_LENGTH = _schema()
