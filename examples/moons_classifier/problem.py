"""A Neural ODE classifier with a readout: two interleaving half-moons, lifted to 4 dimensions, carried by a
time-dependent field over [0, 1], read by a linear head.

    study audit examples/moons_classifier/problem.py --budget quick

The recommendations read the held-out accuracy (higher is better); the loss is the cross-entropy.
"""
import torch
from sklearn.datasets import make_moons
from torch import nn

from study.audit import Problem

WIDTH = 4  # the state's dimension after the lift


class Field(nn.Module):
    """f(t, y) = W2 tanh(W1 [y, t] + b1) + b2: the time is an input, as in the article's spiral model."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(WIDTH + 1, 32), nn.Tanh(), nn.Linear(32, WIDTH))

    def forward(self, t, y):
        return self.net(torch.cat([y, t.expand(y.shape[0], 1)], 1))


def accuracy(logits, labels):
    return float((logits.argmax(1) == labels).float().mean())


x, y = make_moons(n_samples=600, noise=0.15, random_state=0)

PROBLEM = Problem(
    field=Field,
    lift=lambda: nn.Linear(2, WIDTH),
    head=lambda: nn.Linear(WIDTH, 2),
    readout="final",  # the head reads the state at the last time
    inputs=torch.tensor(x, dtype=torch.float32),
    times=torch.tensor([0.0, 1.0]),
    targets=torch.tensor(y),
    loss=nn.functional.cross_entropy,
    metrics={"accuracy": accuracy},
    higher_is_better=("accuracy",),
    primary="accuracy",
    test_fraction=0.25,
    iterations=200, batch_size=64, lr=0.01,
    name="moons-classifier",
)
