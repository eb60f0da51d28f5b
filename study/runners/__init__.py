"""The runners: one module per record kind, found by the executor through :func:`get`.

Each runner module exports

* ``KIND``: the record kind it makes (also its directory in the store);
* ``ALONE``: whether it measures time, so that it must run alone, after every other job;
* ``BATCHED``: whether the configs of one job (its seeds) run in one call;
* ``cost(config, members)``: a relative cost estimate, to start the longest jobs first
  (units: one dynamics evaluation at batch 128);
* ``run(configs) -> records``: one record per config, in order.

Adding an experiment kind is one new module here and one line in :data:`KINDS`.
Modules are imported when first asked for: the registry itself is torch-free.
"""
from __future__ import annotations

import importlib
from types import ModuleType

KINDS = ("train", "memory", "convergence", "gradients", "adjoint", "trajectories", "timing", "bench", "workprecision",
         "taskbench")


def get(kind: str) -> ModuleType:
    """The runner module of ``kind``."""
    if kind not in KINDS:
        raise ValueError(f"no runner for kind {kind!r}; known kinds: {', '.join(KINDS)}")
    module = importlib.import_module(f"{__name__}.{kind}")
    if module.KIND != kind:
        raise RuntimeError(f"runner module {module.__name__} declares kind {module.KIND!r}, not {kind!r}")
    return module
