"""The ``trajectories`` runner: train one model, then keep its lifted states over t in [0, 1] and its
decision regions on a grid."""
from __future__ import annotations

import numpy as np
import torch

from .. import records
from ..tasks.spiral import data
from ..config import Protocol
from ..provenance import environment
from ..variants import variant_config
from ..tasks import spiral

KIND = "trajectories"
ALONE = False
BATCHED = False


def cost(config: dict, members: int) -> float:
    """A training run's cost (the measuring afterwards is cheap)."""
    return spiral.cost({**config, **variant_config(config["variant"]).as_config()}, members)


def measure(config: dict) -> dict:
    """Train one model, then save its lifted states over t in [0, 1] and its decision regions."""
    device = config.get("device", "cpu")
    seed = config["seed"]
    proto = Protocol.from_dict(config["protocol"])
    (rec,), model = spiral.train_models(variant_config(config["variant"]), proto, [seed], device,
                                       extra_config={"variant": config["variant"]})
    sp = data.make_split(seed, proto.n_train, 2, proto.sigma)
    x = torch.from_numpy(sp.x_train[: config["points"]]).unsqueeze(0).to(device)
    g = np.linspace(-1.5, 1.5, config["grid"], dtype=np.float32)
    gx, gy = np.meshgrid(g, g)
    grid = torch.from_numpy(np.stack([gx.ravel(), gy.ravel()], 1)).unsqueeze(0).to(device)
    with torch.no_grad():
        model.counter.phase = "eval"
        states = model(x, trajectory_points=config["times"])[:, 0]  # (times, points, d)
        prob = torch.softmax(model(grid)[0], -1)[:, 1]
    out = {
        "times": np.linspace(0, 1, config["times"]).round(6).tolist(),
        "labels": sp.y_train[: config["points"]].tolist(),
        "inputs": np.round(sp.x_train[: config["points"]].astype(float), 5).tolist(),
        "states": np.round(states.cpu().numpy().astype(float), 5).tolist(),
        "grid": np.round(g.astype(float), 6).tolist(),
        "prob_class1": np.round(prob.cpu().numpy().reshape(len(g), len(g)).astype(float), 4).tolist(),
    }
    metrics = {k: rec["metrics"][k] for k in ("train_acc", "test_acc", "params", "nfe_forward")}
    return records.make(config, metrics, environment(device), rec["status"], rec["reason"], data=out)


def run(configs: list[dict]) -> list[dict]:
    return [measure(c) for c in configs]
