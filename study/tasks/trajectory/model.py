"""A trajectory-fitting task's model: ``S`` independent copies of its field (one per seed, stacked weights) and
the variant's solves (:class:`study.tasks.ensemble.Ensemble`)."""
from __future__ import annotations

import numpy as np

from ..ensemble import Ensemble
from ...config import ModelConfig


class Flow(Ensemble):
    """Members of ``task``'s field ``W2 g(W1 u(y) + b1) + b2`` (``d -> hidden -> d``; weights N(0, 0.1^2) drawn
    from each member's seed alone, biases 0, as torchdiffeq's demo); ``flow(t, y)`` is torchdiffeq's right-hand
    side.  :attr:`field` is the task's field, or its RNODE-regularised form while a regularised window is solved."""

    def __init__(self, task, cfg: ModelConfig, seeds, hidden: int = 50, device="cpu", dtype=None):
        import torch

        seeds = [int(s) for s in seeds]
        S, H, d = len(seeds), hidden, task.dim
        dtype = dtype or torch.float32
        W1, b1 = torch.zeros(S, H, d, dtype=dtype), torch.zeros(S, H, dtype=dtype)
        W2, b2 = torch.zeros(S, d, H, dtype=dtype), torch.zeros(S, d, dtype=dtype)
        for s, seed in enumerate(seeds):  # each member's draws depend on its seed alone
            g = torch.Generator().manual_seed(seed * 7919 + 17)
            W1[s].normal_(0.0, 0.1, generator=g)
            W2[s].normal_(0.0, 0.1, generator=g)
        super().__init__(cfg, seeds, [p.to(device).requires_grad_() for p in (W1, b1, W2, b2)])
        self.task, self.hidden = task, hidden
        self.plain, self.rnode = task.fields()
        self.field = self.plain

    def __call__(self, t, y):  # torchdiffeq's right-hand side
        self.counter.counts[self.counter.phase] += 1
        return self.field.differentiable(y, t, self.field.fold(self.params))

    def values(self, points: np.ndarray):
        """The field of every member at ``points`` ``(M, d)``: ``(S, M, d)`` (not counted)."""
        import torch

        with torch.no_grad():
            y = torch.as_tensor(points, dtype=self.params[0].dtype, device=self.params[0].device)
            y = y.T.unsqueeze(0).expand(len(self.seeds), points.shape[1], -1)
            f, _ = self.plain.forward(y, 0.0, self.plain.fold(self.params))
        return f.transpose(1, 2).cpu().double().numpy()

    def as_dtype(self, dtype) -> "Flow":
        """A copy with its weights in ``dtype`` (its own counter)."""
        other = Flow(self.task, self.cfg, self.seeds, self.hidden, self.params[0].device, dtype)
        for mine, theirs in zip(other.params, self.params):
            mine.data.copy_(theirs.detach())
        return other
