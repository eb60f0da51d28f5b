"""Shared helpers of the test suite: small protocols, exact problems, running the CLI."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
SMALL = dict(n_train=256, n_test=500, curve_test_points=200, eval_every=1)  # 2 batches an epoch


def interruptible() -> None:
    """``preexec_fn`` of a child a test sends SIGINT: a test suite run as a background job (``make test &``) starts
    with SIGINT ignored, which its children inherit, and Python then installs no KeyboardInterrupt handler."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def study(*args, cwd=None, timeout=600, **kw) -> subprocess.CompletedProcess:
    """``python -m study ARGS`` in a subprocess, as a user would run it."""
    return subprocess.run([sys.executable, "-m", "study", *args], capture_output=True, text=True, cwd=cwd,
                          env=ENV, timeout=timeout, **kw)


def train(model_cfg, protocol, seeds, **kw) -> list[dict]:
    """The records of one training job (the train runner's records, without the model)."""
    from study.tasks.spiral import train_models as train_runner

    return train_runner(model_cfg, protocol, seeds, **kw)[0]


def strip(rec: dict):
    """A record without what legitimately differs between identical runs (timing)."""
    m = {k: v for k, v in rec["metrics"].items() if k != "wall_time_s"}
    return rec["config"], rec["status"], m, rec.get("curves")


def step_node_passes_gradcheck(field, raw, y, method: str) -> bool:
    """``gradcheck`` of one attempted step of ``method`` on ``field`` as one graph node (the hand engine's step
    node): its new state and every stage derivative, in the state ``y`` and the folded weights of ``raw``."""
    from types import SimpleNamespace

    import torch

    from study.engine import step_node, stepper
    from study.engine.solvers import EMBEDDED, TABLEAUS

    tab = EMBEDDED["dopri5"].tableau if method == "dopri5" else TABLEAUS[method]
    leaves = [x.detach().requires_grad_() for x in field.fold(raw)]
    counter = SimpleNamespace(counts={"forward": 0}, phase="forward")

    def f(y, *ws):
        y1, ks = step_node.node_step(tuple(ws), counter, tab, stepper.axpy, field)(0.1, (y,), None, 0.2)
        return (y1[0], *(k[0] for k in ks))

    return torch.autograd.gradcheck(f, [y.detach().requires_grad_(), *leaves])
