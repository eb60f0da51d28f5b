"""The hand backend's training engine: a fixed-step solve of the dynamics MLP with its backward by hand.

:func:`solve` integrates ``dy/dt = f(t, y)`` for the study's dynamics network
(:class:`study.engine.models.Dynamics`) with any tableau of :mod:`study.engine.solvers` and
returns exactly what backpropagation through the unrolled steps returns (the
discrete adjoint), up to float rounding; the tests check it against autograd
through :func:`study.engine.stepper.odeint_fixed` and against torchdiffeq.  It is the
same arithmetic, arranged so that this machine's kernels run it fast:

* The state is kept feature-major, ``(S, d, B)``, so the two matrix products
  with a width-6 side (the last layer forward, the first layer's input
  gradient backward) have the 6 as their *row* count.  At batch 128 that
  product takes 4.6 us here instead of 20 us with the 6 as the column count.
* The forward pass is :func:`study.engine.stepper.fixed`, the engine's one stage
  loop, with a right-hand side and a stage combination that write each
  evaluation's stage input and its two sigmoid outputs into buffers laid out
  ``(S, evaluations, features, B)``: exactly the tensors
  autograd would save, saved once with ``save_for_backward`` (so the
  saved-tensor count of :func:`study.engine.instrument.activation_bytes` is unchanged).
  Without gradients (evaluation) nothing is kept.
* The backward runs the evaluations in reverse with fused ``sigmoid_backward``
  kernels, accumulates each weight gradient evaluation by evaluation while its
  factors are in cache, and builds no autograd graph per operation.

The network is ``f = W3 tanh(W2 tanh(W1 y + b1 + t w_t) + b2) + b3``, evaluated
as in :class:`~study.engine.models.Dynamics` with ``tanh(z) = 2 sigmoid(2 z) - 1``:
``s1 = sigmoid(2 W1 y + 2 (b1 + t w_t))``, ``s2 = sigmoid(4 W2 s1 + 2 (b2 - W2 1))``,
``f = 2 W3 s2 + (b3 - W3 1)``.
"""
from __future__ import annotations

import weakref

import torch
from torch.autograd.function import once_differentiable

from .instrument import note_derived
from . import stepper
from .solvers import TABLEAUS, Tableau, combine, time_grid

_sigmoid_backward = torch.ops.aten.sigmoid_backward.grad_input


def fold(W1, b1, wt, W2, b2, W3, b3) -> tuple:
    """The network's weights in the form both evaluations use (this module's and ``Dynamics.forward``).

    With ``tanh(z) = 2 sigmoid(2 z) - 1`` and ``h = 2 s - 1`` (module docstring):
    ``(a1, a2, a3) = (2 W1, 4 W2, 2 W3)`` and the bias columns ``2 b1``, ``2 w_t``,
    ``c2 = 2 (b2 - W2 1)``, ``c3 = b3 - W3 1``, each ``(..., features, 1)``.
    Returns ``(a1, a2, a3, 2 b1, 2 w_t or None, c2, c3)``.
    """
    col = lambda x: None if x is None else x.unsqueeze(-1)  # noqa: E731
    return (2.0 * W1, 4.0 * W2, 2.0 * W3, col(2.0 * b1), col(None if wt is None else 2.0 * wt),
            col(2.0 * (b2 - W2.sum(-1))), col(b3 - W3.sum(-1)))


def _weights(W1, b1, wt, W2, b2, W3, b3, ts, stages: int, per_step: bool):
    """The folded weights, and the first layer's bias column at every evaluation, ``(S, H, E)``."""
    a1, a2, a3, b1, wt, c2, c3 = fold(W1, b1, wt, W2, b2, W3, b3)  # weights (S, [N,] rows, cols)
    if per_step:  # (S, N, H, 1) -> (S, H, E): evaluation e uses step e // stages's weights
        b1, wt = (None if x is None else x[..., 0].transpose(1, 2).repeat_interleave(stages, -1) for x in (b1, wt))
    c1 = b1.expand(-1, -1, len(ts)) if wt is None else torch.addcmul(b1, wt, ts)
    return a1, a2, a3, c2, c3, c1


def _step_weights(per_step: bool):
    """``at(X, n)``: step ``n``'s slice of a weight with a step axis, or the shared weight."""
    return (lambda X, n: X[:, n]) if per_step else (lambda X, n: X)


def _eval_into(a1, a2, a3, c1e, c2, c3, u, s1, s2):
    """``f(u)`` (returned, ``(S, d, B)``), writing both sigmoid outputs into the given buffers."""
    torch.baddbmm(c1e, a1, u, out=s1).sigmoid_()
    torch.baddbmm(c2, a2, s1, out=s2).sigmoid_()
    return torch.baddbmm(c3, a3, s2)


class Workspace:
    """Buffers reused from one solve to the next.

    Fresh large buffers cost more than the arithmetic written into them: each
    solve's few megabytes come back from the allocator as new pages, and the
    page faults of touching them made a 5-member RK4 step 1.5x slower.  A
    solve's saved buffers are reused only once no autograd graph can read them
    (its backward has run, or its graph is gone); otherwise the solve gets new
    ones.  Each reuse bumps the buffers' generation: a retained graph run
    backward again after a later solve took its buffers raises instead of
    reading them.
    """

    def __init__(self) -> None:
        self.saved: dict = {}  # key -> _Slot
        self.times: dict = {}  # (tableau, steps, dtype, device) -> evaluation times
        self.counter = None  # the dynamics' NFE counter, counted evaluation by evaluation

    def take(self, key, make, ctx) -> "_Slot":
        slot = self.saved.get(key)
        if slot is None or (slot.owner is not None and slot.owner() is not None):
            slot = self.saved[key] = _Slot(make())
        slot.generation += 1
        slot.owner = weakref.ref(ctx)
        return slot

    def eval_times(self, tab: Tableau, steps: int, dtype, device) -> torch.Tensor:
        key = (tab.name, steps, dtype, device)
        if key not in self.times:  # built once: on CUDA each would be a host-to-device copy
            dt = 1.0 / steps
            grid = time_grid(0.0, 1.0, steps)
            self.times[key] = torch.tensor([grid[n] + c * dt for n in range(steps) for c in tab.c],
                                           dtype=dtype, device=device)
        return self.times[key]

    def __getstate__(self):  # copies and pickles of a model start with empty buffers
        return {"saved": {}, "times": {}, "counter": None}


class _Slot:
    """One set of saved buffers, its generation and the autograd context that may still read it."""

    def __init__(self, bufs) -> None:
        self.bufs, self.generation, self.owner = bufs, 0, None


class _FixedSolve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y0, tab: Tableau, steps: int, per_step: bool, ws: Workspace, keep: bool, W1, b1, wt, W2, b2, W3, b3):
        S, B, d = y0.shape
        H = W2.shape[-1]
        s = tab.stages
        E = steps * s
        ts = ws.eval_times(tab, steps, y0.dtype, y0.device)
        counts, phase = ws.counter.counts, ws.counter.phase
        a1, a2, a3, c2, c3, c1 = _weights(W1, b1, wt, W2, b2, W3, b3, ts, s, per_step)
        at = _step_weights(per_step)
        opts = {"dtype": y0.dtype, "device": y0.device}
        if keep:  # what backward needs: each evaluation's input and sigmoid outputs
            key = (S, E, d, H, B, y0.dtype, y0.device)
            buffers = ws.take(key, lambda: tuple(torch.empty(S, E, n, B, **opts) for n in (d, H, H)), ctx)
            U, S1, S2 = buffers.bufs
        else:  # inference: one evaluation's worth of scratch, reused
            U, S1, S2 = (torch.empty(S, 1, n, B, **opts) for n in (d, H, H))
        at_e = (lambda e: e) if keep else (lambda e: 0)  # noqa: E731 - buffer index of evaluation e
        e = 0  # the next evaluation

        def into(y, coeffs, ks, dt):  # a stage input, or the next state, straight into the next evaluation's slot
            out = U[:, at_e(e)] if keep and e < E or not keep and len(ks) < s else None
            return (combine(y[0], coeffs, [k[0] for k in ks], dt, out=out),)

        def F(t, u):  # evaluation e: its time from the precomputed column, its weights those of step e // s
            nonlocal e
            n = e // s
            f = _eval_into(at(a1, n), at(a2, n), at(a3, n), c1[:, :, e : e + 1], at(c2, n), at(c3, n), u[0],
                           S1[:, at_e(e)], S2[:, at_e(e)])
            counts[phase] += 1  # NFE counted where the evaluation happens
            e += 1
            return (f,)

        # y0, laid out like every later state (the same rounding with and without grad)
        y = U[:, 0].copy_(y0.transpose(1, 2))
        if not keep:
            y = y.clone()  # the scratch slot is overwritten by the first step's stage inputs
        (y,) = stepper.fixed(F, tab, (y,), 0.0, 1.0, steps, into=into)
        if keep:
            ctx.save_for_backward(U, S1, S2, W1, wt, W2, W3)
            ctx.tab, ctx.steps, ctx.ts, ctx.per_step = tab, steps, ts, per_step  # constants, not activations
            ctx.slot, ctx.generation = buffers, buffers.generation
        return y.transpose(1, 2).contiguous()

    @staticmethod
    @once_differentiable
    def backward(ctx, gy):
        if ctx.slot.generation != ctx.generation:
            raise RuntimeError("a fixed-step solve's saved buffers were reused by a later solve: a retained graph "
                               "can be run backward again only before the model's next solve")
        U, S1, S2, W1, wt, W2, W3 = ctx.saved_tensors
        tab, steps, ts, per_step = ctx.tab, ctx.steps, ctx.ts, ctx.per_step
        S, E, d, B = U.shape
        H = W2.shape[-1]
        s = tab.stages
        at = _step_weights(per_step)
        dt = 1.0 / steps
        # Transposed, scaled weights of the state-gradient products (see the module docstring).
        a1t, a2t, a3t = ((k * W).transpose(-1, -2).contiguous() for k, W in ((2.0, W1), (4.0, W2), (2.0, W3)))
        # Weight gradients accumulate evaluation by evaluation while their factors are in cache:
        # gW1 transposed (S, [N,] d, H) and gW3 (S, [N,] d, H) keep the 6 as the row count.  Bias
        # gradients: per evaluation row sums (S, features, E) of the grads w.r.t. the sigmoids'
        # arguments (g1, g2) and w.r.t. f (kbar).
        gW1t, gW2, gW3 = W1.new_zeros(W1.transpose(-1, -2).shape), torch.zeros_like(W2), torch.zeros_like(W3)
        r1, r2, r3 = (W1.new_empty(S, n, E) for n in (H, H, d))
        g1, g2 = W2.new_empty(S, H, B), W2.new_empty(S, H, B)  # reused by every evaluation
        ybar = gy.transpose(1, 2).clone(memory_format=torch.contiguous_format)  # (S, d, B), ours to update
        for n in reversed(range(steps)):
            ubar = [None] * s
            for i in reversed(range(s)):
                e = n * s + i
                kbar = ybar * (dt * tab.b[i])
                for j in range(i + 1, s):
                    if tab.a[j][i] != 0.0:
                        kbar.add_(ubar[j], alpha=dt * tab.a[j][i])
                s1, s2 = S1[:, e], S2[:, e]
                at(gW3, n).baddbmm_(kbar, s2.transpose(1, 2))
                torch.sum(kbar, -1, out=r3[:, :, e])
                _sigmoid_backward(torch.bmm(at(a3t, n), kbar, out=g2), s2, grad_input=g2)
                at(gW2, n).baddbmm_(g2, s1.transpose(1, 2))
                torch.sum(g2, -1, out=r2[:, :, e])
                _sigmoid_backward(torch.bmm(at(a2t, n), g2, out=g1), s1, grad_input=g1)
                at(gW1t, n).baddbmm_(U[:, e], g1.transpose(1, 2))
                torch.sum(g1, -1, out=r1[:, :, e])
                ubar[i] = torch.bmm(at(a1t, n), g1)
            for u in ubar:
                ybar.add_(u)
        ctx.slot.owner = None  # read for the last time: the next solve may take the buffers
        # Undo the folding: h = 2 s - 1 and the factors 2 inside the sigmoids (module docstring).
        def per_weight(r):  # (S, F, E) -> summed over the evaluations that share a weight: (S, [N,] F)
            return r.view(S, r.shape[1], steps, s).sum(-1).transpose(1, 2) if per_step else r.sum(-1)

        gW1 = gW1t.transpose(-1, -2).mul(2.0).contiguous()
        gW2.mul_(4.0).sub_(2.0 * per_weight(r2).unsqueeze(-1))
        gW3.mul_(2.0).sub_(per_weight(r3).unsqueeze(-1))
        gb1, gb2, gb3 = 2.0 * per_weight(r1), 2.0 * per_weight(r2), per_weight(r3)
        gwt = None if wt is None else 2.0 * per_weight(r1 * ts)
        return ybar.transpose(1, 2).contiguous(), None, None, None, None, None, gW1, gb1, gwt, gW2, gb2, gW3, gb3


def _needs_grad(y0, weights) -> bool:
    """Whether the solve must keep what its backward reads (inside forward, grad mode is always off)."""
    return torch.is_grad_enabled() and (y0.requires_grad or any(w is not None and w.requires_grad for w in weights))


def solve(func, y0: torch.Tensor, tab: Tableau, steps: int) -> torch.Tensor:
    """``y(1)`` from ``y(0) = y0`` (shape ``(S, B, d)``) in ``steps`` steps of ``tab`` on ``func``'s network.

    ``func`` is a :class:`study.engine.models.Dynamics`; its counter counts each evaluation in its current phase.
    """
    if func.workspace is None:
        func.workspace = Workspace()
    func.workspace.counter = func.counter
    weights = (func.l1.weight, func.l1.bias, func.w_t, func.l2.weight, func.l2.bias, func.l3.weight, func.l3.bias)
    return _FixedSolve.apply(y0, tab, steps, False, func.workspace, _needs_grad(y0, weights), *weights)


def solve_blocks(blocks, y0: torch.Tensor) -> torch.Tensor:
    """The ResNet ``h <- h + (1/N) block_i(h)``: forward Euler whose step ``i`` uses block ``i``'s weights.

    ``blocks`` are :class:`study.engine.models.Dynamics` sharing one counter, which counts
    each of the ``N`` evaluations; block ``i`` sees time ``i / N`` if it has a time input.
    """
    first = blocks[0]
    if first.workspace is None:
        first.workspace = Workspace()
    first.workspace.counter = first.counter
    stack = lambda get: torch.stack([get(b) for b in blocks], 1)  # noqa: E731 - (S, N, ...)
    weights = [stack(lambda b: b.l1.weight), stack(lambda b: b.l1.bias),
               None if first.w_t is None else stack(lambda b: b.w_t),
               stack(lambda b: b.l2.weight), stack(lambda b: b.l2.bias),
               stack(lambda b: b.l3.weight), stack(lambda b: b.l3.bias)]
    note_derived(weights)  # copies of the parameters, not activations (instrument.activation_bytes)
    return _FixedSolve.apply(y0, TABLEAUS["euler"], len(blocks), True, first.workspace, _needs_grad(y0, weights),
                             *weights)
