"""Shared helpers of the test suite: small protocols, exact problems, running the CLI."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
SMALL = dict(n_train=256, n_test=500, curve_test_points=200, eval_every=1)  # 2 batches an epoch


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
