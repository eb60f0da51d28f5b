"""Any ``torch.nn.Module`` as a field of the hand engine, differentiated by autograd (``torch.func``).

A model written for ``torchdiffeq.odeint`` is a module ``f(t, y)`` with ``y`` batch-major, ``(B, *shape)``, and
``t`` a 0-dim tensor.  :class:`ModuleField` gives it the hand engine's field interface
(:mod:`study.engine.field`): the engine's state is feature-major ``(1, F, B)`` with ``F = prod(shape)``; the
evaluation calls the module with its parameters passed functionally (``torch.func.functional_call``), and the VJP
is ``torch.func.vjp`` of that call (the evaluation is made again, under autograd, in the backward pass).  Every
solve and gradient method of the engine then runs on the module: direct backpropagation through the accepted
steps, the checkpointed adjoint and the continuous adjoint, fixed steps and dopri5.  A hand-written VJP
(:class:`study.engine.field.MLPField`, the tasks' fields) is a faster path for a field the engine knows; the
conformance tests check each against this one.

One member: an ensemble of seeds is several modules.
"""
from __future__ import annotations

import math

import torch

from .autograd_field import AutogradField


class FieldError(ValueError):
    """The module is not a field of the state it is given: it returned the wrong shape, dtype, or a non-tensor."""


class ModuleField(AutogradField):
    """``module`` (``f(t, y)``, ``y`` of shape ``(B, *sample_shape)``) on the hand engine: an
    :class:`~study.engine.autograd_field.AutogradField` of the module's call on the engine's layout."""

    def __init__(self, module: torch.nn.Module, sample_shape):
        super().__init__("module", self._call)
        self.module = module
        self.sample_shape = tuple(int(n) for n in sample_shape)
        self.features = math.prod(self.sample_shape)
        self.names = [name for name, _ in module.named_parameters()]
        self.params = tuple(p for _, p in module.named_parameters())

    # -- the module's parameters and states, in the engine's layout --------------------------------------------
    def raw(self) -> tuple:
        """The module's parameters, in ``named_parameters`` order: the engine's raw parameters."""
        return tuple(p for _, p in self.module.named_parameters())

    def to_engine(self, y: torch.Tensor) -> torch.Tensor:
        """A batch-major state ``(B, *sample_shape)`` as the engine's ``(1, F, B)``."""
        return y.reshape(y.shape[0], self.features).transpose(0, 1).unsqueeze(0).contiguous()

    def to_user(self, y: torch.Tensor) -> torch.Tensor:
        """The engine's ``(1, F, B)`` as the module's ``(B, *sample_shape)``."""
        return y[0].transpose(0, 1).reshape(-1, *self.sample_shape)

    def _own(self, w) -> bool:
        """Whether ``w`` are the module's own parameters (then it is called as it is, without ``functional_call``'s
        cost of swapping them in)."""
        return len(w) == len(self.params) and all(a is b for a, b in zip(w, self.params))

    def _call(self, y, t, w) -> torch.Tensor:
        tt = t.reshape(()) if isinstance(t, torch.Tensor) else torch.tensor(t, dtype=y.dtype, device=y.device)
        x = self.to_user(y)
        if self._own(w):
            out = self.module(tt, x)
        else:
            out = torch.func.functional_call(self.module, dict(zip(self.names, w)), (tt, x))
        if not isinstance(out, torch.Tensor) or out.shape != x.shape or out.dtype != x.dtype:
            what = type(out).__name__ if not isinstance(out, torch.Tensor) else f"{out.dtype} {tuple(out.shape)}"
            raise FieldError(f"the field returned {what} for a state of {x.dtype} {tuple(x.shape)}: it must return "
                             "dy/dt, a tensor of the state's shape and dtype")
        return out.reshape(out.shape[0], self.features).transpose(0, 1).unsqueeze(0)

    def torchdiffeq_rhs(self, params, counter):
        """The module as torchdiffeq's right-hand side on the engine's layout, its parameters ``params`` and ``t``
        as torchdiffeq passes it (a tensor: backpropagation through an adaptive solve reaches the module through
        its time input too, as it does when torchdiffeq solves the module itself)."""

        def f(t, y):
            counter.counts[counter.phase] += 1
            return self._call(y, t, params)

        return f

    # -- the field interface (study.engine.field): AutogradField's, with autograd's own VJP for the module's own
    # parameters (functional_call's swap only for other weights)
    def vjp(self, g, y, t, saved, tensors, meta):
        if self._own(tensors) and all(p.requires_grad for p in tensors):  # autograd's own VJP through the module
            with torch.enable_grad():
                y_ = y.detach().requires_grad_()
                grads = torch.autograd.grad(self._call(y_, t, tensors), (y_, *tensors), g, allow_unused=True)
            return grads[0], tuple(torch.zeros_like(p) if x is None else x for p, x in zip(tensors, grads[1:]))
        return super().vjp(g, y, t, saved, tensors, meta)
