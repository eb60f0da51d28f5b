"""The density task's field: a time-dependent MLP with its exact divergence (and RNODE's terms), its VJP by
hand, and the flow of ``S`` members that solves it."""
from __future__ import annotations

import math


from ..ensemble import Ensemble
from ...config import ModelConfig
from .protocol import LOG_2PI


# -- the field: a time-dependent MLP with its exact divergence --------------------------------------------------

class CNFField:
    """``F(t, (z, l)) = (f(t, z), div)`` for the hand engine (:mod:`study.engine.field`), with
    ``f = W3 tanh(W2 tanh(W1 z + b1 + t u1) + b2 + t u2) + b3`` and ``div = sum_k p_k^T J p_k`` over the
    probes ``p_k``: the unit vectors (the exact trace) or, with :attr:`probe` set, one probe ``(S, 2, B)``
    (Hutchinson).  Raw parameters ``(W1 (S,H,2), b1 (S,H), u1 (S,H), W2 (S,H,H), b2, u2, W3 (S,2,H), b3 (S,2))``;
    states ``(S, 3, B)``; the field does not depend on ``l``.

    With ``regularise`` (RNODE, Finlay et al. 2020) the state carries two more rows, ``(z, l, E, F)``, integrated
    along the solve: the kinetic energy ``E' = |f|^2`` and the Jacobian's squared Frobenius norm
    ``F' = sum_k |J p_k|^2`` (exact over the unit vectors; Hutchinson's estimate with a probe)."""

    name = "cnf-mlp"

    def __init__(self, probe=None, regularise: bool = False):
        self.probe, self.regularise = probe, regularise

    @property
    def rows(self) -> int:
        """The state's rows: (z, l), and (E, F) with the regularisers."""
        return 5 if self.regularise else 3

    def fold(self, raw):
        W1, b1, u1, W2, b2, u2, W3, b3 = raw
        col = lambda v: v.unsqueeze(-1)  # noqa: E731
        return (W1, col(b1), col(u1), W2, col(b2), col(u2), W3, col(b3))

    def as_weights(self, entries):
        return tuple(entries)

    def _probes(self, z):
        import torch

        if self.probe is not None:
            return (self.probe,)
        S, _, B = z.shape
        eye = torch.eye(2, dtype=z.dtype, device=z.device)
        return tuple(eye[k].view(1, 2, 1).expand(S, 2, B) for k in range(2))

    def forward(self, y, t, w):
        import torch

        from ...engine.rnode import tangent

        W1, c1, u1, W2, c2, u2, W3, c3 = w
        z = y[:, :2]
        h1 = torch.baddbmm(c1 + t * u1, W1, z).tanh_()
        h2 = torch.baddbmm(c2 + t * u2, W2, h1).tanh_()
        f = torch.baddbmm(c3, W3, h2)
        d1, d2 = 1.0 - h1 * h1, 1.0 - h2 * h2
        div = torch.zeros_like(f[:, :1])
        tangents = []  # per probe: p, W1 p, D1 W1 p, W2 D1 W1 p, D2 W2 D1 W1 p, J p
        for p in self._probes(z):
            tan = tangent(W1, W2, W3, d1, d2, p)
            div += (p * tan[5]).sum(1, keepdim=True)
            tangents += tan
        if not self.regularise:
            return torch.cat([f, div], 1), (z, h1, h2, d1, d2, f, *tangents)
        frob = sum((jp * jp).sum(1, keepdim=True) for jp in tangents[5::6])
        return torch.cat([f, div, (f * f).sum(1, keepdim=True), frob], 1), (z, h1, h2, d1, d2, f, *tangents)

    def backward_weights(self, w):
        return (w[0], w[3], w[6]), None

    def _backward(self, g, t, saved, W1, W2, W3, grads: list) -> "torch.Tensor":
        """Accumulate the weight gradients into ``grads`` (a list shaped like the folded weights; entries None
        until set) and return ``g^T dF/dy``."""
        import torch

        from ...engine.rnode import tangent_vjp

        z, h1, h2, d1, d2, f = saved[:6]
        tangents = [saved[i: i + 6] for i in range(6, len(saved), 6)]
        gz, gl = g[:, :2], g[:, 2:3]
        if self.regularise:  # E' = |f|^2 and F' = sum |J p|^2: their cotangents on f and on each J p
            gz = gz + 2.0 * g[:, 3:4] * f
        W1t, W2t, W3t = W1.transpose(1, 2), W2.transpose(1, 2), W3.transpose(1, 2)
        bd1, bd2 = torch.zeros_like(h1), torch.zeros_like(h2)
        for tan in tangents:  # the divergence's terms: div = sum p^T W3 D2 W2 D1 W1 p
            p, jp = tan[0], tan[5]
            q = p * gl if not self.regularise else p * gl + 2.0 * g[:, 4:5] * jp
            tangent_vjp(q, tan, W1t, W2t, W3t, d1, d2, bd1, bd2, grads, (0, 3, 6))
        _add(grads, 6, torch.bmm(gz, h2.transpose(1, 2)))
        _add(grads, 7, gz.sum(-1, keepdim=True))
        bh2 = torch.baddbmm(-2.0 * h2 * bd2, W3t, gz)
        bp2 = bh2 * d2
        _add(grads, 3, torch.bmm(bp2, h1.transpose(1, 2)))
        _add(grads, 4, bp2.sum(-1, keepdim=True))
        _add(grads, 5, (t * bp2).sum(-1, keepdim=True))
        bh1 = torch.baddbmm(-2.0 * h1 * bd1, W2t, bp2)
        bp1 = bh1 * d1
        _add(grads, 0, torch.bmm(bp1, z.transpose(1, 2)))
        _add(grads, 1, bp1.sum(-1, keepdim=True))
        _add(grads, 2, (t * bp1).sum(-1, keepdim=True))
        return torch.cat([torch.bmm(W1t, bp1), torch.zeros_like(g[:, 2:])], 1)

    def vjp(self, g, y, t, saved, tensors, meta):
        grads = [None] * 8
        gy = self._backward(g, t, saved, *tensors, grads)
        return gy, tuple(grads)

    def vjp_into(self, acc, g, y, t, saved, tensors, meta):
        grads = [None] * 8
        gy = self._backward(g, t, saved, *tensors, grads)
        for a, x in zip(acc, grads):
            a.add_(x)
        return gy

    def unfold(self, grads, sign: float = 1.0):
        W1, b1, u1, W2, b2, u2, W3, b3 = grads
        sq = lambda v: v.squeeze(-1)  # noqa: E731
        out = (W1, sq(b1), sq(u1), W2, sq(b2), sq(u2), W3, sq(b3))
        return out if sign == 1.0 else tuple(sign * x for x in out)


def _add(grads: list, i: int, x) -> None:
    grads[i] = x if grads[i] is None else grads[i] + x


EXACT = CNFField()


def log_normal(z):
    """``log N(z; 0, I)`` of states ``(S, 2, B)``: ``(S, B)``."""
    return -0.5 * (z * z).sum(1) - LOG_2PI


class Flow(Ensemble):
    """``S`` independent CNFs (one per seed, stacked weights) and the variant's solves; ``flow(t, y)`` is
    torchdiffeq's right-hand side (plain autograd through the same forward-mode divergence)."""

    def __init__(self, cfg: ModelConfig, seeds, hidden: int = 32, device="cpu", dtype=None):
        import torch

        seeds = [int(s) for s in seeds]
        S, H = len(seeds), hidden
        dtype = dtype or torch.float32
        shapes = ((H, 2), (H,), (H,), (H, H), (H,), (H,), (2, H), (2,))
        fan_in = (2, 2, 2, H, H, H, H, H)
        params = [torch.zeros(S, *shape, dtype=dtype) for shape in shapes]
        for s, seed in enumerate(seeds):  # each member's draws depend on its seed alone (PyTorch's Linear init)
            g = torch.Generator().manual_seed(seed * 7919 + 22)
            for p, n in zip(params, fan_in):
                p[s].uniform_(-1 / math.sqrt(n), 1 / math.sqrt(n), generator=g)
        super().__init__(cfg, seeds, [p.to(device).requires_grad_() for p in params])
        self.hidden = hidden
        self.field = EXACT

    def __call__(self, t, y):  # torchdiffeq's right-hand side
        self.counter.counts[self.counter.phase] += 1
        return self.field.forward(y, t, self.field.fold(self.params))[0]

    def end_state(self, x, cfg: ModelConfig | None = None, t_end: float = 1.0):
        """The state at ``t_end`` ``(S, rows, B)`` from points ``x`` ``(S, 2, B)`` and zeros in the other rows (the
        log-density change and, with the training field's regularisers, their integrals), solved by ``cfg``."""
        import torch

        y0 = torch.cat([x, torch.zeros_like(x[:, :1]).expand(-1, self.field.rows - 2, -1)], 1)
        return self.interval(y0, 0.0, t_end, cfg)

    def log_likelihood(self, x, cfg: ModelConfig | None = None, t_end: float = 1.0):
        """``log p(x)`` ``(S, B)`` of points ``x`` ``(S, 2, B)`` under the flow solved by ``cfg``."""
        y1 = self.end_state(x, cfg, t_end)
        return log_normal(y1[:, :2]) + y1[:, 2]


def member(flow: Flow, s: int, dtype=None) -> Flow:
    """Member ``s`` of ``flow`` alone (a copy of its weights, in ``dtype`` if given, with its own counter): every
    metric is computed member by member, so a seed's record does not depend on the seeds it trained beside."""
    other = Flow(flow.cfg, flow.seeds[s: s + 1], flow.hidden, flow.params[0].device, dtype or flow.params[0].dtype)
    for mine, theirs in zip(other.params, flow.params):
        mine.data.copy_(theirs.detach()[s: s + 1])
    return other
