"""Which variants apply to the density task, their configs and their cost."""
from __future__ import annotations

from .. import ensemble
from ...config import METHODS, ModelConfig
from .protocol import NAME, Protocol, VERSION


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
    """The engine a model's solves run on (:func:`study.tasks.ensemble.engine_of`) and the field's own arithmetic:
    version 1 of the CNF field."""
    return ensemble.engine_of(cfg) + "+cnf-1"


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


