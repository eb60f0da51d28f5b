"""The spiral classifier's dynamics network as an ``nn.Module`` of ``S`` members (stacked weights), its batched linear
layer and the evaluation counter every model shares.  Initialisation: see :mod:`study.engine.models`."""
from __future__ import annotations

import torch
from torch import nn

from . import hand_solve
from .instrument import note_derived


class ELinear(nn.Module):
    """``S`` independent linear layers applied member-wise: ``(S, B, i) -> (S, B, o)``."""

    def __init__(self, members: int, fan_in: int, fan_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, fan_out, fan_in))
        self.bias = nn.Parameter(torch.empty(members, fan_out))

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        b = self.bias if bias is None else bias
        return torch.baddbmm(b.unsqueeze(1), x, self.weight.transpose(1, 2))


class _Prepared:
    def __init__(self, f: "Dynamics"):
        self.f = f

    def __enter__(self):
        self.f.hold_prepared()

    def __exit__(self, *exc):
        self.f.release_prepared()


class Counter:
    """Function-evaluation counter with phases (forward / backward / eval).

    ``counts``, ``accepted`` and ``rejected`` count calls of the (batched) network and steps of its solves.
    Solves with per-member step control (several seeds of an adaptive variant batched) also count per
    member (:meth:`add_members`): ``member_counts[phase]``, ``member_accepted``, ``member_rejected``
    (``(S,)`` tensors; None until such a solve ran), and the members whose solve failed, with why, in
    ``failures``."""

    def __init__(self) -> None:
        self.phase = "forward"
        self.counts = {"forward": 0, "backward": 0, "eval": 0}
        self.accepted = 0
        self.rejected = 0
        self.member_counts: dict | None = None
        self.member_accepted = self.member_rejected = None
        self.failures: dict[int, str] = {}

    def reset(self) -> None:
        self.counts = dict.fromkeys(self.counts, 0)
        self.accepted = self.rejected = 0
        self.member_counts, self.member_accepted, self.member_rejected = None, None, None
        self.failures = {}

    def add_members(self, evaluations, accepted=None, rejected=None) -> None:
        """One per-member solve's evaluations (in the current phase) and, outside backward passes, its steps."""
        if self.member_counts is None:
            zero = torch.zeros_like(evaluations)
            self.member_counts = {k: zero.clone() for k in self.counts}
            self.member_accepted, self.member_rejected = zero.clone(), zero.clone()
        self.member_counts[self.phase] += evaluations
        if self.phase == "forward" and accepted is not None:  # training steps only
            self.member_accepted += accepted
            self.member_rejected += rejected

    def snapshot(self, members: int) -> dict:
        """Per-member totals so far (``members`` long lists): evaluations by phase, accepted, rejected steps; the
        batched counts for every member where no per-member solve ran."""
        if self.member_counts is None:
            out = {k: [v] * members for k, v in self.counts.items()}
            return {**out, "accepted": [self.accepted] * members, "rejected": [self.rejected] * members}
        out = {k: v.tolist() for k, v in self.member_counts.items()}
        return {**out, "accepted": self.member_accepted.tolist(), "rejected": self.member_rejected.tolist()}


class Dynamics(nn.Module):
    """``f(t, y)``: Linear(d+1, H) - Tanh - Linear(H, H) - Tanh - Linear(H, d) on ``[t ; y]``.

    The first layer's weight is stored as its time column ``w_t`` and its state
    columns ``l1.weight``: ``W [t; y] + b = W_y y + (b + t w_t)`` is the same map
    with the same parameter count.  Each call on a batch counts as one function
    evaluation (NFE) per member.

    Evaluation uses ``tanh(z) = 2 sigmoid(2 z) - 1`` with the affine parts folded
    into the neighbouring matrix multiplies: with ``h = 2 s - 1``,
    ``W h + b = 2 W s + (b - W 1)``; the scaled weights are prepared
    once per solve (:meth:`prepared`), not once per evaluation.  It is the same function up to float
    rounding (about 1e-7), and on CPU it is much faster: this torch build's
    float32 ``tanh`` kernel is about 5x slower than ``sigmoid`` (42 us against
    7.6 us on a 128 x 128 tile here, as slow as the 128 x 128 x 128 matrix
    multiply), which made tanh a third of a training step.  The saved tensors
    are the same as with ``tanh`` (each layer's input and its two activations).
    """

    def __init__(self, members: int, dim: int, hidden: int = 128, time_input: bool = True):
        super().__init__()
        self.time_input = time_input
        self.l1 = ELinear(members, dim, hidden)
        self.w_t = nn.Parameter(torch.empty(members, hidden)) if time_input else None
        self.l2 = ELinear(members, hidden, hidden)
        self.l3 = ELinear(members, hidden, dim)
        self.counter = Counter()
        self._prepared = None  # held by `prepared()` / `hold_prepared()` for the evaluations of one solve
        self.workspace = None  # study.engine.hand_solve's buffers, reused from one solve to the next

    def raw(self) -> tuple:
        """The raw parameters in the hand engine's field order, ``(W1, b1, w_t, W2, b2, W3, b3)``
        (:class:`study.engine.field.MLPField`; ``w_t`` None without a time input)."""
        return (self.l1.weight, self.l1.bias, self.w_t, self.l2.weight, self.l2.bias, self.l3.weight, self.l3.bias)

    def _prepare(self) -> tuple:
        """The weights in the form the evaluation uses: scaled, biases folded, as columns.

        Feature-major (``(S, features, B)``): ``2 z1 = (2 W1) y + 2 (b1 + t w_t)``,
        ``s1 = sigmoid(2 z1)``; ``2 z2 = (4 W2) s1 + 2 (b2 - W2 1)``, ``s2 = sigmoid(2 z2)``;
        ``f = (2 W3) s2 + (b3 - W3 1)``.
        """
        l1, l2, l3 = self.l1, self.l2, self.l3
        a1, a2, a3, b1, wt, c2, c3 = hand_solve.fold(l1.weight, l1.bias, self.w_t, l2.weight, l2.bias, l3.weight, l3.bias)
        out = (b1, wt, a1, c2, a2, c3, a3)
        note_derived(out)  # functions of the parameters alone, not activations
        return out

    def prepared(self):
        """Context manager: prepare the weights once for every evaluation of one solve."""
        return _Prepared(self)

    def hold_prepared(self) -> None:
        """Prepare the weights and keep them (with their graph) until :meth:`release_prepared`."""
        self._prepared = self._prepare()

    def release_prepared(self) -> None:
        self._prepared = None

    @property
    def holds_prepared(self) -> bool:
        return self._prepared is not None

    def forward(self, t, y: torch.Tensor) -> torch.Tensor:
        self.counter.counts[self.counter.phase] += 1
        b1, wt, a1, c2, a2, c3, a3 = self._prepared if self._prepared is not None else self._prepare()
        if wt is not None:
            b1 = b1 + t.to(y.dtype) * wt if isinstance(t, torch.Tensor) else torch.add(b1, wt, alpha=float(t))
        # Feature-major inside: the products with a width-d side then have d as their row count
        # (4.6 us instead of 20 us at d = 6, B = 128 here), forward and in autograd's backward.
        s1 = torch.sigmoid(torch.baddbmm(b1, a1, y.transpose(1, 2)))
        s2 = torch.sigmoid(torch.baddbmm(c2, a2, s1))
        return torch.baddbmm(c3, a3, s2).transpose(1, 2)

    def reference(self, t: float, y: torch.Tensor) -> torch.Tensor:
        """The textbook evaluation with ``tanh`` (for tests; not counted)."""
        b1 = self.l1.bias + (t * self.w_t if self.w_t is not None else 0.0)
        h = torch.tanh(self.l1(y, b1))
        h = torch.tanh(self.l2(h))
        return self.l3(h)

    # torchdiffeq callbacks (adaptive solvers): accepted / rejected steps.
    def callback_accept_step(self, t0, y0, dt):
        if self.counter.phase != "backward":
            self.counter.accepted += 1

    def callback_reject_step(self, t0, y0, dt):
        if self.counter.phase != "backward":
            self.counter.rejected += 1
