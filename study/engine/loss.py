"""The training loss of an ensemble: each member's mean cross-entropy."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def member_losses(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Each member's mean cross-entropy, shape ``(S,)``, for logits ``(S, B, C)`` and labels ``(S, B)``."""
    s, b, c = logits.shape
    return F.cross_entropy(logits.reshape(s * b, c), y.reshape(s * b), reduction="none").view(s, b).mean(1)


def loss_fn(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Sum over ensemble members of each member's mean cross-entropy.

    Members are independent, so the gradient of this sum with respect to
    member ``s``'s weights is exactly that member's own gradient.
    """
    return member_losses(logits, y).sum()
