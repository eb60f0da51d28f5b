"""The optimisers training uses: torch's, without the second of start-up their compiler hooks cost.

``torch.optim``'s optimisers run ``step`` inside a wrapper that imports ``torch._dynamo`` (about 1 s, on the
first step) only to mark graph breaks for the compiler, and four more methods (``add_param_group``,
``zero_grad``, ``state_dict``, ``load_state_dict``) inside ``torch._disable_dynamo``, which imports it too.
Eager training needs none of that.  Each class here is torch's, with those methods as torch defines them
beneath the wrappers: the same function bodies, so the same arithmetic (a test trains with both and compares
the weights bit for bit); ``step`` sets the grad mode as the wrapper does.
"""
from __future__ import annotations

import inspect

import torch

_UNWRAPPED = ("add_param_group", "zero_grad", "state_dict", "load_state_dict")


def _eager(base: type) -> type:
    raw_step = inspect.unwrap(base.step)

    def step(self, closure=None):
        previous = torch.is_grad_enabled()
        try:
            torch.set_grad_enabled(self.defaults["differentiable"])
            return raw_step(self, closure)
        finally:
            torch.set_grad_enabled(previous)

    methods = {name: inspect.unwrap(getattr(torch.optim.Optimizer, name)) for name in _UNWRAPPED}
    return type(base.__name__, (base,), {"step": step, **methods, "__module__": __name__,
                                         "__doc__": f"torch.optim.{base.__name__}, without the compiler's wrappers."})


Adam = _eager(torch.optim.Adam)
AdamW = _eager(torch.optim.AdamW)
RMSprop = _eager(torch.optim.RMSprop)
