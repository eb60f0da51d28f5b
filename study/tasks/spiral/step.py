"""One training step as a closure: the unit that memory, gradient and timing measurements run."""
from __future__ import annotations

import torch

from . import data
from ...engine import optim
from ...engine.loss import loss_fn


def first_batch(seed: int, n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` training points of ``seed`` as a one-member batch ``(1, n, 2)``, ``(1, n)``."""
    sp = data.make_split(seed, n_test=2)
    return (torch.from_numpy(sp.x_train[:n]).unsqueeze(0).to(device),
            torch.from_numpy(sp.y_train[:n]).unsqueeze(0).to(device))


def training_step(model, x: torch.Tensor, y: torch.Tensor, optimizer=None):
    """A closure running one training step (forward + backward [+ optimizer step]), counting NFE by phase."""

    def step():
        model.zero_grad(set_to_none=True)
        model.counter.phase = "forward"
        loss = loss_fn(model(x), y)
        model.counter.phase = "backward"
        loss.backward()
        model.counter.phase = "forward"
        if optimizer is not None:
            optimizer.step()

    return step


def optimizer_step(model, x, y, mode: str, ensemble: bool):
    """A closure: one training step with training's fused Adam (``mode="train"``), or one forward pass
    without gradients (``mode="forward"``).  ``ensemble``: the model takes ``(S, B, 2)`` batches."""
    opt = optim.Adam(model.parameters(), lr=1e-4, fused=True)  # as in training (study.tasks.classification)
    ce = torch.nn.CrossEntropyLoss()

    if mode == "forward":
        def step():
            with torch.no_grad():
                model(x)
        return step

    def step():
        opt.zero_grad(set_to_none=True)
        out = model(x)
        loss = loss_fn(out, y) if ensemble else ce(out, y)
        loss.backward()
        opt.step()
    return step
