"""Fit a predator-prey system from one noisy trajectory (lotka_volterra.csv), with a field written as in
torchdiffeq's examples/ode_demo.py.

    study audit examples/lotka_volterra/problem.py --budget quick

Samples are windows of the trajectory: each starts at an observed state (every other one) and is compared with the
next 5 observations (half a time unit).  The last fifth of the windows (the end of the record) is held out.  The states are
divided by 10 so that the field's inputs are of order one.
"""
from pathlib import Path

import numpy as np
import torch
from torch import nn

from study.audit import Problem

SCALE = 10.0
WINDOW = 6  # observations per window: the start and the next 5


class ODEFunc(nn.Module):
    """ode_demo's field: y' = Linear(Tanh(Linear(y)))."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 50), nn.Tanh(), nn.Linear(50, 2))
        for m in self.net.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, mean=0, std=0.1)
                nn.init.constant_(m.bias, val=0)

    def forward(self, t, y):
        return self.net(y)


def true_field(t, y):
    """The Lotka-Volterra field the data came from, in the scaled states."""
    x, p = y[..., 0] * SCALE, y[..., 1] * SCALE
    return torch.stack([1.1 * x - 0.4 * x * p, 0.1 * x * p - 0.4 * p], -1) / SCALE


table = np.loadtxt(Path(__file__).with_name("lotka_volterra.csv"), delimiter=",", skiprows=2)
t, states = table[:, 0], table[:, 1:] / SCALE
starts = np.arange(0, len(t) - WINDOW + 1, 2)
windows = np.stack([states[k: k + WINDOW] for k in starts])  # (N, T, 2)

PROBLEM = Problem(
    field=ODEFunc,
    inputs=torch.tensor(windows[:, 0], dtype=torch.float32),  # each window's first observation: its initial state
    times=torch.tensor(t[:WINDOW] - t[0], dtype=torch.float32),  # shared by every window
    targets=torch.tensor(windows, dtype=torch.float32),  # the states at every observation time of the window
    loss=lambda pred, target: (pred - target).abs().mean(),  # ode_demo's
    metrics={"rmse": lambda pred, target: float(((pred - target) ** 2).mean().sqrt())},
    truth=true_field,
    iterations=300, batch_size=32, lr=0.01,
    name="lotka-volterra",
)
