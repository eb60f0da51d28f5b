"""The ``memory`` runner: saved-tensor bytes, NFE and time of one training step at one number of steps.

No training: a freshly initialised model (random last layer, so that adaptive
solvers have a flow to follow) and the first batch of its seed.
"""
from __future__ import annotations

import torch

from .. import records
from ..config import ModelConfig
from ..engine.instrument import activation_bytes
from ..engine.models import Classifier
from ..tasks.spiral.step import first_batch, training_step
from ..engine.timer import median_spread, reference_ratio, sync, time_alternating
from ..provenance import environment
from ..variants import variant_config

KIND = "memory"
ALONE = True  # it times a step: measured alone, after everything else
BATCHED = False


def cost(config: dict, members: int) -> float:
    return 1e3


def measure(config: dict, isolated: bool = True) -> dict:
    """Saved-tensor bytes, NFE and time of one training step (forward + backward) at one N.

    With a ``reference`` variant in the config, each timed step alternates with a step of the reference (at its
    default steps) and the record keeps the median per-round ratio, ``ratio_to_reference``, which survives drift
    of the machine between the experiment's jobs (see the ``timing`` runner)."""
    device = config.get("device", "cpu")
    mcfg = ModelConfig.from_dict(config)
    model = Classifier(mcfg, [config["seed"]]).to(device)
    x, y = first_batch(config["seed"], config["batch_size"], device)
    step = training_step(model, x, y)
    model.counter.reset()
    step()
    nfe_f, nfe_b = model.counter.counts["forward"], model.counter.counts["backward"]
    act = activation_bytes(model, x, y)
    reference = config.get("reference")
    ref_step = training_step(Classifier(variant_config(reference), [config["seed"]]).to(device), x, y) if reference else None
    times, ref_times = time_alternating(step, ref_step, device, warmup=2, repeats=config["repeats"])
    med, spread = median_spread(times)
    metrics = {"activation_bytes": act, "nfe_forward": nfe_f, "nfe_backward": nfe_b, "params": model.param_count(),
               "step_time_s": med, "step_time_spread_s": spread, "step_time_samples": len(times)}
    metrics.update(reference_ratio(times, ref_times))
    if torch.device(device).type == "cuda":
        metrics["cuda_peak_bytes"] = cuda_peak_bytes(step, device, model)
    return records.make(config, metrics, environment(device), timing={"isolated": isolated})


def run(configs: list[dict]) -> list[dict]:
    return [measure(c) for c in configs]


def cuda_peak_bytes(step, device, model: Classifier) -> int:
    """Peak CUDA memory allocated during one step, minus what was allocated before it.

    The hand backend keeps its buffers from one step to the next (study.engine.hand_solve); they are
    dropped first, so that the step allocates, and this counts, them like any other backend's.
    """
    model.drop_workspaces()
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    step()
    sync(device)
    return int(torch.cuda.max_memory_allocated(device) - before)
