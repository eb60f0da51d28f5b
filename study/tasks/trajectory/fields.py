"""The model field of a trajectory-fitting task without a hand-written one: ``f(y) = W2 tanh(W1 y + b1) + b2``
(``d -> hidden -> d``, no time input), differentiated by autograd (:mod:`study.engine.autograd_field`)."""
from __future__ import annotations

import torch

from ...engine.autograd_field import AutogradField, regularised


def tanh_mlp(y, t, w):
    """The field on the engine's layout: states ``(S, d, B)``, weights ``(W1 (S, H, d), b1 (S, H), W2 (S, d, H),
    b2 (S, d))``."""
    W1, b1, W2, b2 = w
    h = torch.baddbmm(b1.unsqueeze(-1), W1, y).tanh()
    return torch.baddbmm(b2.unsqueeze(-1), W2, h)


def autograd_fields(d: int, known=None) -> tuple:
    """The field and its RNODE-regularised form (:func:`study.engine.autograd_field.regularised`); with a system's
    ``known`` part (:class:`study.tasks.trajectory.Known`), the network plus that part."""
    if known is None:
        return AutogradField("tanh-mlp", tanh_mlp), regularised("tanh-mlp-rnode", tanh_mlp, d)

    def fn(y, t, w):
        return tanh_mlp(y, t, w) + known.torch(y)

    return AutogradField(f"tanh-mlp+{known.name}", fn), regularised(f"tanh-mlp+{known.name}-rnode", fn, d)
