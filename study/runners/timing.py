"""The ``timing`` runner: one variant's training step, measured alone (in alternation with a reference step).

Everything compared is measured the same way: warm-up first, synchronised on
CUDA, reported as a median with its spread (half the interquartile range).
"""
from __future__ import annotations

import torch

from .. import records
from ..tasks.spiral import data
from ..config import Protocol
from ..engine.models import Classifier
from ..tasks.spiral.step import optimizer_step
from ..engine.timer import median_spread, reference_ratio, time_alternating
from ..provenance import environment
from ..variants import variant_config

KIND = "timing"
ALONE = True
BATCHED = False
PROTOCOL = Protocol()  # the article's: what implied_protocol_s extrapolates to


def cost(config: dict, members: int) -> float:
    return 1e3


def _closure(variant: str, seed: int, members: int, B: int, device):
    """A training step of ``variant`` (``members`` seeds batched) on the first ``B`` training points, and its model."""
    sp = data.make_split(seed, n_test=2)
    model = Classifier(variant_config(variant), list(range(seed, seed + members))).to(device)
    x = torch.from_numpy(sp.x_train[:B]).to(device).unsqueeze(0).expand(members, -1, -1).contiguous()
    y = torch.from_numpy(sp.y_train[:B]).to(device).unsqueeze(0).expand(members, -1).contiguous()
    return optimizer_step(model, x, y, "train", True), model


def measure(config: dict, isolated: bool = True) -> dict:
    """One variant's training step (forward + backward + Adam step at batch 128), measured alone.

    Also the per-seed step time when ``members`` seeds train as one batched model
    (fixed-step variants).  ``implied_protocol_s`` is the step time times the
    protocol's 500 x 8 steps; for dopri5 the step time depends on the weights
    (NFE per solve), so the record also gives the time per dynamics evaluation.

    With a ``reference`` variant in the config, every timed step alternates with one of the reference's
    (one seed), and the record also holds the median of the per-round ratios, ``ratio_to_reference``: jobs
    run one after the other, and a machine that drifts between them moves both alike, so the ratios of
    different jobs compare where their absolute times may not.
    """
    device = config.get("device", "cpu")
    cfg = variant_config(config["variant"])
    B, seed = config["batch_size"], config["seed"]
    reference = config.get("reference")
    ref_fn = _closure(reference, seed, 1, B, device)[0] if reference else None
    out: dict = {}
    for members in sorted({1, config["members"]} if not cfg.adaptive else {1}):
        fn, model = _closure(config["variant"], seed, members, B, device)
        times, ref_samples = time_alternating(fn, ref_fn, device, config["warmup"], config["repeats"],
                                              on_warm=model.counter.reset)  # count the timed steps only
        samples = [t / members for t in times]
        med, spread = median_spread(samples)
        nfe = (model.counter.counts["forward"] + model.counter.counts["backward"]) / config["repeats"]
        key = "" if members == 1 else f"_x{members}"
        out[f"step_time_s{key}"] = med
        out[f"step_time_spread_s{key}"] = spread
        out[f"nfe_per_step{key}"] = nfe
        out[f"time_per_nfe_s{key}"] = med / nfe if nfe else None
        out.update(reference_ratio(samples, ref_samples, key))
    steps = PROTOCOL.epochs * -(-PROTOCOL.n_train // B)
    out["implied_protocol_s"] = out["step_time_s"] * steps
    if "step_time_s_x" + str(config["members"]) in out:
        out["implied_protocol_s_batched"] = out[f"step_time_s_x{config['members']}"] * steps
    out["repeats"] = config["repeats"]
    return records.make(config, out, environment(device), timing={"isolated": isolated})


def run(configs: list[dict]) -> list[dict]:
    return [measure(c) for c in configs]
