"""Activation memory, counted exactly: the bytes of the tensors autograd saves for backward.

Weights that a model derives from its parameters once per solve (scaled,
transposed copies) are model state, not activations: the code that makes
them reports them with :func:`note_derived`, which records them only while
:func:`activation_bytes` is counting.
"""
from __future__ import annotations

import contextvars
import weakref
from typing import Iterable

import torch

from .loss import loss_fn

_DERIVED: contextvars.ContextVar[list | None] = contextvars.ContextVar("derived_weights", default=None)


def note_derived(tensors: Iterable) -> None:
    """Report tensors computed from the parameters alone (no-op unless activations are being counted)."""
    derived = _DERIVED.get()
    if derived is not None:
        derived.extend(t for t in tensors if t is not None)


def activation_bytes(model, x: torch.Tensor, y: torch.Tensor) -> int:
    """Bytes of the tensors autograd saves for backward in one training step.

    Counted exactly with ``saved_tensors_hooks`` during the forward pass: the
    bytes of each saved tensor the finished graph still holds, one count per
    storage however many ops save it.  Parameters, views of them and the
    weights the dynamics prepares from them once per solve are excluded: they
    are model state, not activations.
    Then the step's backward is run to release the graph.  For ``odeint_adjoint`` this is what
    the forward keeps; its backward re-solves the ODE and holds one solver
    step's graph at a time.
    """
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    # Weights prepared from the parameters (scaled, transposed copies); held until the end so
    # that their addresses cannot be reused by activations.
    derived: list[torch.Tensor] = []
    token = _DERIVED.set(derived)
    saved: list = []

    def pack(t: torch.Tensor):
        saved.append(weakref.ref(t))
        return t

    model.zero_grad(set_to_none=True)
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = loss_fn(model(x), y)
    finally:
        _DERIVED.reset(token)
    params |= {d.untyped_storage().data_ptr() for d in derived}
    # Only what the finished graph still holds: graphs of discarded work (dopri5's rejected
    # steps) are freed already, and their addresses may have been reused.
    seen: dict[int, int] = {}  # storage -> bytes of the largest live tensor saved from it
    for ref in saved:
        t = ref()
        if t is None:
            continue
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            seen[ptr] = max(seen.get(ptr, 0), t.numel() * t.element_size())
    del saved, derived
    loss.backward()
    model.zero_grad(set_to_none=True)
    return int(sum(seen.values()))


